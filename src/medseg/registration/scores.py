"""How well two label maps overlap after registration: the mean Dice of their classes."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def mean_label_dice(
    fixed: np.ndarray, warped: np.ndarray, labels: Iterable[int] | None = None
) -> float:
    """Mean Dice over the foreground classes (``labels``; default: every value > 0 in either
    map). A class absent from both maps is left out; no class at all gives NaN.

    Example:
        >>> a = np.array([[1, 1, 0, 2]]); b = np.array([[1, 0, 0, 2]])
        >>> round(mean_label_dice(a, b), 4)  # class 1: 2/3, class 2: 1
        0.8333
    """
    fixed, warped = np.asarray(fixed), np.asarray(warped)
    if fixed.shape != warped.shape:
        raise ValueError(f"label maps of shapes {fixed.shape} and {warped.shape}")
    if labels is None:
        values = np.union1d(np.unique(fixed), np.unique(warped))
        labels = [int(v) for v in values if v > 0]
    scores = []
    for value in labels:
        a, b = fixed == value, warped == value
        total = int(a.sum()) + int(b.sum())
        if total:
            scores.append(2.0 * int(np.logical_and(a, b).sum()) / total)
    return float(np.mean(scores)) if scores else float("nan")
