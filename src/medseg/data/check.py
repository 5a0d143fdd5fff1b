"""``check_dataset``: find every problem in a dataset folder, one line per problem.

Never stops at the first problem and never raises on bad data: each finding is a
``Problem(path, message)``. Checks: files that cannot be read (corrupt, truncated, empty, a
header declaring more voxel data than the memory budget, a spacing that is zero, negative,
NaN, inf or over 100 mm), MSD paths leading outside the dataset, two cases with one name,
missing channel files (named) or labels, wrong channel count, 4D images (except an MSD
multi-modal volume), a dataset mixing 2D and 3D cases, image/label shape or geometry
mismatch, label values that are negative or not declared in ``dataset.json``, a
``dataset.json`` declaring negative or repeated values or no background 0, non-integer
labels, NaN/inf voxels, constant (empty) images, and ``numTraining`` disagreeing with the
files. A time-axis dataset (``"time_axis": true``; ``docs/time_series.md``) is checked case by
case by ``medseg.data.temporal_check`` instead (frames, interval, labelled frames); a 4D
time series in an ordinary dataset is named with how to pick one frame.

``label_problem`` and ``nonfinite_problems`` are shared with ``preprocess`` and ``predict``,
which refuse such input with the same message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from medseg.data.case import Case, channels_first_image, duplicate_cases, missing_channel_files
from medseg.data.dataset import Dataset
from medseg.data.parallel import map_cases
from medseg.data.temporal import dataset_frame_interval, is_time_series_dataset
from medseg.data.temporal_check import check_time_case
from medseg.errors import MedsegError
from medseg.io import Image, grid_mismatches, read_image
from medseg.io.time_axis import looks_like_time_series, time_series_hint


@dataclass(frozen=True)
class Problem:
    """One finding: the file it concerns and what is wrong."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_dataset(
    dataset: Dataset,
    *,
    jobs: int | None = None,
    progress: bool = True,
    executor: str = "local",
    address: str | None = None,
) -> list[Problem]:
    """Validate every case of ``dataset``; return all problems found (empty when clean).

    ``executor``/``address``: where the per-case checks run (``medseg.data.executor``)."""
    problems = [Problem(path, message) for path, message in dataset.layout_problems]
    problems.extend(label_declaration_problems(dataset))
    problems.extend(Problem(path, message) for path, message in duplicate_cases(dataset.cases))
    if (
        dataset.num_training is not None
        and dataset.num_training != len(dataset.cases)
        and dataset.layout != "folder2d"
    ):
        problems.append(
            Problem(
                dataset.root / "dataset.json",
                f"numTraining is {dataset.num_training} but {len(dataset.cases)} labelled case(s) "
                "were found",
            )
        )
    if not dataset.cases:
        problems.append(Problem(dataset.root, "no labelled training cases found"))
    label_values = (
        frozenset(dataset.label_values)
        if dataset.layout != "folder2d" and not dataset.instance_labels
        else None
    )
    if is_time_series_dataset(dataset):  # one 4D image + one 4D label per case
        check = partial(
            check_time_case,
            label_values=label_values,
            ignore=dataset.ignore_label,
            frame_interval=_frame_interval(dataset, problems),
        )
    else:
        check = partial(
            _check_case,
            num_channels=dataset.num_channels,
            label_values=label_values,
            layout=dataset.layout,
        )
    results = map_cases(
        check,
        list(dataset.cases),
        jobs=jobs,
        desc="check",
        progress=progress,
        executor=executor,
        address=address,
    )
    for case_problems, _ in results:
        problems.extend(case_problems)
    problems.extend(_mixed_dimensionality(dataset.cases, [dims for _, dims in results]))
    return problems


def _frame_interval(dataset: Dataset, problems: list[Problem]) -> float | None:
    try:
        return dataset_frame_interval(dataset)
    except MedsegError as err:
        problems.append(Problem(dataset.root / "dataset.json", str(err).split(": ", 1)[-1]))
        return None


