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

``boundary_watershed_instances`` floods the *boundary* probability instead (``1 -
foreground_prob``, Gaussian-smoothed), as EM neuron segmentation does, and then merges
over-segments whose shared boundary is weak:

1. markers = the h-maxima (dynamic ``>= h``) of the smoothed distance map (of the smoothed
   foreground without one) inside ``foreground_prob > threshold``;
2. a marker watershed of the boundary map over the whole image, so that regions meet along
   the ridges of the boundary probability, also across a faint spurious membrane;
3. region merging (average linkage): the adjacent pair whose contact (face-neighbour voxel
   pairs, the larger boundary value of each) has the lowest mean boundary probability is
   merged, contacts pooled, until every mean is ``>= merge_threshold``;
4. the regions are cut to ``foreground_prob > threshold``, instances below ``min_size``
   voxels dropped, labels renumbered ``1..N``.

A strong membrane (mean boundary above ``merge_threshold``) keeps two cells apart even where
the foreground leaks through a gap in it (the merge components make); a weak one inside a
cell (an organelle's rim) is merged away (the split components make).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import cc3d
import numpy as np
from scipy import ndimage
from skimage.morphology import h_maxima, local_maxima
from skimage.segmentation import relabel_sequential, watershed

from medseg.errors import ConfigError, GeometryError

__all__ = [
    "boundary_watershed_instances",
    "components_instances",
    "distance_target",
    "merge_regions",
    "watershed_instances",
]


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


def boundary_watershed_instances(
    foreground_prob: np.ndarray,
    distance: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    h: float = 0.2,
    merge_threshold: float = 0.7,
    sigma: float = 1.0,
    min_size: int = 0,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Instances by a seeded watershed of the boundary probability plus region merging
    (module docstring).

    Args:
        foreground_prob: ``(*spatial)`` foreground probability in ``[0, 1]``, 1D to 3D.
        distance: ``(*spatial)`` distance map whose h-maxima seed the instances (None: the
            smoothed foreground's).
        threshold: instances are cut to ``foreground_prob > threshold``; markers lie there.
        h: least dynamic of a marker, in the units of the seeding map (0: every maximum).
        merge_threshold: adjacent regions whose mean boundary probability along their
            contact is below this merge (0: no merging; 1: merge every touching pair).
        sigma: Gaussian smoothing of both maps, in voxels (mm with ``spacing``); 0: none.
        min_size: instances with fewer voxels are removed (0: keep all).
        spacing: voxel size per axis in mm; None: isotropic.

    Returns:
        ``(*spatial)`` int32 labels ``0``, ``1..N``.

    Raises:
        GeometryError: the two maps differ in shape.
        ConfigError: non-finite values or bad options.

    Example:
        >>> prob = np.full((5, 11), 0.95)
        >>> prob[:, 5] = [0.2, 0.2, 0.6, 0.2, 0.2]  # a membrane with a gap: one component
        >>> int(components_instances(prob > 0.5).max())
        1
        >>> int(boundary_watershed_instances(prob, sigma=0, h=0.1, merge_threshold=0.5).max())
        2
        >>> int(boundary_watershed_instances(prob, sigma=0, h=0.1, merge_threshold=0.9).max())
        1
    """
    prob, dist = _check_maps(foreground_prob, foreground_prob if distance is None else distance)
    for name, value, top in [("h", h, np.inf), ("merge_threshold", merge_threshold, 1.0)]:
        if not np.isfinite(value) or not 0 <= value <= top:
            raise ConfigError(f"{name} must lie in [0, {top}], got {value!r}")
    if not np.isfinite(sigma) or sigma < 0:
        raise ConfigError(f"sigma must be >= 0, got {sigma!r}")
    if not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ConfigError(f"min_size must be a non-negative integer, got {min_size!r}")
    foreground = prob > float(threshold)
    if not foreground.any():
        return np.zeros(prob.shape, dtype=np.int32)
    sampling = _spacing(spacing, prob.ndim) or (1.0,) * prob.ndim
    smooth = [sigma / s for s in sampling]
    boundary = 1.0 - (ndimage.gaussian_filter(prob, smooth) if sigma > 0 else prob)
    seed_map = ndimage.gaussian_filter(dist, smooth) if sigma > 0 else dist
    seed_map = np.where(foreground, seed_map, seed_map.min() - 1.0)
    seeds = (h_maxima(seed_map, h) > 0 if h > 0 else local_maxima(seed_map)) & foreground
    markers, _ = ndimage.label(seeds, structure=np.ones((3,) * prob.ndim, dtype=bool))
    regions = merge_regions(watershed(boundary, markers), boundary, merge_threshold)
    labels = np.where(foreground, regions, 0)
    if min_size > 0:
        sizes = np.bincount(labels.ravel())
        labels[sizes[labels] < min_size] = 0
    return relabel_sequential(labels)[0].astype(np.int32)


def merge_regions(labels: np.ndarray, boundary: np.ndarray, merge_threshold: float) -> np.ndarray:
    """Average-linkage merging of adjacent regions by their mean boundary value.

    Two regions touch where face-neighbour voxels carry their labels; the contact's value is
    the mean over those voxel pairs of the larger ``boundary`` value of the pair. The pair of
    lowest mean merges (their contacts with third regions pooled) while it is below
    ``merge_threshold``. Label 0 is left alone.

    Returns:
        ``labels`` with each merged group carrying one of its labels.

    Example:
        >>> merge_regions(np.array([1, 1, 2, 2, 3]), np.array([0, .2, .3, .9, .9]), 0.5).tolist()
        [1, 1, 1, 1, 3]
    """
    pairs, sums, counts = _contacts(labels, boundary)
    count = int(labels.max(initial=0)) + 1
    parent = np.arange(count)
    edges = {(a, b): [s, n] for (a, b), s, n in zip(pairs.tolist(), sums, counts, strict=True)}
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    heap = [(s / n, a, b) for (a, b), (s, n) in edges.items()]
    heapq.heapify(heap)
    while heap and heap[0][0] < merge_threshold:
        mean, a, b = heapq.heappop(heap)
        if (a, b) not in edges or edges[(a, b)][0] / edges[(a, b)][1] != mean:
            continue  # merged away or updated since it was pushed
        del edges[(a, b)]
        neighbours[a].discard(b)
        parent[b] = a
        for c in neighbours.pop(b, set()) - {a}:
            s, n = edges.pop((min(b, c), max(b, c)))
            neighbours[c].discard(b)
            key = (min(a, c), max(a, c))
            total = edges.setdefault(key, [0.0, 0])
            total[0] += s
            total[1] += n
            neighbours[a].add(c)
            neighbours[c].add(a)
            heapq.heappush(heap, (total[0] / total[1], *key))
    while True:  # pointer jumping: every label to its group's root
        jumped = parent[parent]
        if np.array_equal(jumped, parent):
            return parent[labels]
        parent = jumped


def _contacts(
    labels: np.ndarray, boundary: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjacent label pairs ``(E, 2)`` (low, high), with the sum and count of their contact
    values (the larger boundary value of each face-neighbour voxel pair)."""
    lows, highs, values = [], [], []
    for axis in range(labels.ndim):
        head = tuple(slice(None, -1) if d == axis else slice(None) for d in range(labels.ndim))
        tail = tuple(slice(1, None) if d == axis else slice(None) for d in range(labels.ndim))
        a, b = labels[head], labels[tail]
        touch = (a != b) & (a > 0) & (b > 0)
        lows.append(np.minimum(a[touch], b[touch]))
        highs.append(np.maximum(a[touch], b[touch]))
        values.append(np.maximum(boundary[head], boundary[tail])[touch])
    low, high = np.concatenate(lows).astype(np.int64), np.concatenate(highs).astype(np.int64)
    size = int(labels.max(initial=0)) + 1
    codes, inverse = np.unique(low * size + high, return_inverse=True)
    sums = np.bincount(inverse, weights=np.concatenate(values), minlength=codes.size)
    counts = np.bincount(inverse, minlength=codes.size)
    return np.stack([codes // size, codes % size], axis=1), sums, counts


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
