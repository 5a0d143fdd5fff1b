"""Polygon annotations of whole-slide images: QuPath's GeoJSON export, rasterised per tile.

What is read
------------
A GeoJSON ``FeatureCollection``, a plain list of ``Feature`` objects, or one ``Feature``
(QuPath: *File > Export objects as GeoJSON*). ``Polygon`` and ``MultiPolygon`` geometries
(also inside a ``GeometryCollection``) are kept, holes included (``coordinates[0]`` is the
outline, the other rings are holes); points and lines mark no region and are skipped with
one warning. Each feature's class is ``properties.classification.name`` (an older export's
plain string ``classification`` is accepted too), mapped to an integer by the dataset's
``labels`` (exact name first, then ignoring case). Coordinates are **level-0 pixels**
``(x, y)``, with pixel ``(col, row)`` covering ``[col, col + 1) x [row, row + 1)``, as
QuPath writes them.

Rasterising
-----------
``rasterise(annotations, y, x, h, w, downsample)`` paints an ``(h, w)`` tile whose top-left
corner is level-0 pixel ``(y, x)`` and whose pixels are ``downsample`` level-0 pixels wide:
a tile pixel takes a polygon's label when the **centre** of the pixel lies inside the outline
and outside every hole (``matplotlib.path.Path.contains_points``, vectorised over the centres
in the polygon's bounding box; only polygons whose bounding box meets the tile are drawn).
Overlapping polygons: larger ones are painted first, so a smaller polygon nested in a larger
one (a nucleus in a gland in tissue) stays on top whatever the file order; a hole shows what
lies beneath it, not background.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.path import Path as MplPath

from medseg.errors import DatasetError, listing

__all__ = ["Annotations", "Polygon", "rasterise", "read_geojson"]

OUTSIDE_TOLERANCE = 0.05  # a point may pass the slide's edge by 5 % of its size (drawn past it)


@dataclass(frozen=True, eq=False)
class Polygon:
    """One polygon: its label, outline and holes as ``(N, 2)`` arrays of ``(x, y)`` level-0
    pixel coordinates; ``bbox`` is ``(x_min, y_min, x_max, y_max)``."""

    label: int
    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        lo, hi = self.exterior.min(axis=0), self.exterior.max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    @property
    def area(self) -> float:
        """Area in level-0 pixels (shoelace formula), holes subtracted."""
        return _ring_area(self.exterior) - sum(_ring_area(h) for h in self.holes)

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Which of the ``(N, 2)`` points ``(x, y)`` lie inside the outline and in no hole."""
        inside = MplPath(self.exterior).contains_points(xy)
        for hole in self.holes:
            inside &= ~MplPath(hole).contains_points(xy)
        return inside


@dataclass(frozen=True, eq=False)
class Annotations:
    """The polygons of one GeoJSON file, largest first, with a bounding-box index;
    ``background`` is the value of pixels no polygon covers (0, or the ``ignore`` label of
    sparse annotations)."""

    path: Path
    polygons: tuple[Polygon, ...]
    labels: dict[str, int]
    background: int = 0

    def __post_init__(self) -> None:
        boxes = np.array([p.bbox for p in self.polygons], dtype=np.float64).reshape(-1, 4)
        object.__setattr__(self, "_boxes", boxes)

    def touching(self, y: float, x: float, h: float, w: float) -> list[Polygon]:
        """The polygons whose bounding box meets the level-0 box ``[x, x + w) x [y, y + h)``
        (a vectorised prefilter over every polygon's box), in painting order."""
        b = self._boxes  # type: ignore[attr-defined]
        hit = (b[:, 0] < x + w) & (b[:, 2] > x) & (b[:, 1] < y + h) & (b[:, 3] > y)
        return [self.polygons[i] for i in np.flatnonzero(hit)]

    @property
    def present_labels(self) -> list[int]:
        return sorted({p.label for p in self.polygons})


