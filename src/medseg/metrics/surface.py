"""Surfaces of binary masks and the distances between them, in millimetres.

Two surface definitions are offered (``surface=``):

``"voxel"`` (default, as MONAI and MedPy)
    The surface of a mask is the mask minus its erosion: a foreground voxel is on the surface
    when one of its neighbours is background. ``connectivity=1`` uses the 2N face neighbours
    (default), ``connectivity=N`` all 3^N - 1 neighbours (scipy's
    ``generate_binary_structure(N, connectivity)``). Voxels outside the image count as
    background, so a mask touching the image border has a surface there. Points are voxel
    centres and every surface voxel weighs 1.

``"surfel"`` (as DeepMind ``surface-distance``, Nikolov et al. 2021)
    Surface elements sit on the grid of voxel corners: a corner is on the surface when the
    2^N voxels around it are neither all background nor all foreground, and it is weighted
    by the area (3D, mm^2) or contour length (2D, mm) of the marching-cubes patch inside its
    block. Percentiles and means are area-weighted.

Distances use the spacing (anisotropic, mm, array axis order) and are exact float64
Euclidean distances between element centres: the values of
``scipy.ndimage.distance_transform_edt(~surface, sampling=spacing)`` at the other surface.
Each direction is computed once, with a k-d tree over the surface elements (cost grows with
the surface, not with the volume or with the distance between far-apart structures) or,
for dense noisy surfaces, with SciPy's distance transform of the crop. Surfaces are
extracted on the bounding box of the union of both masks; the crop changes no value, since
outside that box both masks are background, exactly as outside the image. (The float32
``edt`` package is not used: its distances differ from exact ones by up to 1e-5 mm at
200 mm; see docs/evaluation.md.)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from medseg.device import available_cpus
from medseg.errors import ConfigError, GeometryError
from medseg.metrics._surfel_table import NORMALS_X8

SurfaceMode = Literal["voxel", "surfel"]
SURFACE_MODES = ("voxel", "surfel")


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances from every surface element of each mask to the other mask's surface.

    Attributes:
        pred_to_ref: ``(n_pred,)`` float64 distances in mm from the prediction's surface
            elements to the reference surface; ``inf`` where the reference is empty.
        ref_to_pred: ``(n_ref,)`` the same from the reference surface to the prediction.
        pred_weights: ``(n_pred,)`` surfel areas (mm^2, or mm in 2D), or None when every
            element weighs 1 (``surface="voxel"``).
        ref_weights: ``(n_ref,)`` the same for the reference surface.
    """

    pred_to_ref: np.ndarray
    ref_to_pred: np.ndarray
    pred_weights: np.ndarray | None = None
    ref_weights: np.ndarray | None = None


