"""Instances from a semantic prediction: marker watershed on a distance map, or components.

The instance route of ``medseg.detect``: a network predicts, per voxel, a foreground
probability and a distance map (``distance_target`` is its training target: 0 in the
background, rising to 1 at the centre of each instance). ``watershed_instances`` turns them
into an instance label map:

1. foreground = ``foreground_prob > threshold``;
2. markers = the regional maxima of the distance inside the foreground (plateaus without a
   higher neighbour, ``skimage.morphology.local_maxima``) that are also the maximum over a box
   of half-width ``min_distance`` (voxels, or mm with ``spacing``) around them; touching
   marker voxels form one marker. With ``h > 0`` only maxima of dynamic ``>= h`` count
   (h-maxima: a maximum less than ``h`` above the saddle joining it to a higher one is
   noise); the marker is then the whole dome of the top ``h``;
3. a marker-controlled watershed of ``-distance`` restricted to the foreground
   (``skimage.segmentation.watershed``): each marker grows into one instance;
4. instances smaller than ``min_size`` voxels are dropped; labels are renumbered ``1..N``.

Every foreground component holds at least one maximum, so none is lost; a component whose
distance has several separated maxima (two touching cells, a neck between them) is split.
``components_instances`` is the baseline: connected components of the foreground, which
merges touching cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import cc3d
import numpy as np
from scipy import ndimage
from skimage.morphology import h_maxima, local_maxima
from skimage.segmentation import relabel_sequential, watershed

from medseg.errors import ConfigError, GeometryError

__all__ = ["components_instances", "distance_target", "watershed_instances"]


def watershed_instances(
    foreground_prob: np.ndarray,
    distance: np.ndarray,
    *,
    threshold: float = 0.5,
    min_distance: float = 3.0,
    min_size: int = 0,
    spacing: Sequence[float] | None = None,
    h: float = 0.0,
) -> np.ndarray:
    """Instance label map from a foreground probability and a distance map (module docstring).

    Args:
        foreground_prob: ``(*spatial)`` foreground probability (or a 0/1 mask), 1D to 3D.
        distance: ``(*spatial)`` distance map, larger towards instance centres (any scale).
        threshold: foreground is ``foreground_prob > threshold``.
        min_distance: half-width of the box in which a marker must be the maximum, in voxels
            (in mm when ``spacing`` is given; at least one voxel per axis); of two maxima
            closer than this only the higher is a marker. About half the radius of the
            smallest instance.
        min_size: instances with fewer voxels are removed (0: keep all).
        spacing: voxel size per axis in mm, array axis order; None: isotropic voxels.
        h: minimum dynamic of a marker, in the units of ``distance`` (``skimage.morphology.
            h_maxima``); 0: every maximum. About 0.2-0.3 for ``distance_target``-scaled maps,
            2-3 voxels for a plain distance transform of irregular cells.

    Returns:
        ``(*spatial)`` int32 labels ``0`` (background), ``1..N``.

    Raises:
        GeometryError: the two maps differ in shape.
        ConfigError: non-finite values or bad options.

    Example:
        >>> yy, xx = np.mgrid[:9, :17]  # two discs of radius 4 whose edges overlap
        >>> mask = ((yy - 4) ** 2 + (xx - 4) ** 2 <= 16) | ((yy - 4) ** 2 + (xx - 11) ** 2 <= 16)
        >>> dist = ndimage.distance_transform_edt(mask)
        >>> labels = watershed_instances(mask.astype(float), dist)
        >>> int(labels.max()), int(components_instances(mask).max())
        (2, 1)
    """
    prob, dist = _check_maps(foreground_prob, distance)
    half = _half_widths(min_distance, spacing, prob.ndim)
    if not np.isfinite(h) or h < 0:
        raise ConfigError(f"h must be >= 0, got {h!r}")
    if not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ConfigError(f"min_size must be a non-negative integer, got {min_size!r}")
    foreground = prob > float(threshold)
    if not foreground.any():
        return np.zeros(prob.shape, dtype=np.int32)
    inside = np.where(foreground, dist, dist.min() - 1.0)  # maxima of the foreground only
    peaks = (
        foreground
        & local_maxima(inside, connectivity=prob.ndim, allow_borders=True)  # no higher neighbour
        & (inside == ndimage.maximum_filter(inside, size=[2 * h + 1 for h in half]))
    )
    connect = np.ones((3,) * prob.ndim, dtype=bool)
    if h > 0:  # markers: the domes of height >= h that hold a peak
        domes, _ = ndimage.label(h_maxima(inside, h) > 0, structure=connect)
        markers = np.where(np.isin(domes, domes[peaks]), domes, 0)
    else:
        markers, _ = ndimage.label(peaks, structure=connect)
    labels = watershed(-dist, markers, mask=foreground)
    if min_size > 0:
        sizes = np.bincount(labels.ravel())
        labels[sizes[labels] < min_size] = 0
    return relabel_sequential(labels)[0].astype(np.int32)


def distance_target(instance_map: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Per-instance normalised distance to the instance boundary: the distance-map target.

    Each instance's Euclidean distance transform (distance to the nearest voxel outside the
    instance, another instance or the image border counting as outside) divided by its
    maximum, so every instance peaks at exactly 1; 0 in the background. Computed on each
    instance's bounding box only.

    Args:
        instance_map: ``(*spatial)`` non-negative integer instance labels, 0 = background.
        spacing: voxel size per axis in mm; None: isotropic.

    Returns:
        ``(*spatial)`` float32 in ``[0, 1]``; boundary voxels of an instance of radius ``r``
        voxels have about ``1 / r``.

    Raises:
        ConfigError: labels that are not non-negative integers, a bad spacing.

    Example:
        >>> distance_target(np.array([0, 3, 3, 3, 0, 5])).tolist()  # 1D: EDT 1, 2, 1 and 1
        [0.0, 0.5, 1.0, 0.5, 0.0, 1.0]
    """
    labels = np.asarray(instance_map)
    if labels.dtype.kind not in "biu" or (labels.size and labels.min() < 0):
        raise ConfigError(
            f"distance_target needs non-negative integer instance labels, got {labels.dtype}"
        )
    sampling = _spacing(spacing, labels.ndim)
    out = np.zeros(labels.shape, dtype=np.float32)
    for index, box in enumerate(ndimage.find_objects(labels.astype(np.int64))):
        if box is None:
            continue
        inside = np.pad(labels[box] == index + 1, 1)  # the box border counts as outside
        edt = ndimage.distance_transform_edt(inside, sampling=sampling)
        edt = edt[(slice(1, -1),) * labels.ndim]
        region = out[box]
        mask = inside[(slice(1, -1),) * labels.ndim]
        region[mask] = (edt[mask] / edt.max()).astype(np.float32)
    return out