def read_geojson(
    path: str | os.PathLike[str],
    labels: dict[str, int],
    *,
    slide_shape: tuple[int, int] | None = None,
    default_label: str | None = None,
    background: int = 0,
) -> Annotations:
    """Read a QuPath GeoJSON export (see the module docstring for what is read).

    Args:
        path: the ``.geojson`` / ``.json`` file.
        labels: the dataset's class name -> integer value.
        slide_shape: the slide's level-0 ``(height, width)``; with it, coordinates beyond the
            slide by more than 5 % of its size (another coordinate system: µm, another
            level's pixels) are refused.
        default_label: the class of features without a classification (default: refused).
        background: the value of pixels no polygon covers: 0, or the dataset's ``ignore``
            value when only some regions were annotated (``medseg.data.labels``).

    Raises:
        DatasetError: not valid JSON, not GeoJSON features, a ring with fewer than 3
            points or a non-finite coordinate, an unknown or missing class name, or
            coordinates outside the slide. The message names the file and the feature.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not a readable JSON file ({err})") from err
    polygons: list[Polygon] = []
    skipped: dict[str, int] = {}
    for index, feature in enumerate(_features(data, path)):
        where = f"{path}: feature {index}"
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        parts = _polygon_parts(geometry, where, skipped)
        if not parts:
            continue
        label = _label_of(feature, labels, default_label, where)
        for rings in parts:
            rings = [_ring(r, where) for r in _list(rings, where)]
            if not rings:
                raise DatasetError(f"{where}: a polygon without coordinates")
            polygons.append(Polygon(label, rings[0], tuple(rings[1:])))
    if skipped:
        warnings.warn(
            f"{path}: skipped {sum(skipped.values())} feature(s) that are no polygons "
            f"({', '.join(sorted(skipped))}); only Polygon and MultiPolygon mark regions",
            stacklevel=2,
        )
    if slide_shape is not None and polygons:
        _check_inside(polygons, slide_shape, path)
    ordered = sorted(polygons, key=lambda p: -p.area)  # larger first: nested ones stay on top
    return Annotations(path, tuple(ordered), dict(labels), int(background))


def rasterise(
    annotations: Annotations,
    y: float,
    x: float,
    h: int,
    w: int,
    downsample: float = 1.0,
    *,
    dtype: type = np.uint8,
) -> np.ndarray:
    """The ``(h, w)`` label tile whose top-left corner is level-0 pixel ``(y, x)`` and whose
    pixels are ``downsample`` level-0 pixels wide (``annotations.background``, 0 by default,
    where no polygon covers a pixel centre).

    Example:
        >>> square = Polygon(1, np.array([[1, 1], [3, 1], [3, 3], [1, 3]], float))
        >>> rasterise(Annotations(Path("a.geojson"), (square,), {"a": 1}), 0, 0, 4, 4)
        array([[0, 0, 0, 0],
               [0, 1, 1, 0],
               [0, 1, 1, 0],
               [0, 0, 0, 0]], dtype=uint8)
    """
    out = np.full((h, w), annotations.background, dtype=dtype)
    extent_y, extent_x = h * downsample, w * downsample
    for polygon in annotations.touching(y, x, extent_y, extent_x):
        x0, y0, x1, y1 = polygon.bbox
        # tile pixels whose centre x + (j + 0.5) * downsample may lie in [x0, x1]
        j0 = max(0, math.floor((x0 - x) / downsample - 0.5))
        j1 = min(w, math.ceil((x1 - x) / downsample + 0.5))
        i0 = max(0, math.floor((y0 - y) / downsample - 0.5))
        i1 = min(h, math.ceil((y1 - y) / downsample + 0.5))
        if j0 >= j1 or i0 >= i1:
            continue
        cx = x + (np.arange(j0, j1) + 0.5) * downsample
        cy = y + (np.arange(i0, i1) + 0.5) * downsample
        gx, gy = np.meshgrid(cx, cy)
        inside = polygon.contains(np.column_stack([gx.ravel(), gy.ravel()]))
        block = out[i0:i1, j0:j1]
        block[inside.reshape(block.shape)] = polygon.label
    return out


# ---------------------------------------------------------------- parsing


def _features(data: object, path: Path) -> list:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        return _list(data.get("features"), f"{path}: 'features'")
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    raise DatasetError(
        f"{path}: not GeoJSON annotations; expected a FeatureCollection, a list of Features "
        "or one Feature (QuPath: File > Export objects as GeoJSON)"
    )


def _polygon_parts(geometry: object, where: str, skipped: dict[str, int]) -> list:
    """The polygons (each a list of rings) of a geometry; a ``GeometryCollection`` is opened,
    other types are counted in ``skipped``."""
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    if kind == "Polygon":
        return [geometry.get("coordinates")]  # type: ignore[union-attr]
    if kind == "MultiPolygon":
        return _list(geometry.get("coordinates"), where)  # type: ignore[union-attr]
    if kind == "GeometryCollection":
        members = _list(geometry.get("geometries"), where)  # type: ignore[union-attr]
        return [part for g in members for part in _polygon_parts(g, where, skipped)]
    skipped[str(kind)] = skipped.get(str(kind), 0) + 1
    return []


def _list(value: object, where: str) -> list:
    if not isinstance(value, list):
        raise DatasetError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _ring(value: object, where: str) -> np.ndarray:
    try:
        ring = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{where}: coordinates are not numbers ({err})") from err
    if ring.ndim != 2 or ring.shape[1] < 2:
        raise DatasetError(f"{where}: a ring must be a list of [x, y] points")
    ring = ring[:, :2]
    if not np.isfinite(ring).all():
        raise DatasetError(f"{where}: a coordinate is not a finite number")
    distinct = ring[:-1] if len(ring) > 1 and np.array_equal(ring[0], ring[-1]) else ring
    if len(np.unique(distinct, axis=0)) < 3:
        raise DatasetError(
            f"{where}: a polygon ring has {len(np.unique(distinct, axis=0))} distinct "
            "point(s); it needs at least 3"
        )
    return ring


def _label_of(feature: dict, labels: dict[str, int], default: str | None, where: str) -> int:
    props = feature.get("properties") or {}
    cls = props.get("classification") if isinstance(props, dict) else None
    name = cls.get("name") if isinstance(cls, dict) else cls
    if not isinstance(name, str) or not name:
        if default is None:
            raise DatasetError(
                f"{where}: no properties.classification.name; classify it in QuPath as one "
                f"of {listing(sorted(labels), limit=10)}"
            )
        name = default
    if name in labels:
        return int(labels[name])
    folded = {k.lower(): v for k, v in labels.items()}
    if name.lower() in folded:
        return int(folded[name.lower()])
    raise DatasetError(
        f"{where}: class '{name}' is not in the dataset's labels "
        f"({listing(sorted(labels), limit=10)}); rename the class or add it to dataset.json"
    )


def _check_inside(polygons: list[Polygon], slide_shape: tuple[int, int], path: Path) -> None:
    """Refuse coordinates beyond the slide by more than ``OUTSIDE_TOLERANCE`` of its size."""
    boxes = np.array([p.bbox for p in polygons])
    height, width = slide_shape
    lo_x, lo_y = boxes[:, 0].min(), boxes[:, 1].min()
    hi_x, hi_y = boxes[:, 2].max(), boxes[:, 3].max()
    problems = []
    for axis, lo, hi, size in (("x", lo_x, hi_x, width), ("y", lo_y, hi_y, height)):
        slack = OUTSIDE_TOLERANCE * size
        if hi > size + slack:
            problems.append(f"{axis} reaches {hi:g}, {hi - size:g} px beyond the slide's {size}")
        if lo < -slack:
            problems.append(f"{axis} goes down to {lo:g}, {-lo:g} px before 0")
    if problems:
        raise DatasetError(
            f"{path}: annotations lie outside the slide (level 0: {height} x {width} px): "
            f"{'; '.join(problems)}; coordinates must be level-0 pixels (x, y), not µm or "
            "another level's pixels"
        )


def _ring_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
