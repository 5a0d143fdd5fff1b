"""The processing grid of a slide: resolution, lazy tile reads, tissue lookups.

``processing_grid`` maps the slide to the grid ``predict_slide`` works on (the slide at the
requested microns per pixel, read from the level ``level_for_mpp`` picks); ``tissue_lookup``
answers "does this tile touch tissue?" in O(1) (a summed-area table of the thumbnail mask)
and gives the tissue mask of any grid rows (nearest neighbour); ``batch_predictor`` reads,
normalises and predicts a batch of tiles, zero-padding (after normalisation) parts outside a
slide smaller than one tile, as ``sliding_window_inference`` pads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medseg.data.slide_read import read_tile
from medseg.inference.slide_model import SlideModel, StainNormalizer
from medseg.inference.slide_stream import TileGrid
from medseg.io.slide import Slide


@dataclass(frozen=True)
class ProcessingGrid:
    """The processing grid: the slide at ``mpp``, read from ``level``."""

    slide: Slide
    level: int
    scale: float  # level pixels per grid pixel
    to_level0: float  # level-0 pixels per grid pixel
    shape: tuple[int, int]
    mpp: float | None


def processing_grid(slide: Slide, mpp: float | None) -> ProcessingGrid:
    """The slide at ``mpp`` (None: level 0) and the level to read it from."""
    base = slide.levels[0]
    if mpp is None:
        return ProcessingGrid(slide, 0, 1.0, 1.0, base.shape, slide.mpp)
    level = slide.level_for_mpp(mpp)  # ConfigError when the slide has no mpp
    assert slide.mpp is not None  # level_for_mpp refused a slide without one
    to_level0 = mpp / slide.mpp
    scale = to_level0 / slide.levels[level].downsample
    if abs(scale - 1) < 1e-4:
        scale, to_level0 = 1.0, slide.levels[level].downsample
    shape = tuple(max(1, round(n / to_level0)) for n in base.shape)
    return ProcessingGrid(slide, level, scale, to_level0, (shape[0], shape[1]), mpp)


def read_grid_region(grid: ProcessingGrid, y: int, x: int, h: int, w: int) -> np.ndarray:
    """``(h, w, C)`` pixels of the processing grid at ``(y, x)``: read directly when the level
    has the grid's resolution, else with ``medseg.data.slide_read.read_tile`` (block means /
    area averaging: the way training tiles are read)."""
    if grid.scale == 1.0:
        return grid.slide.read_region(grid.level, y, x, h, w)
    assert grid.mpp is not None  # a resampled grid has an mpp
    size = max(h, w)
    tile = read_tile(
        grid.slide,
        y * grid.to_level0,
        x * grid.to_level0,
        mpp=grid.mpp,
        tile_size=size,
        is_label=False,
    )
    return tile[:h, :w]


def slide_tissue(slide: Slide, tissue: bool | tuple[np.ndarray, float]) -> tuple[np.ndarray, float]:
    """``(mask, downsample)``: detected, given, or everything (``tissue=False``)."""
    if tissue is False:
        return np.ones((1, 1), dtype=bool), float(max(slide.levels[0].shape))
    if tissue is True:
        from medseg.data.slide_tissue import tissue_mask

        kwargs = {} if slide.mpp is not None else {"min_area_mm2": 0.0}
        return tissue_mask(slide, **kwargs)
    mask, downsample = tissue
    return np.asarray(mask, dtype=bool), float(downsample)


def tissue_lookup(
    grid: ProcessingGrid, mask: np.ndarray, downsample: float
) -> tuple[Callable[[int, int, int], bool], Callable[[int, int], np.ndarray]]:
    """``(touches(y, x, tile), rows(y0, r))`` on the processing grid."""
    f = grid.to_level0 / downsample  # mask pixels per grid pixel
    mh, mw = mask.shape
    cols = np.minimum(((np.arange(grid.shape[1]) + 0.5) * f).astype(np.int64), mw - 1)
    # summed-area table: a tile's tissue count in O(1)
    table = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def touches(y: int, x: int, tile: int) -> bool:
        y0, x0 = min(max(int(y * f), 0), mh - 1), min(max(int(x * f), 0), mw - 1)
        y1 = min(max(math.ceil((y + tile) * f), y0 + 1), mh)
        x1 = min(max(math.ceil((x + tile) * f), x0 + 1), mw)
        return bool(table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0] > 0)

    def rows(y0: int, r: int) -> np.ndarray:
        index = np.minimum(((np.arange(y0, y0 + r) + 0.5) * f).astype(np.int64), mh - 1)
        return mask[index][:, cols]

    return touches, rows


def batch_predictor(
    grid: ProcessingGrid, tg: TileGrid, model: SlideModel, stain: StainNormalizer | None
) -> Callable[[list[tuple[int, int]]], np.ndarray]:
    """``[(y, x)]`` padded-grid corners -> ``(n, K, t, t)`` probabilities."""
    t, (py, px), (h, w) = tg.tile, tg.pad, tg.shape

    def predict(corners: list[tuple[int, int]]) -> np.ndarray:
        batch = np.zeros((len(corners), grid.slide.channels, t, t), dtype=np.float32)
        for b, (y, x) in enumerate(corners):
            y0, x0 = max(y - py, 0), max(x - px, 0)
            y1, x1 = min(y - py + t, h), min(x - px + t, w)
            pixels = read_grid_region(grid, y0, x0, y1 - y0, x1 - x0)
            if stain is not None:
                pixels = stain(pixels)
            batch[b, :, y0 + py - y : y1 + py - y, x0 + px - x : x1 + px - x] = model.prepare(
                pixels
            )
        return model.probabilities(batch)

    return predict
