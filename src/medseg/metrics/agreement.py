"""Agreement between several raters' segmentations: pairwise metrics and a consensus."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from medseg.errors import ConfigError, GeometryError
from medseg.metrics.aggregate import describe
from medseg.metrics.case import METRIC_COLUMNS, Labels, evaluate_case
from medseg.metrics.distance import DEFAULT_TOLERANCE_MM, Hd95Mode
from medseg.metrics.surface import SurfaceMode


def majority_vote(label_maps: Sequence[np.ndarray]) -> np.ndarray:
    """Voxel-wise plurality vote of several raters' label maps.

    Each voxel takes the value most raters gave it; a tie goes to the smallest value (so two
    raters split between background and a label give background). For binary masks this is
    the strict majority: foreground where more than half of the raters say so.

    Args:
        label_maps: ``R`` arrays of the same ``(*spatial)`` shape (bool or int).

    Returns:
        ``(*spatial)`` consensus with the dtype of the first map.

    Example:
        >>> majority_vote([np.array([1, 1, 0]), np.array([1, 0, 0]), np.array([1, 0, 1])])
        array([1, 0, 0])
    """
    stack = _stack(label_maps)
    values = np.unique(stack)
    best_votes = np.zeros(stack.shape[1:], dtype=np.int32)
    consensus = np.full(stack.shape[1:], values[0], dtype=stack.dtype)
    for value in values:  # ascending, and only a strictly larger count wins: ties -> smallest
        votes = np.count_nonzero(stack == value, axis=0).astype(np.int32)
        better = votes > best_votes
        consensus[better] = value
        best_votes[better] = votes[better]
    return consensus.astype(label_maps[0].dtype, copy=False)


def rater_agreement(
    label_maps: Sequence[np.ndarray],
    spacing: Sequence[float],
    *,
    names: Sequence[str] | None = None,
    labels: Labels | None = None,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    hd95_mode: Hd95Mode = "max_directed",
    surface: SurfaceMode = "voxel",
) -> dict[str, Any]:
    """Pairwise agreement of ``R >= 2`` raters and of each rater with the majority vote.

    Args:
        label_maps: ``R`` label maps (or binary masks) of one case, same shape.
        spacing: voxel size in mm per array axis.
        names: rater names, default ``"rater0"``, ``"rater1"``, ...
        labels: labels/regions to compare (see ``label_regions``); default every non-zero
            value any rater used.
        tolerance_mm, hd95_mode, surface: as in ``evaluate_case``.

    Returns:
        ``{"pairs": rows, "pairwise": {label: {metric: stats}}, "consensus": array,
        "vs_consensus": rows}``. A pair row is ``{"rater_a", "rater_b", "label",
        *METRIC_COLUMNS}`` with ``rater_b`` in the prediction role (Dice, IoU, HD, HD95, ASSD,
        MASD and NSD are symmetric); ``pairwise`` summarises the pairs per label with
        ``describe`` (mean, std, median, NaN count); ``vs_consensus`` rows have ``rater``.

    Example:
        >>> a = np.zeros((6, 6), int); a[1:4, 1:4] = 1
        >>> out = rater_agreement([a, a, np.roll(a, 1, axis=0)], (1.0, 1.0))
        >>> round(out["pairwise"]["1"]["dice"]["mean"], 4)
        0.7778
    """
    stack = _stack(label_maps)
    if stack.shape[0] < 2:
        raise ConfigError(f"agreement needs at least 2 raters, got {stack.shape[0]}")
    names = list(names) if names is not None else [f"rater{i}" for i in range(stack.shape[0])]
    if len(names) != stack.shape[0]:
        raise ConfigError(f"{len(names)} names for {stack.shape[0]} raters")
    if labels is None:
        labels = [int(v) for v in np.unique(stack) if v != 0]
    options = {
        "labels": labels,
        "tolerance_mm": tolerance_mm,
        "hd95_mode": hd95_mode,
        "surface": surface,
    }
    pairs = []
    for i, j in itertools.combinations(range(len(names)), 2):
        result = evaluate_case(stack[j], stack[i], spacing, **options)
        pairs += [
            {"rater_a": names[i], "rater_b": names[j], "label": k, **m} for k, m in result.items()
        ]
    consensus = majority_vote(label_maps)
    vs_consensus = []
    for i, name in enumerate(names):
        result = evaluate_case(stack[i], consensus, spacing, **options)
        vs_consensus += [{"rater": name, "label": k, **m} for k, m in result.items()]
    pairwise = {
        label: {
            m: describe([row[m] for row in pairs if row["label"] == label]) for m in METRIC_COLUMNS
        }
        for label in dict.fromkeys(row["label"] for row in pairs)
    }
    return {
        "pairs": pairs,
        "pairwise": pairwise,
        "consensus": consensus,
        "vs_consensus": vs_consensus,
    }


def _stack(label_maps: Sequence[np.ndarray]) -> np.ndarray:
    arrays = [np.asarray(m) for m in label_maps]
    if not arrays:
        raise ConfigError("no label maps given")
    if any(a.shape != arrays[0].shape for a in arrays):
        raise GeometryError(f"raters' maps differ in shape: {[a.shape for a in arrays]}")
    return np.stack(arrays)
