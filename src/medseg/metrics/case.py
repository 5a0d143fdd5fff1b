"""All metrics of one case: per label, per region (union of labels), with an ignore label."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.metrics.confusion import ConfusionCounts, confusion_counts, overlap_metrics
from medseg.metrics.distance import (
    DEFAULT_TOLERANCE_MM,
    Hd95Mode,
    check_hd95_mode,
    summarize_distances,
)
from medseg.metrics.surface import (
    SurfaceDistances,
    SurfaceMode,
    check_pair,
    surface_distances,
    union_bbox,
)

#: The metric columns of ``per_case.csv``, in order (after ``case`` and ``label``).
METRIC_COLUMNS: tuple[str, ...] = (
    "tp", "fp", "fn", "tn",
    "dice", "iou", "precision", "recall", "specificity", "npv", "accuracy", "f1", "mcc", "vs",
    "hd", "hd95", "assd", "masd", "nsd",
)  # fmt: skip
COUNT_COLUMNS = ("tp", "fp", "fn", "tn")

LabelSpec = int | Sequence[int]
Labels = Sequence[LabelSpec] | Mapping[str, LabelSpec]


def binary_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    *,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    hd95_mode: Hd95Mode = "max_directed",
    surface: SurfaceMode = "voxel",
    connectivity: int = 1,
    n_voxels: int | None = None,
    threads: int | None = None,
) -> dict[str, float]:
    """Every metric of ``METRIC_COLUMNS`` for one binary prediction against its reference.

    The masks are cropped once to the bounding box of their union; counts, surfaces and
    distances are computed on the crop (TN from the voxel count), so large, mostly empty
    volumes cost little.

    Args:
        pred: ``(*spatial)`` prediction mask (non-zero = foreground).
        ref: ``(*spatial)`` reference mask, same shape.
        spacing: voxel size in mm per array axis.
        tolerance_mm: NSD tolerance (mm).
        hd95_mode: ``"max_directed"`` (default) or ``"pooled"``; see ``medseg.metrics.distance``.
        surface: ``"voxel"`` (default) or ``"surfel"``; see ``medseg.metrics.surface``.
        connectivity: voxel-surface neighbourhood (1 = face, default).
        n_voxels: voxels that count (for TN), default ``pred.size``; smaller when an ignore
            label removed some (they must be False in both masks).
        threads: k-d tree query threads (default: all CPUs).

    Returns:
        ``{metric: value}``: counts as floats, then overlap and distance metrics; NaN where
        undefined (empty masks, see the seed lecture table in ``medseg.metrics.confusion``).

    Example:
        >>> ref = np.zeros((4, 4), bool); ref[1:3, 1:3] = True
        >>> pred = np.zeros((4, 4), bool); pred[1:3, 1:2] = True
        >>> m = binary_metrics(pred, ref, (1.0, 1.0))
        >>> round(m["dice"], 4), m["hd"], m["precision"]
        (0.6667, 1.0, 1.0)
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    spacing = check_pair(pred, ref, spacing)
    check_hd95_mode(hd95_mode)
    total = pred.size if n_voxels is None else int(n_voxels)
    box = union_bbox(pred, ref)
    if box is None:
        counts = ConfusionCounts(0, 0, 0, total)
        sd = SurfaceDistances(np.zeros(0), np.zeros(0))
    else:
        pred, ref = pred[box], ref[box]
        inside = confusion_counts(pred, ref)
        counts = ConfusionCounts(
            inside.tp, inside.fp, inside.fn, total - inside.tp - inside.fp - inside.fn
        )
        sd = surface_distances(
            pred, ref, spacing, surface=surface, connectivity=connectivity, threads=threads
        )
    row: dict[str, float] = {name: float(getattr(counts, name)) for name in COUNT_COLUMNS}
    row.update(overlap_metrics(counts))
    row.update(summarize_distances(sd, tolerance_mm=tolerance_mm, hd95_mode=hd95_mode))
    return {name: row[name] for name in METRIC_COLUMNS}


def label_regions(labels: Labels) -> dict[str, tuple[int, ...]]:
    """Normalise a label specification to ``{name: label values}``.

    Args:
        labels: a sequence of ints (one label each) and/or sequences of ints (a region, the
            union of those labels), or a mapping ``name -> int | sequence``.

    Returns:
        Ordered ``{name: values}``; an int ``1`` is named ``"1"``, a region ``(1, 2, 3)``
        ``"1+2+3"``.

    Example:
        >>> label_regions([1, 2, (1, 2, 3)])
        {'1': (1,), '2': (2,), '1+2+3': (1, 2, 3)}
        >>> label_regions({"whole_tumour": [1, 2, 3]})
        {'whole_tumour': (1, 2, 3)}
    """
    items = labels.items() if isinstance(labels, Mapping) else ((None, spec) for spec in labels)
    regions: dict[str, tuple[int, ...]] = {}
    for name, spec in items:
        values = _values(spec)
        key = str(name) if name is not None else "+".join(str(v) for v in values)
        if key in regions:
            raise ConfigError(f"label {key!r} is given twice")
        regions[key] = values
    if not regions:
        raise ConfigError("no labels to evaluate")
    return regions


