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
