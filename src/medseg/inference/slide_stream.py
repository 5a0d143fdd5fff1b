"""Sliding-window blending in horizontal bands: a whole-image prediction in bounded memory.

``sliding_window_inference`` holds the whole image and its ``(K, H, W)`` output. A slide of
50,000 x 50,000 pixels cannot be held, so :func:`blend_in_bands` lays out the *same* tiles
(``medseg.data.sampling.grid_slices`` over the whole image, the same Gaussian weights, the
same row-major order of additions) but keeps only one band of ``tile`` rows of the weighted
sum and of the weight sum. After the tiles of grid row ``i`` are added, every image row above
the next grid row's start has received all its tiles: those rows are divided, handed out and
dropped, and the rest of the band moves up. The rows handed out are therefore exactly the
rows of a whole-image prediction (same numbers, same order of floating-point additions);
memory is ``(K + 1) * tile * W`` float32 whatever the slide's height.

Tiles for which ``keep_tile`` is False (no tissue) are never read nor predicted; pixels no
predicted tile covers get probability 0 in every class (the caller maps them to glass).
An image smaller than the tile is padded symmetrically with 0 (after normalisation) and
cropped back, as ``sliding_window_inference`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from medseg.data.sampling import grid_slices

#: ``predict(tiles)``: ``[(y, x)]`` tile corners (padded image) -> ``(n, K, tile, tile)``
#: float32 probabilities, already multiplied by nothing (the band applies the weights).
#: Finished rows are divided and handed out this many at a time (bounds the temporaries).
CHUNK_ROWS = 64

BatchPredictor = Callable[[list[tuple[int, int]]], np.ndarray]


@dataclass(frozen=True)
class TileGrid:
    """The sliding-window tiles of an image ``(height, width)``.

    Attributes:
        shape: the image ``(H, W)``.
        tile: tile side (pixels).
        pad: ``(top, left)`` zero padding when an axis is shorter than the tile.
        rows, cols: tile starts along each axis of the padded image (``grid_slices``).
    """

    shape: tuple[int, int]
    tile: int
    pad: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @classmethod
    def build(cls, shape: tuple[int, int], tile: int, overlap: float) -> TileGrid:
        """The grid ``sliding_window_inference`` uses for ``shape`` (after its padding).

        Example:
            >>> TileGrid.build((10, 3), 4, 0.5).rows, TileGrid.build((10, 3), 4, 0.5).pad
            ((0, 2, 4, 6), (0, 0))
        """
        padded = tuple(max(n, tile) for n in shape)
        pad = tuple((p - n) // 2 for n, p in zip(shape, padded, strict=True))
        starts = [
            tuple(dict.fromkeys(s[0].start for s in grid_slices((n,), (tile,), overlap=overlap)))
            for n in padded
        ]
        return cls(
            shape=(int(shape[0]), int(shape[1])),
            tile=int(tile),
            pad=(int(pad[0]), int(pad[1])),
            rows=starts[0],
            cols=starts[1],
        )

    @property
    def padded(self) -> tuple[int, int]:
        """The padded image shape."""
        return (max(self.shape[0], self.tile), max(self.shape[1], self.tile))

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)


def _band_rows(grid: TileGrid, i: int) -> int:
    """Rows finished once grid row ``i`` is added: up to the next row's start (or the end)."""
    return grid.rows[i + 1] if i + 1 < len(grid.rows) else grid.padded[0]


def blend_in_bands(
    grid: TileGrid,
    predict: BatchPredictor,
    weight: np.ndarray,
    *,
    num_classes: int,
    batch_size: int,
    keep_tile: Callable[[int, int], bool] = lambda y, x: True,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Blend the grid's tiles band by band; yield finished rows of the image, top to bottom.

    Args:
        grid: the tiles (``TileGrid.build``).
        predict: ``[(y, x)]`` tile corners in the padded image -> ``(n, K, tile, tile)``
            float32 probabilities.
        weight: ``(tile, tile)`` float32 blending weights (``gaussian_importance``).
        num_classes: ``K``.
        batch_size: tiles per ``predict`` call (a call never spans two grid rows).
        keep_tile: ``(y, x) -> bool``: predict this tile (False: skipped, e.g. glass).
        on_batch: called with the number of tiles of each predicted batch (progress).

    Yields:
        ``(y0, probs)``: ``probs`` ``(K, r, W)`` float32, rows ``y0 .. y0 + r`` of the
        unpadded image; 0 in every class where no predicted tile covers a pixel. The rows
        of all yields together are ``0 .. H`` exactly once, in order.
    """
    t = grid.tile
    width = grid.padded[1]
    acc = np.zeros((num_classes, t, width), dtype=np.float32)
    wsum = np.zeros((t, width), dtype=np.float32)
    top = 0  # the padded-image row of the band's first row
    for i, y in enumerate(grid.rows):
        corners = [(y, x) for x in grid.cols if keep_tile(y, x)]
        for start in range(0, len(corners), batch_size):
            batch = corners[start : start + batch_size]
            probs = predict(batch)
            for (_, x), p in zip(batch, probs, strict=True):
                acc[:, y - top : y - top + t, x : x + t] += p * weight
                wsum[y - top : y - top + t, x : x + t] += weight
            if on_batch is not None:
                on_batch(len(batch))
        done = _band_rows(grid, i) - top
        for r0 in range(0, done, CHUNK_ROWS):  # in chunks: temporaries stay small
            r1 = min(r0 + CHUNK_ROWS, done)
            out = np.divide(acc[:, r0:r1], wsum[r0:r1], out=np.zeros_like(acc[:, r0:r1]),
                            where=wsum[r0:r1] > 0)  # fmt: skip
            rows = _unpadded(grid, top + r0, out)
            if rows is not None:
                yield rows
        _shift_up(acc, wsum, done)
        top += done


def _shift_up(acc: np.ndarray, wsum: np.ndarray, done: int) -> None:
    """Move band rows ``done ..`` to the top, zero the rest (chunk by chunk, no full copy)."""
    t = wsum.shape[0]
    step = max(1, min(done, CHUNK_ROWS))  # chunks of at most ``done`` rows never overlap
    for r0 in range(0, t - done, step):
        r1 = min(r0 + step, t - done)
        acc[:, r0:r1] = acc[:, r0 + done : r1 + done]
        wsum[r0:r1] = wsum[r0 + done : r1 + done]
    acc[:, t - done :] = 0
    wsum[t - done :] = 0


def _unpadded(grid: TileGrid, top: int, out: np.ndarray) -> tuple[int, np.ndarray] | None:
    """Rows ``top ..`` of the padded image -> ``(y0, rows)`` of the image, or None if all
    padding."""
    (py, px), (h, w) = grid.pad, grid.shape
    start, stop = max(top, py), min(top + out.shape[1], py + h)
    if stop <= start:
        return None
    return start - py, out[:, start - top : stop - top, px : px + w]
