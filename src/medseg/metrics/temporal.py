"""Metrics of a segmented time series (cine MRI): volume curves, ED/ES, ejection fraction.

* ``volume_curve``: the volume of one label (or a union of labels) in every frame, in mL
  (voxel count x voxel volume in mm^3 / 1000).
* ``volume_curve_smoothness``: the mean absolute second difference of the curve divided by
  its mean, ``mean_t |v[t+1] - 2 v[t] + v[t-1]| / mean(v)`` over ``t = 1..T-2`` (the curve is
  not wrapped around). 0 for a straight line; frame-to-frame jitter of a per-frame
  segmentation raises it, a smooth cardiac cycle keeps it small. Unitless.
* ``ed_es``: end-diastole = the frame of largest volume, end-systole = the frame of smallest
  (first occurrence on ties), the usual definition from the left-ventricle blood pool.
* ``ejection_fraction``: ``(EDV - ESV) / EDV * 100`` in percent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.errors import ConfigError, GeometryError


def volume_curve(
    labels: np.ndarray, spacing: Sequence[float], label: int | Sequence[int] = 1
) -> np.ndarray:
    """Volume of ``label`` per frame in mL.

    Args:
        labels: ``(T, *spatial)`` label maps.
        spacing: voxel size in mm per spatial axis (``len(spacing) == labels.ndim - 1``).
        label: a label value, or several whose union is measured.

    Returns:
        ``(T,)`` float64 volumes in mL (2D+t: area in mm^2 / 1000, i.e. mL per mm of depth).

    Example:
        >>> volume_curve(np.ones((2, 10, 10, 10), int), (1.0, 1.0, 1.0)).tolist()
        [1.0, 1.0]
    """
    labels = np.asarray(labels)
    spacing = tuple(float(s) for s in spacing)
    if labels.ndim != len(spacing) + 1:
        raise GeometryError(
            f"spacing {spacing} does not fit labels of shape {labels.shape}: expected "
            f"(T, *spatial) with {len(spacing)} spatial axes"
        )
    if any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise GeometryError(f"spacing must be positive and finite, got {spacing}")
    values = [label] if isinstance(label, (int, np.integer)) else list(label)
    mask = np.isin(labels, values)
    counts = mask.reshape(mask.shape[0], -1).sum(axis=1)
    return counts.astype(np.float64) * float(np.prod(spacing)) / 1000.0


def volume_curve_smoothness(curve: Sequence[float]) -> float:
    """Mean absolute second difference over the mean volume (see the module docstring).

    Raises:
        ConfigError: fewer than 3 frames, or a curve whose mean is not positive.

    Example:
        >>> volume_curve_smoothness([1.0, 2.0, 3.0])
        0.0
        >>> volume_curve_smoothness([1.0, 3.0, 1.0, 3.0])
        2.0
    """
    v = np.asarray(curve, dtype=np.float64)
    if v.ndim != 1 or v.size < 3:
        raise ConfigError(f"a volume curve needs at least 3 frames, got shape {v.shape}")
    mean = float(v.mean())
    if not mean > 0:
        raise ConfigError(f"volume curve has mean {mean}; smoothness needs a positive mean")
    return float(np.abs(np.diff(v, n=2)).mean() / mean)


def ed_es(curve: Sequence[float]) -> tuple[int, int]:
    """``(ed_index, es_index)``: the frames of largest and smallest volume.

    Example:
        >>> ed_es([5.0, 9.0, 4.0, 3.0, 7.0])
        (1, 3)
    """
    v = np.asarray(curve, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ConfigError(f"a volume curve must be a non-empty 1D sequence, got shape {v.shape}")
    return int(np.argmax(v)), int(np.argmin(v))


def ejection_fraction(edv: float, esv: float) -> float:
    """``(EDV - ESV) / EDV * 100`` (percent).

    Raises:
        ConfigError: ``edv`` not positive.

    Example:
        >>> ejection_fraction(120.0, 50.0)
        58.333333333333336
    """
    if not edv > 0:
        raise ConfigError(f"end-diastolic volume must be positive, got {edv}")
    return (float(edv) - float(esv)) / float(edv) * 100.0


def cycle_metrics(curve: Sequence[float]) -> dict[str, float]:
    """ED/ES frames and volumes, EF and smoothness of one volume curve (mL).

    EF and smoothness are NaN where undefined (an empty curve: no volume in any frame;
    smoothness also for fewer than 3 frames) instead of raising, so that one failed
    prediction does not stop a table.

    Example:
        >>> cycle_metrics([100.0, 80.0, 40.0, 90.0])["ef"]
        60.0
    """
    ed, es = ed_es(curve)
    v = np.asarray(curve, dtype=np.float64)
    nan = float("nan")
    return {
        "ed_index": ed,
        "es_index": es,
        "edv": float(v[ed]),
        "esv": float(v[es]),
        "ef": ejection_fraction(float(v[ed]), float(v[es])) if v[ed] > 0 else float("nan"),
        "smoothness": volume_curve_smoothness(v) if v.size >= 3 and v.mean() > 0 else nan,
    }
