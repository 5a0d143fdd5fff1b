"""Annotation-noise sweeps: how metrics respond to a growing perturbation of the reference mask.

A mask perturbation is a registered function ``(mask, level, rng) -> mask`` that never
mutates its input; ``annotation_noise_sweep`` applies it at each level (several seeded
repeats) and scores the result against the unperturbed reference, giving "metric vs
annotation noise" curves such as the seed lecture's "effect of annotation noise". This
measures how a metric reacts to rater disagreement, not how a model copes with degraded
images: that is ``medseg.evaluation.robustness`` (image perturbations of
``medseg.transforms.degrade``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.metrics.aggregate import describe
from medseg.metrics.case import binary_metrics
from medseg.metrics.distance import DEFAULT_TOLERANCE_MM, Hd95Mode
from medseg.registry import Registry

MASK_PERTURBATIONS = Registry("mask perturbation")


@MASK_PERTURBATIONS.register("flip")
def flip_voxels(mask: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Flip every voxel independently with probability ``level`` (salt-and-pepper noise)."""
    _check_probability(level)
    return mask ^ (rng.random(mask.shape) < level)


@MASK_PERTURBATIONS.register("boundary")
def flip_boundary(mask: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Flip voxels of the two-voxel band around the boundary with probability ``level``.

    The band is the mask's surface plus the background voxels touching it (annotation
    noise: raters disagree at the edge, not far from it).
    """
    _check_probability(level)
    band = ndimage.binary_dilation(mask) & ndimage.binary_dilation(~mask)
    return mask ^ (band & (rng.random(mask.shape) < level))


@MASK_PERTURBATIONS.register("shift")
def shift_mask(mask: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Translate the mask by ``round(level)`` voxels along the last axis (zeros enter)."""
    return ndimage.shift(mask, [0] * (mask.ndim - 1) + [round(level)], order=0, cval=0)


@MASK_PERTURBATIONS.register("dilate")
def dilate_mask(mask: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Dilate by ``round(level)`` face-connected steps (erode when ``level`` < 0)."""
    steps = round(level)
    if steps == 0:
        return mask.copy()
    operation = ndimage.binary_dilation if steps > 0 else ndimage.binary_erosion
    return operation(mask, iterations=abs(steps))


def _check_probability(level: float) -> None:
    if not 0.0 <= level <= 1.0:
        raise ConfigError(f"a flip probability must be in [0, 1], got {level}")


def annotation_noise_sweep(
    ref: np.ndarray,
    spacing: Sequence[float],
    levels: Sequence[float],
    *,
    perturbation: str = "boundary",
    repeats: int = 3,
    seed: int = 0,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    hd95_mode: Hd95Mode = "max_directed",
) -> list[dict[str, Any]]:
    """Score perturbed copies of a reference mask against the reference.

    Args:
        ref: ``(*spatial)`` binary reference mask.
        spacing: voxel size in mm per array axis.
        levels: perturbation strengths (a probability for ``flip``/``boundary``, voxels for
            ``shift``/``dilate``).
        perturbation: a name in ``MASK_PERTURBATIONS`` (``boundary``, ``dilate``, ``flip``,
            ``shift``).
        repeats: seeded repetitions per level.
        seed: seed of the random generator (the sweep is reproducible).
        tolerance_mm, hd95_mode: as in ``evaluate_case``.

    Returns:
        One row per (level, repeat): ``{"level", "repeat", *METRIC_COLUMNS}``.

    Example:
        >>> ref = np.zeros((9, 9), bool); ref[2:7, 2:7] = True
        >>> rows = annotation_noise_sweep(ref, (1.0, 1.0), [0, 1], perturbation="shift", repeats=1)
        >>> [row["dice"] for row in rows]
        [1.0, 0.8]
    """
    perturb = MASK_PERTURBATIONS.get(perturbation)
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    ref = np.asarray(ref, dtype=bool)
    rng = np.random.default_rng(seed)
    rows = []
    for level in levels:
        for repeat in range(repeats):
            pred = perturb(ref, level, rng)
            metrics = binary_metrics(
                pred, ref, spacing, tolerance_mm=tolerance_mm, hd95_mode=hd95_mode
            )
            rows.append({"level": level, "repeat": repeat, **metrics})
    return rows


def summarize_annotation_sweep(
    rows: Sequence[dict[str, Any]], metric: str
) -> dict[float, dict[str, float | int]]:
    """``{level: describe(metric values)}`` of sweep rows, in level order."""
    levels = list(dict.fromkeys(row["level"] for row in rows))
    return {
        level: describe([row[metric] for row in rows if row["level"] == level]) for level in levels
    }
