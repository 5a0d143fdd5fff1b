"""Dataset fingerprint: the statistics planning decisions are made from.

Follows nnU-Net's fingerprint: per-case shape and spacing, their medians and percentiles,
per-channel intensity statistics over **foreground** voxels (up to 10,000 sampled per case,
so large cases do not dominate; merged in a ``SampleSketch``: all samples up to one million
per channel, a uniform subset of one million beyond), and class voxel fractions. The
``ignore`` label (sparse annotations) is no class: its voxels are neither foreground nor
counted in the class statistics, whose fractions are shares of the annotated voxels. Shapes
and spacings are in the array axis order of ``medseg.io`` (``(z, y, x)`` in 3D).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.dataset import Case, Dataset, read_case
from medseg.data.parallel import imap_cases
from medseg.data.sample_sketch import SampleSketch
from medseg.data.temporal import (
    dataset_frame_interval,
    is_time_series_dataset,
    labelled_frames,
    read_time_case,
)
from medseg.errors import ConfigError
from medseg.fileutil import write_json_atomic

SAMPLES_PER_CASE = 10_000
SCHEMA_VERSION = 1
TIME_KEYS = ("frames", "time_interval", "labelled_frames")


@dataclass(frozen=True)
class Fingerprint:
    """Statistics of a dataset (see the module docstring). JSON keys equal field names.

    Attributes:
        cases: case id -> ``{"shape", "spacing", "class_voxels"}`` (``ignore`` not counted).
        median_spacing: per-axis median spacing in mm.
        median_shape: per-axis median shape in voxels.
        spacing_percentiles: ``{"p05", "p10", "p50", "p90", "p95"}`` -> per-axis spacing.
        intensity: channel index (str) -> ``{"mean", "std", "median", "min", "max",
            "percentile_00_5", "percentile_99_5"}`` over sampled foreground voxels.
        class_fractions: label name -> share of all annotated voxels (background included,
            ``ignore`` voxels left out).
        anisotropy: largest / smallest median spacing (3 or more: treat as anisotropic).
        time_axis: for a time-axis dataset (``docs/time_series.md``): median frames, median
            frame interval (s), fewest and most labelled frames per case; None otherwise.
            Each case then also records ``frames``, ``time_interval`` and
            ``labelled_frames``, and the statistics cover its labelled frames only.
    """

    dataset_name: str
    spatial_dims: int
    channel_names: dict[str, str]
    labels: dict[str, Any]
    cases: dict[str, dict[str, Any]]
    median_spacing: list[float]
    median_shape: list[float]
    spacing_percentiles: dict[str, list[float]]
    intensity: dict[str, dict[str, float]]
    class_fractions: dict[str, float]
    anisotropy: float
    schema_version: int = SCHEMA_VERSION
    time_axis: dict[str, float] | None = None

    @property
    def is_anisotropic(self) -> bool:
        return self.anisotropy >= 3.0

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write atomically as indented, key-sorted JSON."""
        write_json_atomic(path, asdict(self))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Fingerprint:
        """Read a fingerprint; unknown or missing keys raise ``ConfigError`` naming them."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{path}: unknown fingerprint key(s) {unknown}")
        missing = sorted(n for n in names - set(data) if n not in ("schema_version", "time_axis"))
        if missing:
            raise ConfigError(f"{path}: missing fingerprint key(s) {missing}")
        return cls(**data)


def compute_fingerprint(
    dataset: Dataset,
    *,
    jobs: int | None = None,
    progress: bool = True,
    executor: str = "local",
    address: str | None = None,
) -> Fingerprint:
    """Fingerprint every labelled case of ``dataset`` using ``jobs`` processes (default: all CPUs).

    Each case is read by one task, which returns a small summary (shape, spacing, class
    voxels, its intensity samples); the driver merges the summaries as they arrive into a
    ``SampleSketch`` per channel (every sample up to ``SampleSketch``'s capacity, a uniform
    subset beyond), so memory does not grow with the cohort. ``executor``/``address``: where
    the tasks run (``medseg.data.executor``); the result is the same with either.

    Raises:
        DatasetError / ImageIOError: a case cannot be read (run ``check_dataset`` first).
    """
    if not dataset.cases:
        raise ConfigError(f"{dataset.root}: no labelled cases to fingerprint")
    ignore = dataset.ignore_label
    label_values = sorted(v for v in dataset.label_values if v != ignore)
    time_axis = is_time_series_dataset(dataset)
    work = partial(
        _case_stats,
        num_channels=dataset.num_channels,
        label_values=tuple(label_values),
        ignore=ignore,
        time_axis=time_axis,
        frame_interval=dataset_frame_interval(dataset) if time_axis else None,
    )
    items = [(i, case) for i, case in enumerate(dataset.cases)]
    sketches = [SampleSketch() for _ in range(dataset.num_channels)]
    stats = []
    for index, case_stats in enumerate(
        imap_cases(
            work,
            items,
            jobs=jobs,
            desc="fingerprint",
            progress=progress,
            executor=executor,
            address=address,
        )
    ):
        for sketch, values in zip(sketches, case_stats.pop("samples"), strict=True):
            sketch.add(values, index)
        stats.append(case_stats)
    shapes = np.array([s["shape"] for s in stats], dtype=float)
    spacings = np.array([s["spacing"] for s in stats], dtype=float)
    median_spacing = np.median(spacings, axis=0)
    voxels = np.sum([s["class_voxels"] for s in stats], axis=0).astype(float)
    value_to_name = {v: k for k, v in dataset.labels.items() if isinstance(v, int)}
    return Fingerprint(
        dataset_name=dataset.name,
        spatial_dims=int(shapes.shape[1]),
        channel_names=dict(dataset.channel_names),
        labels=dict(dataset.labels),
        cases=_case_records(dataset, stats, label_values),
        median_spacing=[float(v) for v in median_spacing],
        median_shape=[float(v) for v in np.median(shapes, axis=0)],
        spacing_percentiles={
            f"p{q:02d}": [float(v) for v in np.percentile(spacings, q, axis=0)]
            for q in (5, 10, 50, 90, 95)
        },
        intensity={str(c): _sketch_stats(sketch) for c, sketch in enumerate(sketches)},
        class_fractions={
            value_to_name.get(v, str(v)): float(n / max(voxels.sum(), 1.0))
            for v, n in zip(label_values, voxels, strict=True)
        },
        anisotropy=float(median_spacing.max() / median_spacing.min()),
        time_axis=_time_axis_summary(stats) if time_axis else None,
    )


def _case_records(
    dataset: Dataset, stats: list[dict[str, Any]], label_values: list[int]
) -> dict[str, dict[str, Any]]:
    """``Fingerprint.cases``: shape, spacing, class voxels (and time keys) per case id."""
    return {
        case.case_id: {
            "shape": s["shape"],
            "spacing": s["spacing"],
            "class_voxels": dict(zip(map(str, label_values), s["class_voxels"], strict=True)),
            **{k: s[k] for k in TIME_KEYS if k in s},
        }
        for case, s in zip(dataset.cases, stats, strict=True)
    }


def _time_axis_summary(stats: list[dict[str, Any]]) -> dict[str, float]:
    """Median frames and interval (s) and the labelled frames per case, over all cases."""
    return {
        "median_frames": float(np.median([s["frames"] for s in stats])),
        "median_time_interval": float(np.median([s["time_interval"] for s in stats])),
        "min_labelled_frames": int(min(len(s["labelled_frames"]) for s in stats)),
        "max_labelled_frames": int(max(len(s["labelled_frames"]) for s in stats)),
    }


def _case_stats(
    item: tuple[int, Case],
    *,
    num_channels: int,
    label_values: tuple[int, ...],
    ignore: int | None = None,
    time_axis: bool = False,
    frame_interval: float | None = None,
) -> dict[str, Any]:
    index, case = item
    extra: dict[str, Any] = {}
    if time_axis:  # labelled frames only; frames play the part of more voxels
        series, label_series = read_time_case(case, frame_interval)
        keep = labelled_frames(label_series.array, ignore) if label_series else None
        keep = list(range(series.num_frames)) if keep is None else keep
        array = series.array[keep][None]
        label = label_series.array[keep] if label_series is not None else None
        image_shape, spacing = series.spatial_shape, series.spacing
        extra = {
            "frames": series.num_frames,
            "time_interval": float(series.time_interval),
            "labelled_frames": keep,
        }
    else:
        image, label_image = read_case(case, num_channels=num_channels)
        array = image.channels_first()
        label = label_image.array if label_image is not None else None
        image_shape, spacing = image.spatial_shape, image.spacing
    if label is not None:
        foreground = label > 0
        if ignore is not None:  # unannotated voxels are not foreground
            foreground &= label != ignore
    else:
        foreground = np.ones(array.shape[1:], dtype=bool)
    if not foreground.any():  # no foreground: fall back to all voxels so stats stay defined
        foreground = np.ones(array.shape[1:], dtype=bool)
    rng = np.random.default_rng(index)
    samples = []
    for c in range(array.shape[0]):
        values = array[c][foreground].astype(np.float64)
        values = values[np.isfinite(values)]
        if values.size > SAMPLES_PER_CASE:
            values = rng.choice(values, SAMPLES_PER_CASE, replace=False)
        samples.append(values)
    counts = _value_counts(label) if label is not None else {}
    return {
        "shape": [int(s) for s in image_shape],
        "spacing": [float(s) for s in spacing],
        "samples": samples,
        "class_voxels": [counts.get(v, 0) for v in label_values],
        **extra,
    }


def _value_counts(label: np.ndarray) -> dict[int, int]:
    """Voxels per label value; ``bincount`` (fast) only when the values are small non-negative
    integers, so that a value like 2**31 never sizes an array."""
    if label.dtype.kind in "iub" and label.size and 0 <= label.min() and label.max() < 2**16:
        counts = np.bincount(label.ravel().astype(np.int64, copy=False))
        return {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
    values, numbers = np.unique(label, return_counts=True)
    return {int(v): int(n) for v, n in zip(values, numbers, strict=True)}


def _sketch_stats(sketch: SampleSketch) -> dict[str, float]:
    """``_intensity_stats`` of the sketch's samples, with the exact minimum and maximum."""
    stats = _intensity_stats(sketch.values())
    if sketch.count:
        stats["min"], stats["max"] = sketch.minimum, sketch.maximum
    return stats


def _intensity_stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return dict.fromkeys(
            ("mean", "std", "median", "min", "max", "percentile_00_5", "percentile_99_5"),
            float("nan"),
        )
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
        "percentile_00_5": float(np.percentile(values, 0.5)),
        "percentile_99_5": float(np.percentile(values, 99.5)),
    }
