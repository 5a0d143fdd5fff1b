"""Summary statistics over per-case rows: per label and over all labels and cases."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from medseg.metrics.case import METRIC_COLUMNS


def describe(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, std, median of the non-NaN ``values`` and how many NaNs were skipped.

    Returns:
        ``{"mean", "std", "median", "n", "nan_count"}``; ``std`` is the population standard
        deviation (ddof=0); mean/std/median are NaN when every value is NaN. ``n`` counts the
        values used.

    Example:
        >>> describe([1.0, float("nan"), 3.0])
        {'mean': 2.0, 'std': 1.0, 'median': 2.0, 'n': 2, 'nan_count': 1}
    """
    array = np.asarray(values, dtype=float)
    kept = array[~np.isnan(array)]
    if kept.size == 0:
        stats = {"mean": math.nan, "std": math.nan, "median": math.nan}
    else:
        stats = {
            "mean": float(kept.mean()),
            "std": float(kept.std()),
            "median": float(np.median(kept)),
        }
    return {**stats, "n": int(kept.size), "nan_count": int(array.size - kept.size)}


def aggregate(
    rows: Iterable[Mapping[str, Any]], *, metrics: Sequence[str] = METRIC_COLUMNS
) -> dict[str, Any]:
    """Summarise per-case rows per label and overall.

    Args:
        rows: dicts with ``"case"``, ``"label"`` and the metric keys (as ``case_rows`` or
            ``per_case.csv`` give them).
        metrics: the metric keys to summarise; missing keys count as NaN.

    Returns:
        ``{"n_cases", "labels", "per_label": {label: {metric: stats}}, "overall": {metric:
        stats}}`` with ``stats`` from ``describe``. ``overall`` pools every (case, label)
        row, so it is the mean over labels and cases; each mean skips NaNs and reports how
        many it skipped (``nan_count``).

    Example:
        >>> rows = [
        ...     {"case": "a", "label": "1", "dice": 0.5},
        ...     {"case": "a", "label": "2", "dice": 1.0},
        ... ]
        >>> aggregate(rows, metrics=["dice"])["overall"]["dice"]["mean"]
        0.75
    """
    rows = list(rows)
    labels = list(dict.fromkeys(str(row["label"]) for row in rows))
    per_label = {
        label: _summary([row for row in rows if str(row["label"]) == label], metrics)
        for label in labels
    }
    return {
        "n_cases": len({row["case"] for row in rows}),
        "labels": labels,
        "per_label": per_label,
        "overall": _summary(rows, metrics),
    }


def _summary(
    rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]
) -> dict[str, dict[str, float | int]]:
    return {name: describe([_as_float(row.get(name)) for row in rows]) for name in metrics}


def _as_float(value: Any) -> float:
    return math.nan if value is None or value == "" else float(value)


# ---------------------------------------------------------------- dataset-level summaries


