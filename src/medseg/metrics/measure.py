"""Measurements of label maps in physical units: volume, surface, connected components.

Everything is spacing-aware and works on 2D and 3D arrays by the same code (array axis order,
spacing per array axis, as ``medseg.io.image``):

- volume: voxel count times the voxel volume, mm^3 (``/ 1000`` gives mL); in 2D it is an
  area in mm^2.
- surface: the area (3D, mm^2) or contour length (2D, mm) of the marching-cubes surface,
  summed with DeepMind's surfel table (``medseg.metrics.surface.surfel_area_table``, the
  same surfels as ``surface="surfel"`` distances), voxels outside the image being background.
  It follows the voxel staircase, so it is larger than the smooth surface (see
  ``surface_area``).
- connected components (``cc3d``): ``connectivity="full"`` (default: 26 neighbours in 3D,
  8 in 2D, so a diagonal touch joins two blobs, as most radiology tools count lesions) or
  ``"face"`` (6 in 3D, 4 in 2D). Per component: voxels, volume, the centroid in world
  coordinates (LPS ``x, y, z`` mm, through ``Image.index_to_world``: origin, direction and
  spacing) and the bounding box in voxel indices (array axis order, inclusive).

``size_columns`` turns the confusion counts of ``medseg evaluate`` into predicted and
reference volumes (3D, mL) or areas (2D, mm^2): the columns ``SIZE_COLUMNS``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cc3d
import numpy as np

from medseg.errors import ConfigError, GeometryError
from medseg.io import Image
from medseg.metrics.case import Labels, label_regions
from medseg.metrics.surface import surfel_area_table, surfel_codes, union_bbox

Connectivity = Literal["face", "full"]
CONNECTIVITIES = ("face", "full")
MM3_PER_ML = 1000.0

#: Columns ``size_columns`` adds to each row of ``per_case.csv``: ``vol_*`` are filled for 3D
#: images (mL), ``area_*`` for 2D images (mm^2); the other four are NaN.
SIZE_COLUMNS: tuple[str, ...] = (
    "vol_pred_ml", "vol_ref_ml", "vol_diff_ml", "vol_rel_err",
    "area_pred_mm2", "area_ref_mm2", "area_diff_mm2", "area_rel_err",
)  # fmt: skip

_CC3D_CONNECTIVITY = {("face", 2): 4, ("full", 2): 8, ("face", 3): 6, ("full", 3): 26}


def _check(mask: np.ndarray, spacing: Sequence[float]) -> tuple[float, ...]:
    spacing = tuple(float(s) for s in np.atleast_1d(spacing))
    if mask.ndim not in (2, 3):
        raise GeometryError(f"measurements need a 2D or 3D array, got shape {mask.shape}")
    if len(spacing) != mask.ndim:
        raise GeometryError(f"spacing {spacing} has {len(spacing)} values for a {mask.ndim}D array")
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise GeometryError(f"spacing must be positive and finite, got {spacing}")
    return spacing


def voxel_volume(spacing: Sequence[float]) -> float:
    """Volume of one voxel in mm^3 (area of one pixel in mm^2 for a 2D spacing).

    Example:
        >>> voxel_volume((2.0, 0.5, 0.5))
        0.5
    """
    return float(np.prod(np.asarray(spacing, dtype=float)))


def structure_volume(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a binary mask in mm^3 (3D) or its area in mm^2 (2D).

    Args:
        mask: ``(*spatial)`` mask, non-zero = inside.
        spacing: voxel size in mm per array axis.

    Returns:
        ``count * prod(spacing)``; 0 for an empty mask.

    Example:
        >>> structure_volume(np.ones((2, 3, 4), bool), (2.0, 1.0, 0.5))
        24.0
    """
    mask = np.asarray(mask)
    spacing = _check(mask, spacing)
    return float(np.count_nonzero(mask)) * voxel_volume(spacing)


def structure_volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a 3D binary mask in mL (``structure_volume / 1000``).

    Raises:
        GeometryError: ``mask`` is not 3D (a 2D mask has an area, not a volume).

    Example:
        >>> structure_volume_ml(np.ones((10, 10, 10), bool), (1.0, 1.0, 1.0))
        1.0
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise GeometryError(f"a volume in mL needs a 3D mask, got shape {mask.shape}")
    return structure_volume(mask, spacing) / MM3_PER_ML