def check_pair(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> tuple[float, ...]:
    """Check that two masks share a shape matching ``spacing``; return the spacing as floats.

    Raises:
        GeometryError: shapes differ, or ``spacing`` has the wrong length or a value <= 0.
    """
    if pred.shape != ref.shape:
        raise GeometryError(f"prediction shape {pred.shape} differs from reference {ref.shape}")
    spacing = tuple(float(s) for s in np.atleast_1d(spacing))
    if len(spacing) != pred.ndim:
        raise GeometryError(f"spacing {spacing} has {len(spacing)} values for {pred.ndim}D masks")
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise GeometryError(f"spacing must be positive and finite, got {spacing}")
    if not 1 <= pred.ndim <= 3:
        raise GeometryError(f"masks must be 1D, 2D or 3D, got shape {pred.shape}")
    return spacing


def union_bbox(pred: np.ndarray, ref: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``pred | ref`` (bool arrays), None when both are empty.

    Example:
        >>> union_bbox(np.eye(4, dtype=bool)[1:3], np.zeros((2, 4), bool))
        (slice(0, 2, None), slice(1, 3, None))
    """
    union = pred | ref
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=other) if other else union)
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def surface_voxels(mask: np.ndarray, *, connectivity: int = 1) -> np.ndarray:
    """The voxel surface: ``mask & ~erosion(mask)``, outside the image being background.

    Args:
        mask: ``(*spatial)`` bool mask.
        connectivity: 1 = face neighbours (default), ``mask.ndim`` = all neighbours, as in
            ``scipy.ndimage.generate_binary_structure``.

    Returns:
        ``(*spatial)`` bool array of the surface voxels (empty for an empty mask).

    Example:
        >>> int(surface_voxels(np.ones((3, 3), bool)).sum())  # all but the centre
        8
    """
    mask = np.asarray(mask, dtype=bool)
    if not 1 <= connectivity <= mask.ndim:
        raise ConfigError(f"connectivity must be in 1..{mask.ndim}, got {connectivity}")
    if connectivity == 1:
        inner = _erode_face(mask)
    elif connectivity == mask.ndim:
        inner = _erode_box(mask)
    else:
        structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
        inner = ndimage.binary_erosion(mask, structure, border_value=0)
    return mask & ~inner


def _shifted(axis: int, ndim: int, part: slice | int) -> tuple[slice | int, ...]:
    index: list[slice | int] = [slice(None)] * ndim
    index[axis] = part
    return tuple(index)


def _erode_axis(inner: np.ndarray, source: np.ndarray, axis: int) -> None:
    """In place: keep voxels of ``inner`` whose two neighbours along ``axis`` are in ``source``."""
    nd = inner.ndim
    inner[_shifted(axis, nd, slice(None, -1))] &= source[_shifted(axis, nd, slice(1, None))]
    inner[_shifted(axis, nd, slice(1, None))] &= source[_shifted(axis, nd, slice(None, -1))]
    inner[_shifted(axis, nd, 0)] = False  # the voxel beyond the border is background
    inner[_shifted(axis, nd, -1)] = False


def _erode_face(mask: np.ndarray) -> np.ndarray:
    """Erosion by the face-connected cross (2N shifted ANDs)."""
    inner = mask.copy()
    for axis in range(mask.ndim):
        _erode_axis(inner, mask, axis)
    return inner


def _erode_box(mask: np.ndarray) -> np.ndarray:
    """Erosion by the full 3^N box, separable into one 3-voxel erosion per axis."""
    inner = mask.copy()
    for axis in range(mask.ndim):
        _erode_axis(inner, inner.copy(), axis)
    return inner


def surface_distances(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    *,
    surface: SurfaceMode = "voxel",
    connectivity: int = 1,
    threads: int | None = None,
) -> SurfaceDistances:
    """Distances between the surfaces of two masks, each direction computed once.

    Args:
        pred: ``(*spatial)`` prediction mask (non-zero = foreground), 1D to 3D.
        ref: ``(*spatial)`` reference mask, same shape.
        spacing: voxel size in mm per array axis.
        surface: ``"voxel"`` or ``"surfel"`` (see the module docstring).
        connectivity: neighbourhood of the voxel surface (ignored for surfels).
        threads: threads for the k-d tree queries; default all available CPUs.

    Example:
        >>> a = np.zeros((4, 6), bool); a[1:3, 1:3] = True
        >>> surface_distances(a, np.roll(a, 2, axis=1), (1.0, 0.5)).pred_to_ref.tolist()
        [1.0, 0.5, 1.0, 0.5]

    Returns:
        The directed distances (and surfel weights). An empty mask has no elements, and the
        other mask's elements are at distance ``inf``.

    Raises:
        GeometryError: shape/spacing mismatch. ConfigError: unknown ``surface``.
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    spacing = check_pair(pred, ref, spacing)
    if surface not in SURFACE_MODES:
        raise ConfigError(f"surface must be one of {SURFACE_MODES}, got {surface!r}")
    box = union_bbox(pred, ref)
    if box is None:
        return SurfaceDistances(np.zeros(0), np.zeros(0))
    pred, ref = pred[box], ref[box]
    if surface == "surfel":
        return _surfel_distances(pred, ref, spacing, threads)
    edges_pred = surface_voxels(pred, connectivity=connectivity)
    edges_ref = surface_voxels(ref, connectivity=connectivity)
    return SurfaceDistances(
        _directed(edges_pred, edges_ref, spacing, threads),
        _directed(edges_ref, edges_pred, spacing, threads),
    )


def _directed(
    source: np.ndarray, target: np.ndarray, spacing: tuple[float, ...], threads: int | None
) -> np.ndarray:
    """Distances (mm) from each True element of ``source`` to the nearest one of ``target``.

    Elements come in C order (as ``source[source]``). Shared elements are at distance 0; the
    others are looked up in a k-d tree of the target's physical coordinates, or, when the
    surfaces are dense (noisy masks: fewer than ``_EDT_VOXELS_PER_QUERY`` crop voxels per
    query), read from SciPy's Euclidean distance transform of the crop. Both are exact, so
    the choice changes the speed only.
    """
    n = int(np.count_nonzero(source))
    if n == 0 or not target.any():
        return np.full(n, np.inf)
    distances = np.zeros(n)
    apart = ~target[source]
    query = source & ~target
    n_query = int(np.count_nonzero(apart))
    if n_query == 0:
        return distances
    if source.size < _EDT_VOXELS_PER_QUERY * n_query:
        distances[apart] = ndimage.distance_transform_edt(~target, sampling=spacing)[query]
        return distances
    scale = np.asarray(spacing)
    tree = cKDTree(
        np.argwhere(target) * scale, leafsize=32, balanced_tree=False, compact_nodes=False
    )
    distances[apart] = tree.query(np.argwhere(query) * scale, workers=threads or available_cpus())[
        0
    ]
    return distances


# Measured crossover (docs/evaluation.md): a k-d tree query costs about as much as 5 voxels
# of distance transform, so the transform wins only for dense, noisy surfaces.
_EDT_VOXELS_PER_QUERY = 5


# ---------------------------------------------------------------- surfels (DeepMind)


def surfel_codes(mask: np.ndarray) -> np.ndarray:
    """Neighbour code of every voxel corner of ``mask`` (2D or 3D bool).

    Returns:
        ``(*(shape + 1))`` uint8 codes; corner ``p`` sits between voxels ``p - 1`` and ``p``
        on every axis, voxels outside the mask count as background, and the bit weights are
        DeepMind's (``[[8, 4], [2, 1]]`` in 2D, ``[[[128, 64], [32, 16]], [[8, 4], [2, 1]]]``
        in 3D).
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    codes = np.zeros(tuple(s + 1 for s in mask.shape), np.uint8)
    n_bits = 2**mask.ndim
    for bit, offset in enumerate(itertools.product((0, 1), repeat=mask.ndim)):
        block = tuple(slice(o, o + s + 1) for o, s in zip(offset, mask.shape, strict=True))
        codes |= padded[block] << (n_bits - 1 - bit)
    return codes


def surfel_area_table(spacing: Sequence[float]) -> np.ndarray:
    """Area (3D, mm^2) or contour length (2D, mm) of each neighbour code, as DeepMind's."""
    if len(spacing) == 2:
        s0, s1 = spacing
        diag = 0.5 * math.hypot(s0, s1)
        table = np.full(16, diag)
        table[[0, 15]] = 0.0
        table[[3, 12]] = s1  # one row of the 2x2 block inside: an edge along axis 1
        table[[5, 10]] = s0  # one column inside: an edge along axis 0
        table[[6, 9]] = 2 * diag  # two opposite corners: two diagonal edges
        return table
    s0, s1, s2 = spacing
    scale = np.array([s1 * s2, s0 * s2, s0 * s1]) / 8.0
    return np.array(
        [
            sum(float(np.linalg.norm(np.multiply(n, scale))) for n in normals)
            for normals in NORMALS_X8
        ]
    )


def _surfel_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], threads: int | None
) -> SurfaceDistances:
    if pred.ndim not in (2, 3):
        raise ConfigError(f"surface='surfel' needs 2D or 3D masks, got {pred.ndim}D")
    table = surfel_area_table(spacing)
    full = 2 ** (2**pred.ndim) - 1
    code_pred, code_ref = surfel_codes(pred), surfel_codes(ref)
    edges_pred = (code_pred != 0) & (code_pred != full)
    edges_ref = (code_ref != 0) & (code_ref != full)
    return SurfaceDistances(
        _directed(edges_pred, edges_ref, spacing, threads),
        _directed(edges_ref, edges_pred, spacing, threads),
        table[code_pred[edges_pred]],
        table[code_ref[edges_ref]],
    )