def components_instances(mask: np.ndarray, *, connectivity: int | None = None) -> np.ndarray:
    """Baseline instances: connected components of ``mask > 0`` (touching objects merge).

    Args:
        mask: ``(*spatial)`` 2D or 3D semantic mask or probability thresholded at 0
            (pass ``prob > 0.5``).
        connectivity: 4/8 (2D) or 6/18/26 (3D); None: full (8 or 26).

    Returns:
        ``(*spatial)`` int32 labels ``0``, ``1..N`` in raster order.

    Raises:
        ConfigError: a mask that is not 2D/3D or a bad connectivity.

    Example:
        >>> components_instances(np.array([[1, 1, 0, 1], [0, 0, 0, 1]])).tolist()
        [[1, 1, 0, 2], [0, 0, 0, 2]]
    """
    values = np.asarray(mask)
    allowed = {2: (4, 8), 3: (6, 18, 26)}.get(values.ndim)
    if allowed is None:
        raise ConfigError(f"components_instances needs a 2D or 3D mask, got shape {values.shape}")
    if connectivity is not None and connectivity not in allowed:
        raise ConfigError(f"connectivity in {values.ndim}D must be one of {allowed}")
    components = cc3d.connected_components(values > 0, connectivity=connectivity or allowed[-1])
    return components.astype(np.int32)


def _check_maps(prob: np.ndarray, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(prob, dtype=np.float64)
    d = np.asarray(distance, dtype=np.float64)
    if p.shape != d.shape:
        raise GeometryError(f"foreground {p.shape} and distance {d.shape} maps differ in shape")
    if p.ndim not in (1, 2, 3):
        raise ConfigError(f"watershed_instances needs 1D to 3D maps, got shape {p.shape}")
    if not (np.isfinite(p).all() and np.isfinite(d).all()):
        raise ConfigError("watershed_instances: foreground and distance must be finite")
    return p, d


def _spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    values = tuple(float(s) for s in spacing)
    if len(values) != ndim or not all(np.isfinite(s) and s > 0 for s in values):
        raise ConfigError(f"spacing must be {ndim} positive numbers (mm), got {spacing!r}")
    return values


def _half_widths(min_distance: float, spacing: Sequence[float] | None, ndim: int) -> list[int]:
    if not np.isfinite(min_distance) or min_distance <= 0:
        raise ConfigError(f"min_distance must be > 0, got {min_distance!r}")
    sampling = _spacing(spacing, ndim) or (1.0,) * ndim
    return [max(1, round(float(min_distance) / s)) for s in sampling]