def surface_area(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Surface area (3D, mm^2) or perimeter (2D, mm) of a binary mask.

    The marching-cubes (marching-squares in 2D) surface through the voxel corners, summed
    with DeepMind's surfel table (``surfel_area_table``; Nikolov et al. 2021). Voxels outside
    the image count as background, so a mask touching the border is closed there. Holes
    count: their walls are surface too.

    Args:
        mask: ``(*spatial)`` 2D or 3D mask, non-zero = inside.
        spacing: voxel size in mm per array axis.

    Returns:
        The area in mm^2 (3D) or the length in mm (2D); 0 for an empty mask. It measures
        the mask as drawn, staircase included, so it exceeds the smooth surface the mask
        approximates: +9 % for a ball of radius 20 voxels (4 pi r^2), +15 % for r = 20 mm at
        spacing (2.0, 0.7, 0.8) mm, +9 % for the perimeter of a 2D disc. Compare surfaces
        measured at the same spacing only.

    Example:
        >>> round(surface_area(np.ones((4, 4), bool), (1.0, 1.0)), 3)  # 12 edges + 4 corners
        14.828
    """
    mask = np.asarray(mask, dtype=bool)
    spacing = _check(mask, spacing)
    box = union_bbox(mask, mask)
    return 0.0 if box is None else _surfel_sum(mask[box], spacing)


def _surfel_sum(mask: np.ndarray, spacing: tuple[float, ...]) -> float:
    """Summed surfel areas of a bool mask (one bincount of the corner codes, no loop)."""
    codes = surfel_codes(mask)
    # most corners are outside (code 0, area 0): counting only the others avoids bincount's
    # full-size int64 copy, the slowest step on large sparse masks
    counts = np.bincount(codes[codes != 0], minlength=2 ** (2**mask.ndim))
    return float(counts @ surfel_area_table(spacing))


@dataclass(frozen=True)
class Measurements:
    """What ``measure_label_map`` returns.

    Attributes:
        labels: one row per label (or region): ``label``, ``voxels``, ``volume_ml`` and
            ``surface_mm2`` (3D) or ``area_mm2`` and ``perimeter_mm`` (2D),
            ``n_components``, ``largest_component_ml`` (3D) or ``largest_component_mm2``.
        components: one row per connected component, largest first within a label:
            ``label``, ``component`` (1, 2, ... by size), ``voxels``, ``volume_ml`` (3D) or
            ``area_mm2`` (2D), ``centroid_x_mm``, ``centroid_y_mm`` (and ``centroid_z_mm``)
            in world LPS coordinates, and ``bbox_min_<axis>``/``bbox_max_<axis>``: voxel
            indices along array axis 0, 1 (, 2), both inclusive.
    """

    labels: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)


def measure_label_map(
    label_map: np.ndarray,
    spacing: Sequence[float],
    *,
    origin: Sequence[float] | None = None,
    direction: Sequence[float] | None = None,
    labels: Labels | None = None,
    connectivity: Connectivity = "full",
) -> Measurements:
    """Volume, surface and connected components of every label of a label map.

    Args:
        label_map: ``(*spatial)`` 2D or 3D integer label map (0 = background).
        spacing: voxel size in mm per array axis.
        origin: world position (LPS ``x, y, z`` mm) of voxel ``[0, 0, 0]``; default zeros.
        direction: row-major ITK direction cosines (``medseg.io.Image``); default identity.
        labels: labels or regions to measure (``medseg.metrics.label_regions``: ints,
            unions, or ``{name: values}``); default every non-zero value present (none for
            an empty map: no rows). A label asked for but absent gets a row of zeros.
        connectivity: ``"full"`` (default; 26 neighbours in 3D, 8 in 2D) or ``"face"``
            (6 / 4).

    Returns:
        ``Measurements`` (see its attributes for the columns and units).

    Raises:
        GeometryError: not 2D/3D, or a spacing/origin/direction that does not fit.
        ConfigError: unknown ``connectivity`` or bad labels.

    Example:
        >>> m = np.zeros((4, 6), np.uint8); m[0, 0] = m[2:4, 2:5] = 1
        >>> result = measure_label_map(m, (1.0, 2.0))
        >>> result.labels[0]["area_mm2"], result.labels[0]["n_components"]
        (14.0, 2)
        >>> [c["voxels"] for c in result.components]
        [6, 1]
    """
    label_map = np.asarray(label_map)
    spacing = _check(label_map, spacing)
    if connectivity not in CONNECTIVITIES:
        raise ConfigError(f"connectivity must be one of {CONNECTIVITIES}, got {connectivity!r}")
    # Image checks origin/direction and owns the index -> world conversion (no copy of data)
    image = Image(
        label_map,
        spacing,
        () if origin is None else tuple(np.ravel(origin)),
        () if direction is None else tuple(np.ravel(direction)),
    )
    result = Measurements()
    if labels is None:
        labels = label_values(label_map)
        if not labels:  # an empty map has nothing to measure (not an error, unlike no labels)
            return result
    regions = label_regions(labels)
    for name, values in regions.items():
        mask = label_map == values[0] if len(values) == 1 else np.isin(label_map, values)
        row, components = _measure_mask(mask, image, connectivity)
        result.labels.append({"label": name, **row})
        result.components.extend({"label": name, **c} for c in components)
    return result


def _measure_mask(
    mask: np.ndarray, image: Image, connectivity: Connectivity
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The label row and component rows of one binary mask."""
    ndim, spacing = mask.ndim, image.spacing
    box = union_bbox(mask, mask)
    if box is None:
        return empty_label_row(ndim), []
    _, size_key, surface_key, _, largest_key = label_columns(ndim)
    scale = voxel_volume(spacing) / (MM3_PER_ML if ndim == 3 else 1.0)
    crop = mask[box]
    offset = np.array([s.start for s in box])
    components = _components(crop, offset, image, connectivity, size_key, scale)
    voxels = int(np.count_nonzero(crop))
    row = {
        "voxels": voxels,
        size_key: voxels * scale,
        surface_key: _surfel_sum(crop, spacing),
        "n_components": len(components),
        largest_key: components[0][size_key],
    }
    return row, components


def label_columns(spatial_dims: int) -> tuple[str, ...]:
    """The keys of a label row of ``measure_label_map`` after ``label``, in order.

    Example:
        >>> label_columns(2)
        ('voxels', 'area_mm2', 'perimeter_mm', 'n_components', 'largest_component_mm2')
    """
    if spatial_dims == 3:
        return ("voxels", "volume_ml", "surface_mm2", "n_components", "largest_component_ml")
    return ("voxels", "area_mm2", "perimeter_mm", "n_components", "largest_component_mm2")


def component_columns(spatial_dims: int) -> tuple[str, ...]:
    """The keys of a component row of ``measure_label_map`` after ``label``, in order."""
    axes = range(spatial_dims)
    return (
        "component",
        "voxels",
        "volume_ml" if spatial_dims == 3 else "area_mm2",
        *(f"centroid_{a}_mm" for a in "xyz"[:spatial_dims]),
        *(f"bbox_min_{a}" for a in axes),
        *(f"bbox_max_{a}" for a in axes),
    )


def empty_label_row(spatial_dims: int) -> dict[str, Any]:
    """The label row of a label absent from the map: zero voxels, size and components."""
    return {
        key: 0 if key in ("voxels", "n_components") else 0.0 for key in label_columns(spatial_dims)
    }


def _components(
    crop: np.ndarray,
    offset: np.ndarray,
    image: Image,
    connectivity: Connectivity,
    size_key: str,
    scale: float,
) -> list[dict[str, Any]]:
    """Component rows of a cropped bool mask, largest first (ties: first in C order).

    Statistics come from the foreground voxels only (``bincount`` over their component ids),
    which is faster than ``cc3d.statistics``' pass over the whole crop.
    """
    ndim = crop.ndim
    labelled, n = cc3d.connected_components(
        crop, connectivity=_CC3D_CONNECTIVITY[connectivity, ndim], return_N=True
    )
    inside = np.flatnonzero(labelled)
    ids = labelled.reshape(-1)[inside].astype(np.intp) - 1  # components 0 .. n-1
    coords = np.stack(np.unravel_index(inside, crop.shape), axis=1)  # (n_voxels, ndim)
    voxels = np.bincount(ids, minlength=n)
    centroids = (
        np.stack([np.bincount(ids, weights=coords[:, a], minlength=n) for a in range(ndim)], axis=1)
        / voxels[:, None]
        + offset
    )
    low = np.full((n, ndim), np.iinfo(np.intp).max)
    high = np.full((n, ndim), -1)
    np.minimum.at(low, ids, coords)
    np.maximum.at(high, ids, coords)
    world = image.index_to_world(centroids) if n else np.zeros((0, ndim))
    order = np.argsort(-voxels, kind="stable")  # cc3d numbers components in C order
    rows = []
    for rank, k in enumerate(order, start=1):
        row: dict[str, Any] = {"component": rank, "voxels": int(voxels[k])}
        row[size_key] = float(voxels[k]) * scale
        row.update({f"centroid_{a}_mm": float(world[k, i]) for i, a in enumerate("xyz"[:ndim])})
        row.update({f"bbox_min_{a}": int(low[k, a] + offset[a]) for a in range(ndim)})
        row.update({f"bbox_max_{a}": int(high[k, a] + offset[a]) for a in range(ndim)})
        rows.append(row)
    return rows


def label_values(label_map: np.ndarray, *, ignore_label: int | None = None) -> list[int]:
    """Sorted non-zero values of a label map, without ``ignore_label``.

    Small non-negative labels are counted with ``bincount`` in chunks (no full sort and no
    full-size int64 copy), much faster than ``np.unique`` on large volumes.

    Example:
        >>> label_values(np.array([[0, 3], [1, 3]]))
        [1, 3]
    """
    array = np.asarray(label_map)
    if array.size and array.dtype != bool and 0 <= array.min() and array.max() < 65536:
        top = int(array.max())
        if top <= _FEW_VALUES:  # one comparison per value beats bincount's int64 copy
            return [v for v in range(1, top + 1) if v != ignore_label and (array == v).any()]
        flat, size = array.reshape(-1), top + 1
        counts = np.zeros(size, dtype=np.int64)
        for start in range(0, flat.size, _CHUNK):
            counts += np.bincount(flat[start : start + _CHUNK], minlength=size)
        return [int(v) for v in np.flatnonzero(counts) if v != 0 and v != ignore_label]
    return [int(v) for v in np.unique(array) if v != 0 and v != ignore_label]


_CHUNK = 1 << 22
_FEW_VALUES = 8


def size_columns(tp: float, fp: float, fn: float, spacing: Sequence[float]) -> dict[str, float]:
    """Predicted and reference size of one label from its confusion counts.

    Args:
        tp, fp, fn: voxel counts (ignored voxels already left out).
        spacing: voxel size in mm per array axis.

    Returns:
        ``{column: value}`` for ``SIZE_COLUMNS``: 3D images fill ``vol_pred_ml`` (TP + FP
        voxels), ``vol_ref_ml`` (TP + FN), ``vol_diff_ml = pred - ref`` and
        ``vol_rel_err = diff / ref`` (NaN when the reference is empty); 2D images fill the
        ``area_*`` columns in mm^2 the same way. The other four (and all eight for 1D) are NaN.

    Example:
        >>> c = size_columns(900, 300, 100, (1.0, 1.0, 1.0))
        >>> c["vol_pred_ml"], c["vol_ref_ml"], round(c["vol_diff_ml"], 3), c["vol_rel_err"]
        (1.2, 1.0, 0.2, 0.2)
        >>> math.isnan(c["area_pred_mm2"])
        True
    """
    row = dict.fromkeys(SIZE_COLUMNS, math.nan)
    ndim = len(spacing)
    if ndim not in (2, 3):
        return row
    scale = voxel_volume(spacing) / (MM3_PER_ML if ndim == 3 else 1.0)
    prefix, unit = ("vol", "ml") if ndim == 3 else ("area", "mm2")
    row[f"{prefix}_pred_{unit}"] = (tp + fp) * scale
    row[f"{prefix}_ref_{unit}"] = (tp + fn) * scale
    # from the counts, so equal sizes give exactly 0 and no rounding of pred - ref
    row[f"{prefix}_diff_{unit}"] = (fp - fn) * scale
    row[f"{prefix}_rel_err"] = (fp - fn) / (tp + fn) if tp + fn > 0 else math.nan
    return row
