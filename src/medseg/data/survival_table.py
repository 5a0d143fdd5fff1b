"""Survival tables: a CSV ``case,time,event`` (optionally ``path``) next to the images.

::

    case,path,time,event          # path relative to the CSV's folder (absolute works too)
    case,time,event               # without path: the image is IMAGES/<case>.<ending>,
                                  # IMAGES the folder ``images`` next to the CSV

``time`` is the time of the event (``event`` 1) or of the last follow-up (``event`` 0,
censored): a finite number >= 0 in any unit. Column names are case-insensitive, other
columns are ignored, the file is read as UTF-8. Images are read and checked as the
classification CSVs' are (:func:`medseg.data.classification.images.stack_files`: one size and
channel count, no NaN voxels; ``uint8`` pictures scaled to ``[0, 1]``).

Every bad row stops the reading with one :class:`~medseg.errors.DatasetError` line naming the
file and line: an event without a time, a time that is not a finite number >= 0, an event flag
other than 0/1, a repeated case, a missing image. For prediction, ``time`` and ``event`` may
be absent (``outcome="optional"``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from medseg.data.classification.csv_table import read_csv_rows
from medseg.data.classification.images import stack_files
from medseg.errors import ConfigError, DatasetError

__all__ = [
    "IMAGE_ENDINGS",
    "MIN_EVENTS_PER_BATCH",
    "SurvivalSet",
    "check_outcomes",
    "read_survival_csv",
    "validation_split",
]

#: Image endings tried, in order, for a case without a ``path`` cell.
IMAGE_ENDINGS = (".png", ".nii.gz", ".nii", ".nrrd", ".mha", ".tif", ".tiff", ".jpg")
#: The fewest events a Cox batch (or a validation part) may hold.
MIN_EVENTS_PER_BATCH = 2


@dataclass
class SurvivalSet:
    """Cases of a survival table, in row order.

    Attributes:
        images: ``(N, C, *spatial)`` float32.
        cases: the ``case`` cells.
        time: ``(N,)`` float64 times, or None (a table without outcomes).
        event: ``(N,)`` int64 0/1, or None.
        source: the CSV file.
    """

    images: np.ndarray
    cases: list[str]
    time: np.ndarray | None
    event: np.ndarray | None
    source: Path

    @property
    def has_outcome(self) -> bool:
        return self.time is not None and self.event is not None

    def subset(self, index: np.ndarray) -> SurvivalSet:
        """The cases at ``index`` (an integer array)."""
        return SurvivalSet(
            images=self.images[index],
            cases=[self.cases[int(i)] for i in index],
            time=None if self.time is None else self.time[index],
            event=None if self.event is None else self.event[index],
            source=self.source,
        )


def read_survival_csv(
    path: str | os.PathLike[str], *, outcome: Literal["required", "optional"] = "required"
) -> SurvivalSet:
    """Read a survival table and its images (see the module docstring).

    Args:
        path: the CSV file.
        outcome: ``"required"``: ``time`` and ``event`` columns must be there (training);
            ``"optional"``: they are read when both are present (prediction).

    Raises:
        DatasetError: the file, a column or a row is bad (one line naming the file and line).
    """
    path = Path(path)
    header, rows = _read_rows(path)
    has_outcome = "time" in header and "event" in header
    if outcome == "required" and not has_outcome:
        missing = [c for c in ("time", "event") if c not in header]
        raise DatasetError(
            f"{path}: no {' or '.join(missing)} column (header: {','.join(header)}); "
            "a survival table is case,time,event (optionally path)"
        )
    seen: dict[str, int] = {}
    for n, cells in rows:
        case = cells["case"]
        if not case:
            raise DatasetError(f"{path}: line {n}: empty case")
        if case in seen:
            raise DatasetError(f"{path}: line {n}: case '{case}' repeats line {seen[case]}")
        seen[case] = n
    outcomes = [_outcome(path, n, cells) for n, cells in rows] if has_outcome else None
    files = [_image_file(path, n, cells, "path" in header) for n, cells in rows]
    return SurvivalSet(
        images=stack_files(files, "auto"),
        cases=[cells["case"] for _, cells in rows],
        time=None if outcomes is None else np.asarray([t for t, _ in outcomes], np.float64),
        event=None if outcomes is None else np.asarray([e for _, e in outcomes], np.int64),
        source=path,
    )


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The lower-case header and the numbered non-blank rows."""
    return read_csv_rows(path, "case", "case,time,event")