def _values(spec: Any) -> tuple[int, ...]:
    try:
        raw = [spec] if np.isscalar(spec) else list(spec)
        values = tuple(int(v) for v in raw)
        valid = bool(raw) and all(not isinstance(v, (bool, str)) and v == int(v) for v in raw)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigError(f"a label must be an int or a non-empty list of ints, got {spec!r}")
    return values


def foreground_labels(ref: np.ndarray, *, ignore_label: int | None = None) -> list[int]:
    """Sorted non-zero values of a label map, without ``ignore_label``."""
    return [int(v) for v in np.unique(ref) if v != 0 and v != ignore_label]


def evaluate_case(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    *,
    labels: Labels | None = None,
    ignore_label: int | None = None,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    hd95_mode: Hd95Mode = "max_directed",
    surface: SurfaceMode = "voxel",
    connectivity: int = 1,
    threads: int | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of a predicted label map against a reference label map, per label or region.

    Args:
        pred: ``(*spatial)`` integer label map (2D images are evaluated in 2D).
        ref: ``(*spatial)`` integer reference label map, same shape.
        spacing: voxel size in mm per array axis (``(z, y, x)`` for a volume).
        labels: labels and regions to evaluate (see ``label_regions``); default: every
            non-zero value of ``ref`` except ``ignore_label``.
        ignore_label: reference value whose voxels are left out: not counted in TP/FP/FN/TN
            and treated as background in both masks for the surface distances.
        tolerance_mm: NSD tolerance (mm).
        hd95_mode: ``"max_directed"`` (default) or ``"pooled"``.
        surface: ``"voxel"`` (default) or ``"surfel"``.
        connectivity: voxel-surface neighbourhood (1 = face, default).
        threads: k-d tree query threads (default: all CPUs).

    Returns:
        ``{label name: {metric: value}}`` with the metrics of ``METRIC_COLUMNS``; label names
        are strings (``"1"``, ``"1+2+3"`` or the mapping's keys).

    Raises:
        GeometryError: shapes or spacing do not match. ConfigError: bad labels or options.

    Example:
        >>> ref = np.array([[0, 1, 1, 2], [0, 1, 1, 2]])
        >>> pred = np.array([[0, 1, 2, 2], [0, 1, 1, 2]])
        >>> res = evaluate_case(pred, ref, (1.0, 1.0), labels=[1, 2, (1, 2)])
        >>> round(res["1"]["dice"], 4), round(res["2"]["dice"], 4), res["1+2"]["dice"]
        (0.8571, 0.8, 1.0)
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    check_pair(pred, ref, spacing)
    regions = label_regions(
        labels if labels is not None else foreground_labels(ref, ignore_label=ignore_label)
    )
    valid = None if ignore_label is None else ref != ignore_label
    n_voxels = ref.size if valid is None else int(np.count_nonzero(valid))
    results = {}
    for name, values in regions.items():
        pred_mask, ref_mask = _mask(pred, values), _mask(ref, values)
        if valid is not None:
            pred_mask &= valid
            ref_mask &= valid
        results[name] = binary_metrics(
            pred_mask,
            ref_mask,
            spacing,
            tolerance_mm=tolerance_mm,
            hd95_mode=hd95_mode,
            surface=surface,
            connectivity=connectivity,
            n_voxels=n_voxels,
            threads=threads,
        )
    return results


def _mask(label_map: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    return label_map == values[0] if len(values) == 1 else np.isin(label_map, values)


def empty_metrics(n_voxels: int) -> dict[str, float]:
    """The row of a label absent from both prediction and reference (TN = ``n_voxels``)."""
    row = overlap_metrics(ConfusionCounts(0, 0, 0, n_voxels))
    row.update(tp=0.0, fp=0.0, fn=0.0, tn=float(n_voxels), hd=math.nan, hd95=math.nan)
    row.update(assd=math.nan, masd=math.nan, nsd=math.nan)
    return {name: row[name] for name in METRIC_COLUMNS}


def case_rows(case_id: str, per_label: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """Flatten ``evaluate_case`` output to rows ``{"case", "label", *METRIC_COLUMNS}``."""
    return [
        {"case": case_id, "label": label, **dict(metrics)} for label, metrics in per_label.items()
    ]
