"""``check_dataset``: find every problem in a dataset folder, one line per problem.

Never stops at the first problem and never raises on bad data: each finding is a
``Problem(path, message)``. Checks: files that cannot be read (corrupt, truncated, empty),
missing channel files or labels, wrong channel count, image/label shape or geometry
mismatch, label values not declared in ``dataset.json``, non-integer labels, NaN/inf voxels,
constant (empty) images, and ``numTraining`` disagreeing with the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from medseg.data.dataset import Case, Dataset
from medseg.data.parallel import map_cases
from medseg.errors import MedsegError
from medseg.io import Image, grid_mismatches, read_image


@dataclass(frozen=True)
class Problem:
    """One finding: the file it concerns and what is wrong."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_dataset(dataset: Dataset, *, jobs: int | None = None, progress: bool = True) -> list[Problem]:
    """Validate every case of ``dataset``; return all problems found (empty when clean)."""
    problems = [Problem(path, message) for path, message in dataset.layout_problems]
    if dataset.num_training is not None and dataset.num_training != len(dataset.cases) and dataset.layout != "folder2d":
        problems.append(
            Problem(
                dataset.root / "dataset.json",
                f"numTraining is {dataset.num_training} but {len(dataset.cases)} labelled case(s) were found",
            )
        )
    if not dataset.cases:
        problems.append(Problem(dataset.root, "no labelled training cases found"))
    check = partial(
        _check_case,
        num_channels=dataset.num_channels,
        label_values=frozenset(dataset.label_values),
        check_labels=dataset.layout != "folder2d",
    )
    for case_problems in map_cases(check, list(dataset.cases), jobs=jobs, desc="check", progress=progress):
        problems.extend(case_problems)
    return problems


def _check_case(case: Case, *, num_channels: int, label_values: frozenset[int], check_labels: bool) -> list[Problem]:
    problems: list[Problem] = []
    images: list[tuple[Path, Image]] = []
    for path in case.image_paths:
        image = _read(path, problems)
        if image is not None:
            images.append((path, image))
            problems.extend(_check_intensities(path, image))
    channel_count = sum(im.num_channels for _, im in images)
    if len(images) == len(case.image_paths) and channel_count != num_channels:
        problems.append(
            Problem(case.image_paths[0], f"case '{case.case_id}' has {channel_count} channel(s), dataset.json declares {num_channels}")
        )
    expected_suffixes = [f"_{i:04d}" for i in range(len(case.image_paths))]
    names = [p.name for p in case.image_paths]
    if len(case.image_paths) > 1 and not all(s in n for s, n in zip(expected_suffixes, names, strict=True)):
        problems.append(Problem(case.image_paths[0], f"channel files of '{case.case_id}' are not numbered consecutively from _0000: {names}"))
    for (path, image), (_, other) in zip(images[1:], images[:-1], strict=True):
        for mismatch in grid_mismatches(image, other):
            problems.append(Problem(path, f"channel grid differs from the previous channel: {mismatch}"))
    if case.label_path is None:
        return problems
    label = _read(case.label_path, problems)
    if label is None:
        return problems
    if label.has_channels and label.num_channels != 1:
        problems.append(Problem(case.label_path, f"label has {label.num_channels} channels, expected a single label map"))
    if images:
        for mismatch in grid_mismatches(label, images[0][1]):
            problems.append(Problem(case.label_path, f"label does not match its image {images[0][0].name}: {mismatch}"))
    problems.extend(_check_label_values(case.label_path, label, label_values if check_labels else None))
    return problems


def _read(path: Path, problems: list[Problem]) -> Image | None:
    try:
        return read_image(path)
    except MedsegError as err:
        message = str(err)
        prefix = f"{path}: "
        problems.append(Problem(path, message[len(prefix):] if message.startswith(prefix) else message))
        return None


def _check_intensities(path: Path, image: Image) -> list[Problem]:
    array = image.array
    if array.size == 0:
        return [Problem(path, "image has no voxels")]
    problems = []
    if array.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            problems.append(Problem(path, f"{bad} NaN/inf voxel(s)"))
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if finite.size and finite.min() == finite.max():
        problems.append(Problem(path, f"image is empty: every voxel is {finite.min()}"))
    return problems


def _check_label_values(path: Path, label: Image, declared: frozenset[int] | None) -> list[Problem]:
    array = label.array
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            return [Problem(path, "label contains NaN/inf")]
        if not np.all(array == np.round(array)):
            return [Problem(path, "label has non-integer values (interpolated mask?); labels must be integers")]
    values = {int(v) for v in np.unique(array)}
    if declared is not None and not values <= declared:
        return [
            Problem(
                path,
                f"label values {sorted(values - declared)} are not in dataset.json 'labels' {sorted(declared)}; "
                "fix the mask or add them to dataset.json",
            )
        ]
    return []
