"""Tiles of whole-slide images at a chosen resolution: random ones for training, a grid for
inference.

``TileSampler`` draws ``tile_size``-square tiles at ``mpp`` µm per pixel (read with
``medseg.data.slide_read.read_tile``: the nearest finer level, then area averaging for RGB and
nearest neighbour for labels). A tile is centred

* with probability ``foreground_fraction`` on a labelled foreground pixel (a random class
  present, then a random pixel of it: nnU-Net's oversampling, ``slide_foreground``);
* otherwise on a random tissue pixel (``slide_tissue.tissue_mask``), jittered inside the
  mask pixel.

Tiles may reach past the slide's edge (filled with glass, label 0). Every draw comes from one
``numpy.random.Generator(seed)``: the same seed gives the same tiles.

``grid_tiles`` lists the tiles of a regular grid (``tile_size - overlap`` apart, the last one
flush with the slide's end) that touch tissue, for slide inference.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from medseg.data.slide_foreground import (
    ForegroundIndex,
    annotation_foreground,
    label_slide_foreground,
)
from medseg.data.slide_read import level_for, read_tile
from medseg.data.slide_tissue import tissue_mask
from medseg.errors import ConfigError, DatasetError
from medseg.io.geojson import Annotations, rasterise
from medseg.io.slide import Slide

__all__ = ["GridTile", "Tile", "TileSampler", "grid_tiles"]


@dataclass(frozen=True, eq=False)
class Tile:
    """One sampled tile.

    Attributes:
        y, x: level-0 pixel coordinates of its top-left corner.
        image: ``(tile_size, tile_size, C)`` pixels at the requested mpp.
        label: ``(tile_size, tile_size)`` label values, or None without labels.
        centred_on: the foreground class it was centred on; 0 for a random tissue tile.
    """

    y: float
    x: float
    image: np.ndarray
    label: np.ndarray | None
    centred_on: int


@dataclass(frozen=True)
class GridTile:
    """A grid position: ``row, col`` in the grid, ``y, x`` the top-left corner in pixels at the
    requested mpp (where its prediction goes), ``y0, x0`` the same corner in level-0 pixels."""

    row: int
    col: int
    y: int
    x: int
    y0: float
    x0: float


class TileSampler:
    """Random training tiles of one slide (see the module docstring).

    Args:
        slide: the RGB slide; its ``mpp`` must be known.
        mpp: the tiles' µm per pixel.
        tile_size: the tiles' side in pixels.
        tissue: ``(mask, downsample)`` from ``tissue_mask`` (default: computed).
        labels: a label slide (one channel, same size, or ``label_downsample`` times
            smaller), GeoJSON ``Annotations``, or None.
        label_downsample: image level-0 pixels per label-slide level-0 pixel.
        foreground_fraction: share of tiles centred on a foreground pixel (0..1).
        foreground_labels: the label values oversampled (default: every value above 0).
        seed: the random seed.

    Raises:
        ConfigError: no mpp, or a fraction outside 0..1.
        DatasetError: the tissue mask is empty.

    Example:
        >>> from medseg.data.slide_array import ArraySlide
        >>> slide = ArraySlide(np.full((64, 64, 3), 200, np.uint8), mpp=0.5)
        >>> tissue = (np.ones((8, 8), bool), 8.0)
        >>> tile = TileSampler(slide, mpp=1.0, tile_size=16, tissue=tissue).sample()
        >>> tile.image.shape, tile.label
        ((16, 16, 3), None)
    """

    def __init__(
        self,
        slide: Slide,
        *,
        mpp: float,
        tile_size: int,
        tissue: tuple[np.ndarray, float] | None = None,
        labels: Slide | Annotations | None = None,
        label_downsample: int = 1,
        foreground_fraction: float = 0.33,
        foreground_labels: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        if slide.mpp is None:
            raise ConfigError(
                f"{slide.path}: the slide does not record its microns per pixel; "
                "pass --mpp (mpp= in Python)"
            )
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ConfigError(f"foreground_fraction must be in 0..1, got {foreground_fraction}")
        if int(tile_size) < 1:
            raise ConfigError(f"tile_size must be >= 1, got {tile_size}")
        self.slide, self.mpp, self.tile_size = slide, float(mpp), int(tile_size)
        self.labels, self.label_downsample = labels, int(label_downsample)
        self.foreground_fraction = float(foreground_fraction)
        self.extent = self.tile_size * self.mpp / slide.mpp  # level-0 pixels per tile side
        self._snap = slide.levels[level_for(slide, slide.mpp, self.mpp)].downsample
        self.tissue = tissue if tissue is not None else tissue_mask(slide)
        self._tissue_pixels = np.flatnonzero(self.tissue[0])
        if self._tissue_pixels.size == 0:
            raise DatasetError(f"{slide.path}: no tissue found on the slide; nothing to sample")
        self._rng = np.random.default_rng(seed)
        self.foreground = self._foreground_index(foreground_labels, seed)

    def _foreground_index(self, classes: Sequence[int] | None, seed: int) -> ForegroundIndex:
        if self.labels is None:
            return ForegroundIndex({})
        if isinstance(self.labels, Annotations):
            return annotation_foreground(self.labels, classes)
        return label_slide_foreground(
            self.labels,
            base_mpp=self.slide.mpp * self.label_downsample,  # type: ignore[operator]
            mpp=self.mpp,
            scale=self.label_downsample,
            classes=classes,
            tissue=self.tissue,
            seed=seed,
        )

    def sample(self) -> Tile:
        """One tile (see the module docstring for where it is centred)."""
        rng = self._rng
        centred_on = 0
        if self.foreground.classes and rng.random() < self.foreground_fraction:
            centred_on, cy, cx = self.foreground.sample(rng)
        else:
            mask, ds = self.tissue
            index = self._tissue_pixels[int(rng.integers(self._tissue_pixels.size))]
            row, col = divmod(int(index), mask.shape[1])
            jitter = rng.random(2)
            cy, cx = (row + jitter[0]) * ds, (col + jitter[1]) * ds
        # the corner snapped to the grid of the level read, so an integer factor reads
        # exact blocks of it
        y, x = (float(round((c - self.extent / 2) / self._snap) * self._snap) for c in (cy, cx))
        image = read_tile(self.slide, y, x, mpp=self.mpp, tile_size=self.tile_size)
        return Tile(y, x, image, self.read_label(y, x), centred_on)

    def take(self, count: int) -> list[Tile]:
        """``count`` tiles."""
        return [self.sample() for _ in range(int(count))]

    def read_label(self, y: float, x: float) -> np.ndarray | None:
        """The label tile at level-0 ``(y, x)`` (None without labels)."""
        if self.labels is None:
            return None
        if isinstance(self.labels, Annotations):
            ds = self.mpp / self.slide.mpp  # type: ignore[operator]
            return rasterise(self.labels, y, x, self.tile_size, self.tile_size, ds)
        r = self.label_downsample
        return read_tile(
            self.labels,
            y / r,
            x / r,
            mpp=self.mpp,
            tile_size=self.tile_size,
            base_mpp=self.slide.mpp * r,  # type: ignore[operator]
            is_label=True,
        )


def grid_tiles(
    slide: Slide,
    mpp: float,
    tile_size: int,
    overlap: int = 0,
    tissue_mask: tuple[np.ndarray, float] | None = None,
) -> Iterator[GridTile]:
    """The tiles of a regular grid over ``slide`` at ``mpp`` that touch tissue, row by row.

    Tiles start ``tile_size - overlap`` pixels apart (at ``mpp``); the last of each row and
    column ends flush with the slide (a slide smaller than a tile gets one tile at 0).

    Args:
        tissue_mask: ``(mask, downsample)``; None: every grid tile.

    Raises:
        ConfigError: the slide has no mpp, or ``overlap`` is not in ``0..tile_size - 1``.

    Example:
        >>> from medseg.data.slide_array import ArraySlide
        >>> slide = ArraySlide(np.zeros((40, 24, 3), np.uint8), mpp=0.5)
        >>> [(t.y, t.x) for t in grid_tiles(slide, 1.0, 8, overlap=2)]
        [(0, 0), (0, 4), (6, 0), (6, 4), (12, 0), (12, 4)]
    """
    if slide.mpp is None:
        raise ConfigError(
            f"{slide.path}: the slide does not record its microns per pixel; "
            "pass --mpp (mpp= in Python)"
        )
    if not 0 <= overlap < tile_size:
        raise ConfigError(f"overlap must be in 0..{tile_size - 1}, got {overlap}")
    scale = mpp / slide.mpp  # level-0 pixels per tile pixel
    height, width = slide.levels[0].shape
    rows = _starts(math.ceil(height / scale), tile_size, tile_size - overlap)
    cols = _starts(math.ceil(width / scale), tile_size, tile_size - overlap)
    for i, ty in enumerate(rows):
        for j, tx in enumerate(cols):
            y0, x0 = ty * scale, tx * scale
            if tissue_mask is not None:
                mask, ds = tissue_mask
                r0, c0 = math.floor(y0 / ds), math.floor(x0 / ds)
                r1, c1 = (
                    math.ceil((y0 + tile_size * scale) / ds),
                    math.ceil((x0 + tile_size * scale) / ds),
                )
                if not mask[r0:r1, c0:c1].any():
                    continue
            yield GridTile(i, j, ty, tx, y0, x0)


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile starts along one axis: every ``stride``, the last flush with ``length``."""
    last = max(length - tile, 0)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts
