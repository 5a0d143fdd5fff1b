"""One case of a dataset: its files, and reading them into images.

A case is a label map plus one image file per channel (``<case>_0000<ending>``,
``<case>_0001<ending>``, ...), or one multi-channel file (an RGB picture, an MSD 4D volume).
``read_case`` stacks the channels as ``(C, *spatial)``; ``missing_channel_files`` and
``duplicate_cases`` name the files behind the commonest layout mistakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import DatasetError
from medseg.io import Image, read_image


@dataclass(frozen=True)
class Case:
    """One training (or test) case.

    Attributes:
        case_id: the case name without channel suffix and extension.
        image_paths: one path per channel file (an RGB picture is one file, three channels).
        label_path: the label map, or None for unlabelled (test) cases.
    """

    case_id: str
    image_paths: tuple[Path, ...]
    label_path: Path | None = None


def read_case(case: Case, *, num_channels: int | None = None) -> tuple[Image, Image | None]:
    """Read a case's channels stacked as ``(C, *spatial)`` plus its label ``(*spatial)``.

    Channel files are stacked in order; a single multi-channel file (RGB picture, MSD 4D
    volume) provides all channels.

    Raises:
        DatasetError: channel files disagree in shape, or the channel count differs from
            ``num_channels``.
        ImageIOError: a file cannot be read.
    """
    images = [read_image(p) for p in case.image_paths]
    first = images[0]
    _refuse_time_series(case, first, num_channels)
    if len(images) == 1:
        image = channels_first_image(first)
    else:
        for path, other in zip(case.image_paths[1:], images[1:], strict=True):
            if other.spatial_shape != first.spatial_shape or other.has_channels:
                raise DatasetError(
                    f"{path}: channel shape {other.array.shape} differs from "
                    f"{case.image_paths[0].name} {first.array.shape}"
                )
        image = first.with_array(np.stack([im.array for im in images]))
    if num_channels is not None and image.num_channels != num_channels:
        missing = missing_channel_files(case, num_channels)
        raise DatasetError(
            f"{missing[0] if missing else case.image_paths[0]}: "
            f"{'channel file missing: ' if missing else ''}case '{case.case_id}' has "
            f"{image.num_channels} channel(s), dataset.json declares {num_channels}"
        )
    label = read_image(case.label_path) if case.label_path is not None else None
    if label is not None and label.has_channels:
        if label.num_channels != 1:
            raise DatasetError(
                f"{case.label_path}: label map has {label.num_channels} channels, expected 1"
            )
        label = label.with_array(label.array[0])
    return image, label


def channels_first_image(image: Image) -> Image:
    """``image`` with its array as ``(C, *spatial)``; a 4D image (an MSD multi-modal volume,
    array ``(C, z, y, x)``) becomes a 3D image with ``C`` channels."""
    if image.spatial_dims == 4 and not image.has_channels:
        direction = np.asarray(image.direction).reshape(4, 4)[:3, :3]  # ITK axes 0-2 are x, y, z
        return Image(image.array, image.spacing[1:], image.origin[:3], tuple(direction.ravel()))
    return image.with_array(image.channels_first())


def missing_channel_files(case: Case, num_channels: int) -> list[Path]:
    """The ``<case>_XXXX<ending>`` channel files a case lacks, when it has one file per channel.

    Example:
        >>> case = Case("a", (Path("imagesTr/a_0000.nii.gz"),))
        >>> [p.name for p in missing_channel_files(case, 2)]
        ['a_0001.nii.gz']
    """
    first = case.image_paths[0]
    prefix = f"{case.case_id}_"
    if not first.name.startswith(prefix) or not first.name[len(prefix) : len(prefix) + 4].isdigit():
        return []
    ending = first.name[len(prefix) + 4 :]
    present = {p.name for p in case.image_paths}
    expected = [first.with_name(f"{prefix}{i:04d}{ending}") for i in range(num_channels)]
    return [p for p in expected if p.name not in present]


def duplicate_cases(cases: tuple[Case, ...] | list[Case]) -> list[tuple[Path, str]]:
    """``(path, message)`` for every case whose id an earlier case already uses (two MSD
    entries ``a/x.nii.gz`` and ``b/x.nii.gz`` would overwrite each other in the case store)."""
    seen: dict[str, Case] = {}
    found = []
    for case in cases:
        first = seen.setdefault(case.case_id, case)
        if first is not case:
            found.append(
                (
                    case.image_paths[0],
                    f"case name '{case.case_id}' is also used by "
                    f"{first.image_paths[0]}; case names must be unique, rename one of "
                    "the files",
                )
            )
    return found


def _refuse_time_series(case: Case, first: Image, num_channels: int | None) -> None:
    """A 4D time series where a 3D image with channels is expected: one line, naming the file
    and how to pick a frame (``medseg data frame``)."""
    from medseg.io.time_axis import looks_like_time_series, time_series_hint

    if (
        len(case.image_paths) == 1
        and first.spatial_dims == 4
        and num_channels not in (None, first.array.shape[0])
        and looks_like_time_series(case.image_paths[0])
    ):
        raise DatasetError(time_series_hint(case.image_paths[0], first.array.shape))