def label_declaration_problems(dataset: Dataset) -> list[Problem]:
    """Problems of the ``labels`` a ``dataset.json`` declares: negative values, a value given
    to two names, no background 0. Training stores class indices ``0..K-1`` in the order of
    the values, so each value must be a distinct non-negative integer."""
    if dataset.layout == "folder2d":  # no dataset.json: the values come from the masks
        return []
    path = dataset.root / "dataset.json"
    problems = []
    for name, value in dataset.labels.items():
        negative = [v for v in (value if isinstance(value, list) else [value]) if v < 0]
        if negative:
            problems.append(
                Problem(
                    path,
                    f"label '{name}' has negative value(s) {negative}; label values must "
                    "be non-negative integers",
                )
            )
    names: dict[int, list[str]] = {}
    for name, value in dataset.labels.items():
        if isinstance(value, int):
            names.setdefault(value, []).append(name)
    for value, shared in sorted(names.items()):
        if len(shared) > 1:
            problems.append(
                Problem(
                    path, f"labels {shared} share the value {value}; give each label its own value"
                )
            )
    if 0 not in names:
        problems.append(
            Problem(path, "'labels' declares no background with value 0, e.g. \"background\": 0")
        )
    return problems


def label_problem(label: np.ndarray, declared: Collection[int] | None) -> str | None:
    """Why a label map cannot be trained on, or None when it is fine.

    Args:
        label: the label map, any shape and dtype.
        declared: the values ``dataset.json`` declares; None: any non-negative integer.

    Returns:
        A one-line message for NaN/inf, non-integer, negative or undeclared values.

    Example:
        >>> label_problem(np.array([0, 1, 1]), {0, 1}) is None
        True
        >>> label_problem(np.array([0, 10]), {0, 1}).split(";")[0]
        "label values [10] are not in dataset.json 'labels' [0, 1]"
    """
    array = np.asarray(label)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            return "label contains NaN/inf"
        if not np.all(array == np.round(array)):
            return "label has non-integer values (interpolated mask?); labels must be integers"
    values = {int(v) for v in np.unique(array)}
    negative = sorted(v for v in values if v < 0)
    if negative:
        return (
            f"negative label values {negative}; label values must be non-negative integers "
            "declared in dataset.json"
        )
    if declared is not None and not values <= set(declared):
        return (
            f"label values {sorted(values - set(declared))} are not in dataset.json 'labels' "
            f"{sorted(declared)}; fix the mask or add them to dataset.json"
        )
    return None


def nonfinite_problems(paths: Sequence[Path], image: Image) -> list[Problem]:
    """One problem per file with NaN/inf voxels in a case's image ``(C, *spatial)`` (channel
    ``c`` comes from ``paths[c]`` when there is one file per channel, else all from
    ``paths[0]``)."""
    array = image.channels_first()
    if array.dtype.kind not in "fc":
        return []
    counts = [int(np.count_nonzero(~np.isfinite(channel))) for channel in array]
    if len(paths) != len(counts):
        counts, paths = [sum(counts)], paths[:1]
    return [
        Problem(path, f"{n} NaN/inf voxel(s)") for path, n in zip(paths, counts, strict=True) if n
    ]


def _check_case(
    case: Case, *, num_channels: int, label_values: frozenset[int] | None, layout: str
) -> tuple[list[Problem], int | None]:
    """The case's problems and its spatial dimensionality (None when no image was readable)."""
    problems: list[Problem] = []
    images = _read_channels(case, layout, problems)
    problems.extend(_channel_problems(case, images, num_channels=num_channels, layout=layout))
    dims = images[0][1].spatial_dims if images else None
    if case.label_path is not None:
        problems.extend(_label_problems(case.label_path, images, label_values))
    return problems, dims


def _read_channels(case: Case, layout: str, problems: list[Problem]) -> list[tuple[Path, Image]]:
    """The case's readable 2D/3D channel images; the problems of the others (unreadable, 4D
    and more, bad intensities) go to ``problems``."""
    images: list[tuple[Path, Image]] = []
    for path in case.image_paths:
        image = _read(path, problems)
        if image is None:
            continue
        if image.spatial_dims == 4 and layout == "msd" and len(case.image_paths) == 1:
            image = channels_first_image(image)  # an MSD multi-modal volume: channels first
        elif image.spatial_dims == 4 and looks_like_time_series(path):
            hint = time_series_hint(path, image.array.shape)
            problems.append(Problem(path, hint[len(f"{path}: ") :]))
            continue
        elif image.spatial_dims > 3:
            problems.append(
                Problem(
                    path,
                    f"image is {image.spatial_dims}D (array shape {image.array.shape}); medseg "
                    "reads 2D and 3D images, one file per channel (_0000, _0001, ...)",
                )
            )
            continue
        images.append((path, image))
        problems.extend(_check_intensities(path, image))
    return images


