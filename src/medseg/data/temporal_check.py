"""``medseg data check`` for a time-axis dataset (cine MRI, 4D CT, ultrasound video).

A time-axis dataset (``"time_axis": true`` in ``dataset.json``, or 4D NIfTI images with a
time unit in their header; ``docs/time_series.md``) has, per case, **one** 4D image
``imagesTr/<case>_0000.nii.gz`` ``(T, *spatial)`` and **one** 4D label
``labelsTr/<case>.nii.gz`` with the **same T frames**. Frames that were not annotated
(ACDC-style data: only ED and ES labelled) hold the ``ignore`` label value in every voxel.

Per case it checks: the image is a readable time series with a frame interval (from its
header, else ``dataset.json``'s ``"frame_interval"``), one image file, no NaN/inf, not
constant; the label has the image's frames, interval and grid, trainable values, and at
least one labelled frame. ``time_series_summary`` gives the lines ``medseg data check``
prints: frames, interval, labelled frames.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.case import Case
from medseg.data.dataset import Dataset
from medseg.data.temporal import dataset_frame_interval, labelled_frames
from medseg.errors import MedsegError
from medseg.io.image import Image, grid_mismatches
from medseg.io.time_axis import nifti_time_info, read_time_series


def check_time_case(
    case: Case,
    *,
    label_values: frozenset[int] | None,
    ignore: int | None,
    frame_interval: float | None,
) -> tuple[list[Any], int | None]:
    """The case's ``Problem`` list and its spatial dimensionality (None: image unreadable)."""
    from medseg.data.check import Problem

    problems: list[Problem] = []
    path = case.image_paths[0]
    if len(case.image_paths) > 1:
        problems.append(
            Problem(
                path,
                f"time-axis case '{case.case_id}' has {len(case.image_paths)} image files; it "
                "takes one 4D image (several channels with time are not supported)",
            )
        )
    image = _read(path, frame_interval, problems)
    if image is None:
        return problems, None
    nonfinite = int(np.count_nonzero(~np.isfinite(image.array)))
    if nonfinite:
        problems.append(Problem(path, f"{nonfinite} NaN/inf voxel(s)"))
    finite = image.array[np.isfinite(image.array)] if nonfinite else image.array
    if finite.size and finite.min() == finite.max():
        problems.append(Problem(path, f"image is empty: every voxel is {finite.min()}"))
    if case.label_path is not None:
        problems.extend(_label_problems(case, image, label_values, ignore))
    return problems, image.spatial_dims


def _label_problems(
    case: Case, image: Image, label_values: frozenset[int] | None, ignore: int | None
) -> list[Any]:
    from medseg.data.check import Problem, label_problem

    path = case.label_path
    assert path is not None
    problems: list[Problem] = []
    label = _read(path, image.time_interval, problems)
    if label is None:
        return problems
    if label.num_frames != image.num_frames:
        return [
            Problem(
                path,
                f"label has {label.num_frames} frames, its image {image.num_frames}; give every "
                "frame a label map (fill frames without annotation with the 'ignore' value)",
            )
        ]
    header_interval = _header_interval(path)
    if header_interval is not None and not np.isclose(
        header_interval, image.time_interval, rtol=1e-3
    ):
        problems.append(
            Problem(
                path,
                f"frame interval {header_interval:g} s differs from its image's "
                f"{image.time_interval:g} s",
            )
        )
    for mismatch in grid_mismatches(label.frame(0), image.frame(0)):
        problems.append(
            Problem(path, f"label does not match its image {case.image_paths[0].name}: {mismatch}")
        )
    problem = label_problem(label.array, label_values)
    if problem is not None:
        problems.append(Problem(path, problem))
    elif not labelled_frames(label.array, ignore):
        problems.append(
            Problem(path, f"no labelled frame: all {label.num_frames} frames are 'ignore'")
        )
    return problems


def _header_interval(path: Path) -> float | None:
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return None
    return nifti_time_info(path)[1]


def _read(path: Path, frame_interval: float | None, problems: list[Any]) -> Image | None:
    from medseg.data.check import Problem

    try:
        return read_time_series(path, frame_interval=frame_interval)
    except MedsegError as err:
        message = str(err)
        prefix = f"{path}: "
        problems.append(
            Problem(path, message[len(prefix) :] if message.startswith(prefix) else message)
        )
        return None


def time_series_summary(dataset: Dataset) -> list[str]:
    """One line per case (frames, interval, labelled frames) and one for the dataset.

    Unreadable cases are left out (``check_dataset`` names their problems).

    Example line: ``cine_000: 20 frames x 0.04 s, labelled frames [3, 10] (2 of 20)``.
    """
    fallback = dataset_frame_interval(dataset)
    ignore = dataset.ignore_label
    lines, frames, intervals = [], Counter(), Counter()
    for case in dataset.cases:
        try:
            image = read_time_series(case.image_paths[0], frame_interval=fallback)
            label = (
                read_time_series(case.label_path, frame_interval=image.time_interval)
                if case.label_path is not None
                else None
            )
        except MedsegError:
            continue
        keep = labelled_frames(label.array, ignore) if label is not None else []
        shown = str(keep) if len(keep) <= 4 else f"{keep[:2]}...{keep[-1:]}"
        lines.append(
            f"{case.case_id}: {image.num_frames} frames x {image.time_interval:.4g} s, labelled "
            f"frames {shown} ({len(keep)} of {image.num_frames})"
        )
        frames[image.num_frames] += 1
        intervals[round(float(image.time_interval), 6)] += 1
    lines.append(
        f"time axis: {len(lines)} case(s); frames {dict(sorted(frames.items()))}; "
        f"interval (s) {dict(sorted(intervals.items()))}"
    )
    return lines