def _outcome(path: Path, n: int, cells: dict[str, str]) -> tuple[float, int]:
    """``(time, event)`` of one row, checked."""
    event_text, time_text = cells["event"], cells["time"]
    try:
        event: float | None = float(event_text)
    except ValueError:
        event = None
    if event not in (0.0, 1.0):
        raise DatasetError(
            f"{path}: line {n}: event '{event_text}' is not 0 or 1 (1: event observed at the "
            "time, 0: censored at the time)"
        )
    if not time_text:
        what = "an event without a time" if event == 1 else "a censored case without a time"
        raise DatasetError(
            f"{path}: line {n}: {what}; every case needs the time of its event or of its "
            "last follow-up"
        )
    try:
        time = float(time_text)
    except ValueError:
        time = math.nan
    if not (math.isfinite(time) and time >= 0):
        raise DatasetError(f"{path}: line {n}: time '{time_text}' is not a finite number >= 0")
    return time, int(event)


def _image_file(path: Path, n: int, cells: dict[str, str], has_path: bool) -> Path:
    """The image of one row: its ``path`` cell, else ``images/<case>.<ending>``."""
    if has_path and cells["path"]:
        file = Path(cells["path"])
        file = file if file.is_absolute() else path.parent / file
        if not file.exists():
            raise DatasetError(f"{path}: line {n}: image '{cells['path']}' does not exist ({file})")
        return file
    folder = path.parent / "images"
    for ending in IMAGE_ENDINGS:
        file = folder / f"{cells['case']}{ending}"
        if file.exists():
            return file
    raise DatasetError(
        f"{path}: line {n}: no image for case '{cells['case']}' (no path cell, and no "
        f"{folder}/{cells['case']}.png, .nii.gz, ...)"
    )


def check_outcomes(time: np.ndarray, event: np.ndarray, n: int, what: str) -> None:
    """Raise a ``DatasetError`` unless ``time``/``event`` are ``n`` finite times >= 0 and
    0/1 flags with at least 2 events."""
    time, event = np.asarray(time, np.float64), np.asarray(event)
    if time.shape != (n,) or event.shape != (n,):
        raise DatasetError(f"{what}: {n} images but {time.size} times and {event.size} events")
    bad = np.flatnonzero(~np.isfinite(time) | (time < 0))
    if bad.size:
        raise DatasetError(
            f"{what}: times must be finite and >= 0; rows {bad[:10].tolist()} are not"
        )
    bad = np.flatnonzero((event != 0) & (event != 1))
    if bad.size:
        raise DatasetError(f"{what}: event flags must be 0 or 1; rows {bad[:10].tolist()} are not")
    if int(event.sum()) < MIN_EVENTS_PER_BATCH:
        raise DatasetError(f"{what}: {int(event.sum())} observed event(s); Cox training needs >= 2")


def validation_split(
    event: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` sorted row indices: ``fraction`` of the events and of the censored
    cases each (rounded, at least 2 events in each part), drawn with ``seed``.

    Raises:
        ConfigError: ``fraction`` not in ``(0, 1)``.
        DatasetError: fewer than 4 events (2 to train, 2 to validate).
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
    event = np.asarray(event)
    if int(event.sum()) < 2 * MIN_EVENTS_PER_BATCH:
        raise DatasetError(
            f"{int(event.sum())} observed events: too few to hold some out for validation "
            "(need >= 4)"
        )
    rng = np.random.default_rng([seed, 7])
    val = []
    for flag in (1, 0):
        rows = rng.permutation(np.flatnonzero(event == flag))
        k = round(fraction * rows.size)
        if flag == 1:
            k = min(max(k, MIN_EVENTS_PER_BATCH), rows.size - MIN_EVENTS_PER_BATCH)
        val.append(rows[:k])
    val_rows = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(event.size), val_rows), val_rows
