"""Where the labelled foreground of a slide is: random foreground points for tile sampling.

``TileSampler`` centres a share of its tiles on a foreground pixel, like nnU-Net's
oversampling: pick one of the foreground classes present (uniformly), then a pixel of that
class (uniformly over the class's area). Two sources:

* a **label slide**: scanned once at the training resolution, in chunks of 2048 pixels,
  skipping chunks without tissue; each chunk keeps at most ``points_per_chunk`` random pixels
  per class plus the class's pixel count there, and a draw picks a chunk in proportion to
  that count, so the draw stays uniform over the class while memory stays bounded;
* **GeoJSON polygons**: a polygon of the class in proportion to its area, then a uniform
  point in it (rejection sampling in its bounding box).

Points are level-0 ``(y, x)`` pixel coordinates of the image slide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medseg.data.slide_read import level_for
from medseg.io.geojson import Annotations, Polygon
from medseg.io.slide import Slide

__all__ = ["ForegroundIndex", "annotation_foreground", "label_slide_foreground"]

CHUNK = 2048


class ForegroundIndex:
    """Random foreground points per class: ``classes`` and ``sample(rng)``."""

    def __init__(self, draw: dict[int, object]) -> None:
        self._draw = draw  # class -> callable(rng) -> (y, x)

    @property
    def classes(self) -> list[int]:
        return sorted(self._draw)

    def sample(self, rng: np.random.Generator) -> tuple[int, float, float]:
        """``(class, y, x)``: a random class present, then a random point of it."""
        label = self.classes[int(rng.integers(len(self._draw)))]
        y, x = self._draw[label](rng)  # type: ignore[operator]
        return label, y, x


def label_slide_foreground(
    labels: Slide,
    *,
    base_mpp: float,
    mpp: float,
    scale: float,
    classes: Sequence[int] | None,
    tissue: tuple[np.ndarray, float] | None = None,
    points_per_chunk: int = 4096,
    seed: int = 0,
) -> ForegroundIndex:
    """The foreground of a label slide, scanned at the level read for ``mpp``.

    Args:
        labels: the label slide (one channel).
        base_mpp: µm per pixel of the label slide's level 0.
        mpp: the training resolution.
        scale: image level-0 pixels per label level-0 pixel (1, or the label's downsample).
        classes: the label values to index (None: every value above 0).
        tissue: ``(mask, downsample)`` of the image; chunks without tissue are skipped.
    """
    level = level_for(labels, base_mpp, mpp)
    lv = labels.levels[level]
    to_image = lv.downsample * scale  # image level-0 pixels per scanned pixel
    rng = np.random.default_rng(seed)
    chunks: dict[int, list[tuple[np.ndarray, int]]] = {}
    for r0 in range(0, lv.shape[0], CHUNK):
        for c0 in range(0, lv.shape[1], CHUNK):
            h, w = min(CHUNK, lv.shape[0] - r0), min(CHUNK, lv.shape[1] - c0)
            if tissue is not None and not _touches(
                tissue, r0 * to_image, c0 * to_image, h * to_image, w * to_image
            ):
                continue
            block = labels.read_region(level, r0, c0, h, w, fill=0)[..., 0]
            present = np.unique(block)
            values = present[present > 0] if classes is None else np.asarray(classes)
            for value in values:
                where = np.flatnonzero(block == value)
                if where.size == 0:
                    continue
                keep = rng.choice(where, min(points_per_chunk, where.size), replace=False)
                rows, cols = np.divmod(keep, w)
                points = np.column_stack([rows + r0, cols + c0]).astype(np.float64)
                chunks.setdefault(int(value), []).append((points, where.size))
    draw = {k: _chunk_drawer(v, to_image) for k, v in chunks.items()}
    return ForegroundIndex(draw)


def annotation_foreground(
    annotations: Annotations, classes: Sequence[int] | None
) -> ForegroundIndex:
    """The foreground of GeoJSON polygons: per class, polygons drawn in proportion to area."""
    by_class: dict[int, list[Polygon]] = {}
    for polygon in annotations.polygons:
        wanted = polygon.label > 0 if classes is None else polygon.label in classes
        if wanted and polygon.area > 0:
            by_class.setdefault(polygon.label, []).append(polygon)
    return ForegroundIndex({k: _polygon_drawer(v) for k, v in by_class.items()})


def _chunk_drawer(chunks: list[tuple[np.ndarray, int]], to_image: float):
    counts = np.array([n for _, n in chunks], dtype=np.float64)

    def draw(rng: np.random.Generator) -> tuple[float, float]:
        points, _ = chunks[int(rng.choice(len(chunks), p=counts / counts.sum()))]
        row, col = points[int(rng.integers(len(points)))]
        jitter = rng.random(2)  # anywhere inside the scanned pixel
        return (row + jitter[0]) * to_image, (col + jitter[1]) * to_image

    return draw


def _polygon_drawer(polygons: list[Polygon]):
    areas = np.array([p.area for p in polygons])

    def draw(rng: np.random.Generator) -> tuple[float, float]:
        polygon = polygons[int(rng.choice(len(polygons), p=areas / areas.sum()))]
        x0, y0, x1, y1 = polygon.bbox
        for _ in range(20):  # a polygon fills >= 1/20 of its box in all but odd shapes
            xy = np.column_stack([rng.uniform(x0, x1, 256), rng.uniform(y0, y1, 256)])
            inside = np.flatnonzero(polygon.contains(xy))
            if inside.size:
                x, y = xy[inside[0]]
                return float(y), float(x)
        x, y = polygon.exterior.mean(axis=0)
        return float(y), float(x)

    return draw


def _touches(tissue: tuple[np.ndarray, float], y: float, x: float, h: float, w: float) -> bool:
    """Whether the level-0 box ``[y, y + h) x [x, x + w)`` meets the tissue mask."""
    mask, ds = tissue
    r0, c0 = max(0, math.floor(y / ds)), max(0, math.floor(x / ds))
    r1, c1 = math.ceil((y + h) / ds), math.ceil((x + w) / ds)
    return bool(mask[r0:r1, c0:c1].any())
