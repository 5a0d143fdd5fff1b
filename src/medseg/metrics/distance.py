"""Surface-distance metrics in mm: HD, percentile HD (HD95), ASSD, MASD and NSD.

With ``d(a, B)`` the distance from surface element ``a`` of A to the surface of B
(``medseg.metrics.surface``):

- ``HD = max(max_a d(a, B), max_b d(b, A))``
- ``HD95``, two named definitions (``hd95_mode``):

  - ``"max_directed"`` (default; MONAI, DeepMind, BraTS, Metrics Reloaded): the larger of
    the two directed 95th percentiles. It is symmetric, tends to HD as q -> 100 and, unlike
    the pooled form, cannot hide a badly placed small surface behind a well placed large one.
  - ``"pooled"`` (MedPy): the 95th percentile of both directions' distances together.

  Percentiles interpolate linearly (``numpy.percentile``) for voxel surfaces and are
  area-weighted without interpolation, as DeepMind, for surfels.
- ``ASSD = (sum_a d(a, B) + sum_b d(b, A)) / (|A| + |B|)`` (MedPy ``assd``, MONAI
  ``symmetric=True``).
- ``MASD = (mean_a d(a, B) + mean_b d(b, A)) / 2`` (the mean of DeepMind's two directed
  averages).
- ``NSD`` (normalised surface Dice, Nikolov et al.) at tolerance tau mm: the share of both
  surfaces within tau of the other, ``(|{a: d(a,B) <= tau}| + |{b: d(b,A) <= tau}|) /
  (|A| + |B|)``. Distances within a relative 1e-6 of tau count as equal to tau, so grid
  distances that equal tau exactly are not lost to float32 rounding.

Empty masks (seed lecture table): when either mask is empty every distance is NaN, NSD is 0
when exactly one is empty and NaN when both are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from medseg.errors import ConfigError
from medseg.metrics.surface import SurfaceDistances, SurfaceMode, surface_distances

Hd95Mode = Literal["max_directed", "pooled"]
HD95_MODES = ("max_directed", "pooled")
DEFAULT_TOLERANCE_MM = 2.0
_TIE_RTOL = 1e-6


def check_hd95_mode(mode: str) -> None:
    """Raise ``ConfigError`` unless ``mode`` is one of ``HD95_MODES``."""
    if mode not in HD95_MODES:
        raise ConfigError(f"hd95_mode must be one of {HD95_MODES}, got {mode!r}")


def _both_present(sd: SurfaceDistances) -> bool:
    return sd.pred_to_ref.size > 0 and sd.ref_to_pred.size > 0


def _percentile(d: np.ndarray, w: np.ndarray | None, q: float) -> float:
    if w is None:
        return float(np.percentile(d, q))
    order = np.argsort(d, kind="stable")
    cumulative = np.cumsum(w[order]) / np.sum(w)
    idx = int(np.searchsorted(cumulative, q / 100.0))
    return float(d[order][min(idx, d.size - 1)])


def hausdorff(sd: SurfaceDistances) -> float:
    """Hausdorff distance (mm) of precomputed distances; NaN when either surface is empty."""
    if not _both_present(sd):
        return math.nan
    return float(max(sd.pred_to_ref.max(), sd.ref_to_pred.max()))


def percentile_hausdorff(
    sd: SurfaceDistances, q: float = 95.0, *, mode: Hd95Mode = "max_directed"
) -> float:
    """The ``q``-th percentile Hausdorff distance (mm); NaN when either surface is empty.

    Args:
        sd: distances from ``surface_distances``.
        q: percentile in [0, 100]; 100 gives the Hausdorff distance.
        mode: ``"max_directed"`` or ``"pooled"`` (module docstring).
    """
    check_hd95_mode(mode)
    if not 0.0 <= q <= 100.0:
        raise ConfigError(f"percentile must be in [0, 100], got {q}")
    if not _both_present(sd):
        return math.nan
    if mode == "pooled":
        d = np.concatenate([sd.pred_to_ref, sd.ref_to_pred])
        w = None if sd.pred_weights is None else np.concatenate([sd.pred_weights, sd.ref_weights])
        return _percentile(d, w, q)
    return max(
        _percentile(sd.pred_to_ref, sd.pred_weights, q),
        _percentile(sd.ref_to_pred, sd.ref_weights, q),
    )


def _weights(sd: SurfaceDistances) -> tuple[np.ndarray, np.ndarray]:
    if sd.pred_weights is None or sd.ref_weights is None:
        return np.ones(sd.pred_to_ref.size), np.ones(sd.ref_to_pred.size)
    return sd.pred_weights, sd.ref_weights


def assd(sd: SurfaceDistances) -> float:
    """Average symmetric surface distance (mm), pooled over both surfaces; NaN if one is empty."""
    if not _both_present(sd):
        return math.nan
    wp, wr = _weights(sd)
    return float((np.dot(sd.pred_to_ref, wp) + np.dot(sd.ref_to_pred, wr)) / (wp.sum() + wr.sum()))


def masd(sd: SurfaceDistances) -> float:
    """Mean of the two directed average surface distances (mm); NaN if one is empty."""
    if not _both_present(sd):
        return math.nan
    wp, wr = _weights(sd)
    return float(
        (np.dot(sd.pred_to_ref, wp) / wp.sum() + np.dot(sd.ref_to_pred, wr) / wr.sum()) / 2
    )


def nsd(sd: SurfaceDistances, tolerance_mm: float) -> float:
    """Normalised surface Dice at ``tolerance_mm``: 0 if one surface is empty, NaN if both are."""
    if tolerance_mm < 0:
        raise ConfigError(f"tolerance must be >= 0 mm, got {tolerance_mm}")
    wp, wr = _weights(sd)
    total = wp.sum() + wr.sum()
    if total == 0:
        return math.nan
    limit = tolerance_mm * (1.0 + _TIE_RTOL)
    return float((wp[sd.pred_to_ref <= limit].sum() + wr[sd.ref_to_pred <= limit].sum()) / total)


def summarize_distances(
    sd: SurfaceDistances,
    *,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    hd95_mode: Hd95Mode = "max_directed",
) -> dict[str, float]:
    """``hd``, ``hd95``, ``assd``, ``masd`` and ``nsd`` of precomputed distances."""
    return {
        "hd": hausdorff(sd),
        "hd95": percentile_hausdorff(sd, 95.0, mode=hd95_mode),
        "assd": assd(sd),
        "masd": masd(sd),
        "nsd": nsd(sd, tolerance_mm),
    }


def distance_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    *,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    hd95_mode: Hd95Mode = "max_directed",
    surface: SurfaceMode = "voxel",
    connectivity: int = 1,
    threads: int | None = None,
) -> dict[str, float]:
    """All surface-distance metrics of two masks from one pair of distance transforms.

    Args:
        pred: ``(*spatial)`` prediction mask (non-zero = foreground), 1D-3D (surfels: 2D/3D).
        ref: ``(*spatial)`` reference mask.
        spacing: voxel size in mm per array axis.
        tolerance_mm: NSD tolerance tau (mm).
        hd95_mode: ``"max_directed"`` (default) or ``"pooled"``.
        surface: ``"voxel"`` (default) or ``"surfel"``.
        connectivity: voxel-surface neighbourhood, 1 (face, default) to ndim (full).
        threads: distance-transform threads (default: all CPUs).

    Returns:
        ``{"hd", "hd95", "assd", "masd", "nsd"}`` in mm (NSD in [0, 1]); see the module
        docstring for empty masks.

    Example:
        >>> ref = np.zeros((3, 4, 4), bool); ref[1, 1:3, 1:3] = True
        >>> pred = np.roll(ref, 1, axis=0)  # one 5 mm slice further
        >>> distance_metrics(pred, ref, (5.0, 1.0, 1.0), tolerance_mm=5.0)["hd"]
        5.0
    """
    check_hd95_mode(hd95_mode)
    sd = surface_distances(
        pred, ref, spacing, surface=surface, connectivity=connectivity, threads=threads
    )
    return summarize_distances(sd, tolerance_mm=tolerance_mm, hd95_mode=hd95_mode)


def hausdorff_distance(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    *,
    percentile: float = 100.0,
    hd95_mode: Hd95Mode = "max_directed",
    surface: SurfaceMode = "voxel",
    connectivity: int = 1,
) -> float:
    """Hausdorff distance (``percentile=100``) or any percentile HD, in mm.

    Example:
        >>> a = np.zeros((5, 5), bool); a[1:3, 1:3] = True
        >>> hausdorff_distance(a, np.roll(a, (1, 1), axis=(0, 1)), (1.0, 1.0))
        1.4142135623730951
    """
    sd = surface_distances(pred, ref, spacing, surface=surface, connectivity=connectivity)
    return percentile_hausdorff(sd, percentile, mode=hd95_mode)


def average_symmetric_surface_distance(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    *,
    surface: SurfaceMode = "voxel",
    connectivity: int = 1,
) -> float:
    """ASSD in mm (pooled mean of both directions); NaN when either mask is empty."""
    return assd(surface_distances(pred, ref, spacing, surface=surface, connectivity=connectivity))


def normalized_surface_dice(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    *,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    surface: SurfaceMode = "voxel",
    connectivity: int = 1,
) -> float:
    """NSD (surface Dice) at ``tolerance_mm``; 0 when one mask is empty, NaN when both are."""
    return nsd(
        surface_distances(pred, ref, spacing, surface=surface, connectivity=connectivity),
        tolerance_mm,
    )