def _channel_problems(
    case: Case, images: list[tuple[Path, Image]], *, num_channels: int, layout: str
) -> list[Problem]:
    """Channel count, channel file numbering and channel grids of one case."""
    problems = []
    channel_count = sum(im.num_channels for _, im in images)
    if len(images) == len(case.image_paths) and channel_count != num_channels:
        expected = "the first image has" if layout == "folder2d" else "dataset.json declares"
        counts = f"case '{case.case_id}' has {channel_count} channel(s), {expected} {num_channels}"
        missing = missing_channel_files(case, num_channels) if layout == "nnunet_v2" else []
        problems.extend(Problem(path, f"channel file missing: {counts}") for path in missing)
        if not missing:
            problems.append(Problem(case.image_paths[0], counts))
    expected_suffixes = [f"_{i:04d}" for i in range(len(case.image_paths))]
    names = [p.name for p in case.image_paths]
    if len(case.image_paths) > 1 and not all(
        s in n for s, n in zip(expected_suffixes, names, strict=True)
    ):
        problems.append(
            Problem(
                case.image_paths[0],
                f"channel files of '{case.case_id}' are not numbered consecutively from _0000: "
                f"{names}",
            )
        )
    for (path, image), (_, other) in zip(images[1:], images[:-1], strict=True):
        for mismatch in grid_mismatches(image, other):
            problems.append(
                Problem(path, f"channel grid differs from the previous channel: {mismatch}")
            )
    return problems


def _label_problems(
    label_path: Path, images: list[tuple[Path, Image]], label_values: frozenset[int] | None
) -> list[Problem]:
    """The label map's problems: unreadable, not 2D/3D, several channels, a grid other than
    its first image's, values that cannot be trained on."""
    problems: list[Problem] = []
    label = _read(label_path, problems)
    if label is None:
        return problems
    if label.spatial_dims > 3:
        problems.append(
            Problem(
                label_path,
                f"label is {label.spatial_dims}D (array shape {label.array.shape}); "
                "expected a 2D or 3D label map",
            )
        )
        return problems
    if label.has_channels and label.num_channels != 1:
        problems.append(
            Problem(
                label_path,
                f"label has {label.num_channels} channels, expected a single label map",
            )
        )
    if images:
        for mismatch in grid_mismatches(label, images[0][1]):
            problems.append(
                Problem(
                    label_path,
                    f"label does not match its image {images[0][0].name}: {mismatch}",
                )
            )
    problem = label_problem(label.array, label_values)
    if problem is not None:
        problems.append(Problem(label_path, problem))
    return problems


def _mixed_dimensionality(cases: Sequence[Case], dims: list[int | None]) -> list[Problem]:
    """One problem per case whose dimensionality differs from the most common one."""
    counts = Counter(d for d in dims if d is not None)
    if len(counts) <= 1:
        return []
    usual, n = counts.most_common(1)[0]
    return [
        Problem(
            case.image_paths[0],
            f"image is {d}D but {n} of {sum(counts.values())} cases are {usual}D; "
            "a dataset must be all 2D or all 3D",
        )
        for case, d in zip(cases, dims, strict=True)
        if d is not None and d != usual
    ]


def _read(path: Path, problems: list[Problem]) -> Image | None:
    try:
        return read_image(path)
    except MedsegError as err:
        message = str(err)
        prefix = f"{path}: "
        problems.append(
            Problem(path, message[len(prefix) :] if message.startswith(prefix) else message)
        )
        return None


def _check_intensities(path: Path, image: Image) -> list[Problem]:
    array = image.array
    if array.size == 0:
        return [Problem(path, "image has no voxels")]
    problems = nonfinite_problems([path], image)
    finite = array[np.isfinite(array)] if problems else array  # a copy only when needed
    if finite.size and finite.min() == finite.max():
        problems.append(Problem(path, f"image is empty: every voxel is {finite.min()}"))
    return problems
