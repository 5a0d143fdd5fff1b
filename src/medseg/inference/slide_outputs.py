"""What a streamed slide prediction turns into: label tiles for the writer, and a heatmap.

The band blender (``slide_stream.blend_in_bands``) yields finished rows of probabilities in
any heights; :func:`label_tiles` turns them into the row-major ``((y, x), tile)`` stream that
``medseg.io.slide_writer.write_pyramidal_tiff`` consumes (one row of output tiles in memory),
and feeds the foreground probability to a :class:`Heatmap` on the way. The heatmap's block
sums live in a float32 memory map on disk, so memory stays bounded on any slide.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

Tiles = Iterator[tuple[tuple[int, int], np.ndarray]]


class Heatmap:
    """Block means of the foreground probability, ``downsample`` x ``downsample`` pixels per
    heatmap pixel (the last row/column of blocks averages the pixels it has).

    Args:
        shape: the image ``(H, W)``.
        downsample: integer block side.
        folder: where the temporary memory map lives (deleted by ``close``).
    """

    def __init__(self, shape: tuple[int, int], downsample: int, folder: Path) -> None:
        self.shape = shape
        self.downsample = int(downsample)
        self.out_shape = tuple(-(-n // self.downsample) for n in shape)
        self._file = tempfile.NamedTemporaryFile(dir=folder, prefix=".heatmap-", suffix=".f32")
        self.sums = np.memmap(self._file, dtype=np.float32, mode="w+", shape=self.out_shape)
        self._starts = np.arange(0, shape[1], self.downsample)

    def add(self, y0: int, foreground: np.ndarray) -> None:
        """Add rows ``y0 ..`` of the ``(r, W)`` foreground probability."""
        d = self.downsample
        cols = np.add.reduceat(foreground, self._starts, axis=1)
        for block in range(y0 // d, (y0 + foreground.shape[0] - 1) // d + 1):
            lo, hi = max(block * d - y0, 0), min((block + 1) * d - y0, foreground.shape[0])
            self.sums[block] += cols[lo:hi].sum(axis=0)

    def tiles(self, tile: int) -> Tiles:
        """Row-major ``((y, x), uint8 tile)``: the block means scaled to 0..255."""
        d, (h, w) = self.downsample, self.shape
        rows = (
            np.minimum(np.arange(self.out_shape[0]) * d + d, h) - np.arange(self.out_shape[0]) * d
        )
        cols = (
            np.minimum(np.arange(self.out_shape[1]) * d + d, w) - np.arange(self.out_shape[1]) * d
        )
        for y in range(0, self.out_shape[0], tile):
            band = np.asarray(self.sums[y : y + tile])
            area = rows[y : y + tile, None] * cols[None, :]
            band = np.clip(np.rint(band / area * 255), 0, 255).astype(np.uint8)
            for x in range(0, self.out_shape[1], tile):
                yield (y, x), band[:, x : x + tile, None]

    def close(self) -> None:
        """Delete the memory map."""
        del self.sums
        self._file.close()


def label_tiles(
    rows: Iterator[tuple[int, np.ndarray]],
    *,
    width: int,
    tile: int,
    values: np.ndarray,
    tissue_rows: Callable[[int, int], np.ndarray],
    heatmap: Heatmap | None = None,
) -> Tiles:
    """Row-major ``((y, x), (h, w, 1) uint8)`` label tiles from streamed probability rows.

    Args:
        rows: ``(y0, probs (K, r, W))`` in order (``blend_in_bands``).
        width: ``W``.
        tile: the writer's tile side.
        values: ``(K,)`` label value of each class.
        tissue_rows: ``(y0, r) -> (r, W)`` bool, tissue at those rows; glass gets label 0 and
            probability 0.
        heatmap: receives the foreground probability (``1 - p(class 0)``) of every row.
    """
    buffer = np.zeros((tile, width), dtype=np.uint8)
    filled, top = 0, 0
    for y0, probs in rows:
        tissue = tissue_rows(y0, probs.shape[1])
        labels = values[np.argmax(probs, axis=0)] * tissue
        if heatmap is not None:
            covered = probs.sum(axis=0)  # 0 where no tile was predicted, else 1
            heatmap.add(y0, (covered - probs[0]) * tissue)
        start = 0
        while start < labels.shape[0]:
            take = min(tile - filled, labels.shape[0] - start)
            buffer[filled : filled + take] = labels[start : start + take]
            filled, start = filled + take, start + take
            if filled == tile:
                yield from _row_of_tiles(buffer, top, tile)
                filled, top = 0, top + tile
    if filled:
        yield from _row_of_tiles(buffer[:filled], top, tile)


def _row_of_tiles(buffer: np.ndarray, top: int, tile: int) -> Tiles:
    for x in range(0, buffer.shape[1], tile):
        yield (top, x), buffer[:, x : x + tile, None].copy()