def pooled_overlap(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Dice and IoU from TP, FP and FN summed over cases, per label and over all rows.

    Unlike the mean of per-case Dice, the pooled ("global", "micro") Dice weighs each case by
    its size: a large structure counts more than a small one, and a case with an empty
    reference still counts through its false positives.

    Args:
        rows: per-case rows with ``label``, ``tp``, ``fp`` and ``fn``.

    Returns:
        ``{"per_label": {label: stats}, "overall": stats}`` with ``stats = {"tp", "fp",
        "fn", "dice", "iou"}``; Dice and IoU are NaN when every count is 0. ``overall`` sums
        every row, so with overlapping regions (``1+2``) voxels count once per region.

    Example:
        >>> rows = [{"label": "1", "tp": 8, "fp": 2, "fn": 0},
        ...         {"label": "1", "tp": 0, "fp": 0, "fn": 2}]
        >>> pooled_overlap(rows)["per_label"]["1"]["dice"]
        0.8
    """
    rows = list(rows)
    labels = list(dict.fromkeys(str(row["label"]) for row in rows))
    return {
        "per_label": {
            label: _pooled([row for row in rows if str(row["label"]) == label]) for label in labels
        },
        "overall": _pooled(rows),
    }


def _pooled(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    tp, fp, fn = (sum(_as_float(row.get(k)) for row in rows) for k in ("tp", "fp", "fn"))
    union = tp + fp + fn
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "dice": 2 * tp / (2 * tp + fp + fn) if union else math.nan,
        "iou": tp / union if union else math.nan,
    }


def per_image_summary(
    rows: Iterable[Mapping[str, Any]], *, metrics: Sequence[str]
) -> dict[str, dict[str, float | int]]:
    """Each metric averaged over the labels of each case, then summarised over cases.

    The seed lecture's "IoU at image level": every case weighs the same whatever its number
    of labels. NaN labels are skipped within a case; a case whose labels are all NaN gives
    NaN (counted in ``nan_count``).

    Returns:
        ``{metric: describe(per-case means)}``.

    Example:
        >>> rows = [{"case": "a", "label": "1", "iou": 0.2}, {"case": "a", "label": "2",
        ...          "iou": 0.4}, {"case": "b", "label": "1", "iou": 0.9}]
        >>> round(per_image_summary(rows, metrics=["iou"])["iou"]["mean"], 6)
        0.6
    """
    by_case: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_case.setdefault(str(row["case"]), []).append(row)
    summary = {}
    for name in metrics:
        means = []
        for case_rows in by_case.values():
            values = np.array([_as_float(row.get(name)) for row in case_rows])
            kept = values[~np.isnan(values)]
            means.append(float(kept.mean()) if kept.size else math.nan)
        summary[name] = describe(means)
    return summary


def bland_altman(
    pred_values: Sequence[float], ref_values: Sequence[float]
) -> dict[str, float | int]:
    """Bland-Altman agreement of two measurements of the same cases (e.g. volumes in mL).

    ``diff = pred - ref`` per case; ``bias`` is the mean difference, ``sd`` the sample
    standard deviation of the differences (ddof=1, as Bland & Altman, Lancet 1986) and the
    95 % limits of agreement are ``bias -/+ 1.96 sd``. Pairs with a NaN are skipped.

    Returns:
        ``{"bias", "sd", "loa_lower", "loa_upper", "n"}`` in the unit of the inputs; NaN
        bias with no pair, NaN ``sd`` and limits with fewer than two pairs.

    Example:
        >>> bland_altman([1.0, 2.0, 4.0], [1.0, 1.0, 2.0])
        {'bias': 1.0, 'sd': 1.0, 'loa_lower': -0.96, 'loa_upper': 2.96, 'n': 3}
    """
    pred, ref = np.asarray(pred_values, dtype=float), np.asarray(ref_values, dtype=float)
    if pred.shape != ref.shape:
        raise ValueError(f"bland_altman: {pred.size} predicted values for {ref.size} references")
    diff = (pred - ref)[~(np.isnan(pred) | np.isnan(ref))]
    bias = float(diff.mean()) if diff.size else math.nan
    sd = float(diff.std(ddof=1)) if diff.size >= 2 else math.nan
    return {
        "bias": bias,
        "sd": sd,
        "loa_lower": bias - LOA_Z * sd,
        "loa_upper": bias + LOA_Z * sd,
        "n": int(diff.size),
    }


LOA_Z = 1.96  # two-sided 95 % of a normal distribution


def size_unit(rows: Iterable[Mapping[str, Any]]) -> str | None:
    """``"mL"`` when some row has a finite ``vol_ref_ml`` (3D), else ``"mm2"`` when some row
    has a finite ``area_ref_mm2`` (2D), else None (no size columns, e.g. 1D or old files)."""
    rows = list(rows)
    for unit, key in (("mL", "vol_ref_ml"), ("mm2", "area_ref_mm2")):
        if any(not math.isnan(_as_float(row.get(key))) for row in rows):
            return unit
    return None


#: The size columns (predicted, reference) of each unit ``size_unit`` returns.
SIZE_KEYS = {"mL": ("vol_pred_ml", "vol_ref_ml"), "mm2": ("area_pred_mm2", "area_ref_mm2")}


def bland_altman_by_label(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``bland_altman`` of the predicted against the reference size, per label.

    Sizes are the ``vol_*_ml`` columns (3D images, mL) or, when no row has a volume, the
    ``area_*_mm2`` columns (2D images, mm^2); each result carries its ``unit``. Empty when
    there are no size columns.
    """
    rows = list(rows)
    unit = size_unit(rows)
    if unit is None:
        return {}
    pred_key, ref_key = SIZE_KEYS[unit]
    result = {}
    for label in dict.fromkeys(str(row["label"]) for row in rows):
        chosen = [row for row in rows if str(row["label"]) == label]
        result[label] = {
            **bland_altman(
                [_as_float(r.get(pred_key)) for r in chosen],
                [_as_float(r.get(ref_key)) for r in chosen],
            ),
            "unit": unit,
        }
    return result


def stratify_by_size(
    rows: Iterable[Mapping[str, Any]],
    *,
    metrics: Sequence[str],
    bins: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Mean of every metric per stratum of reference size, per label.

    Small structures score lower on overlap metrics for the same boundary error (the seed
    lecture's "effect of structure size"), so a mean over mixed sizes hides where a model
    fails. Rows are grouped by their reference size (``vol_ref_ml``, or ``area_ref_mm2``
    for 2D images: ``size_unit``):

    - ``bins=None``: tertiles of the label's non-empty reference sizes (cut at the 1/3 and
      2/3 quantiles, linear interpolation), so each stratum holds about a third of them;
    - ``bins=(0.5, 2, 10)``: the strata ``(0, 0.5]``, ``(0.5, 2]``, ``(2, 10]``,
      ``(10, inf)`` in the size unit.

    Intervals are closed on the right (a size equal to an edge goes to the lower stratum).
    Rows with an empty reference form a stratum ``"empty reference"`` of their own; rows
    without a size (NaN) are left out.

    Returns:
        ``{"unit", "bins" ("tertiles" or the edges), "per_label": {label: [stratum, ...]}}``
        with ``stratum = {"name", "range": [low, high], "n", "mean": {metric: value}}``
        (means skip NaN; ``range`` is the interval, for tertiles the smallest and largest
        size in it). Empty ``per_label`` without size columns.

    Raises:
        ValueError: ``bins`` are not positive and increasing.

    Example:
        >>> rows = [{"label": "1", "vol_ref_ml": v, "dice": d}
        ...         for v, d in [(0.1, 0.2), (1.0, 0.6), (5.0, 0.9)]]
        >>> strata = stratify_by_size(rows, metrics=["dice"], bins=[0.5])["per_label"]["1"]
        >>> [(s["name"], s["n"], round(s["mean"]["dice"], 3)) for s in strata]
        [('(0, 0.5]', 1, 0.2), ('(0.5, inf)', 2, 0.75)]
    """
    rows = list(rows)
    unit = size_unit(rows)
    if bins is not None:
        edges = [float(b) for b in bins]
        if (
            not edges
            or edges[0] <= 0
            or any(b >= a for a, b in zip(edges[1:], edges, strict=False))
        ):
            raise ValueError(f"size bins must be positive and increasing, got {list(bins)}")
    result: dict[str, Any] = {
        "unit": unit,
        "bins": "tertiles" if bins is None else list(edges),
        "per_label": {},
    }
    if unit is None:
        return result
    ref_key = SIZE_KEYS[unit][1]
    for label in dict.fromkeys(str(row["label"]) for row in rows):
        chosen = [row for row in rows if str(row["label"]) == label]
        result["per_label"][label] = _label_strata(chosen, ref_key, metrics, bins)
    return result


def _label_strata(
    rows: Sequence[Mapping[str, Any]],
    ref_key: str,
    metrics: Sequence[str],
    bins: Sequence[float] | None,
) -> list[dict[str, Any]]:
    """The strata of one label's rows (``stratify_by_size``)."""
    sizes = np.array([_as_float(row.get(ref_key)) for row in rows])
    present = sizes > 0
    if bins is None:
        cuts = list(np.quantile(sizes[present], [1 / 3, 2 / 3])) if present.any() else []
    else:
        cuts = [float(b) for b in bins]
    # stratum k holds sizes in (cuts[k-1], cuts[k]]; searchsorted(side="left") does that
    stratum = np.searchsorted(np.asarray(cuts, dtype=float), sizes, side="left")
    strata = []
    for k in range(len(cuts) + 1):
        members = [row for row, s, p in zip(rows, stratum, present, strict=True) if p and s == k]
        if bins is None:
            if not members:
                continue
            in_k = sizes[present & (stratum == k)]
            name, low, high = f"tertile {k + 1}", float(in_k.min()), float(in_k.max())
        else:
            low = 0.0 if k == 0 else cuts[k - 1]
            high = cuts[k] if k < len(cuts) else math.inf
            name = f"({low:g}, {high:g}]" if k < len(cuts) else f"({low:g}, inf)"
        strata.append(_stratum(name, low, high, members, metrics))
    empty = [row for row, s in zip(rows, sizes, strict=True) if s == 0]
    if empty:
        strata.append(_stratum("empty reference", 0.0, 0.0, empty, metrics))
    return strata


def _stratum(
    name: str, low: float, high: float, rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]
) -> dict[str, Any]:
    means = {}
    for metric in metrics:
        values = np.array([_as_float(row.get(metric)) for row in rows])
        kept = values[~np.isnan(values)]
        means[metric] = float(kept.mean()) if kept.size else math.nan
    return {"name": name, "range": [low, high], "n": len(rows), "mean": means}
