"""Write a tiled, pyramidal (OME-)TIFF from tiles, with bounded memory.

Level 0 is streamed tile by tile into the file (tifffile accepts an iterator of tiles); each
tile is also halved into a scratch ``np.memmap`` on disk holding level 1, which is then
streamed the same way into level 2, and so on, until a level fits in one tile. Memory holds a
few tiles, whatever the slide size; the scratch files (a quarter of level 0, uncompressed,
at most) live beside the output and are removed at the end.

Layouts:

* ``"ome"`` (default): OME-TIFF, the lower levels as SubIFDs of level 0 (Bio-Formats,
  QuPath, tifffile, napari). OpenSlide sees only level 0 of such a file.
* ``"pages"``: every level a top-level page, the lower ones marked "reduced"
  (``NewSubfileType = 1``), like SVS: OpenSlide reads it as a generic tiled TIFF pyramid.

Both record the level-0 resolution (TIFF XResolution in pixels per cm) and OME-XML
``PhysicalSizeX`` for ``"ome"``, so ``open_slide`` finds the mpp.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.errors import ConfigError
from medseg.fileutil import atomic_path, check_writable
from medseg.io.slide_resize import Resample, block_reduce, default_resample

__all__ = ["TileSource", "level_shapes", "write_pyramidal_tiff"]

TileSource = (
    Iterable[tuple[tuple[int, int], np.ndarray]] | Callable[[int, int, int, int], np.ndarray]
)
Layout = Literal["ome", "pages"]


def level_shapes(
    shape: tuple[int, int], tile: int, levels: int | None = None
) -> list[tuple[int, int]]:
    """Shapes of the pyramid: each level half the previous (rounded up), until one fits a tile.

    Example:
        >>> level_shapes((1000, 600), 256)
        [(1000, 600), (500, 300), (250, 150)]
    """
    shapes = [(int(shape[0]), int(shape[1]))]
    while max(shapes[-1]) > tile and (levels is None or len(shapes) < levels):
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def _grid(shape: tuple[int, int], tile: int) -> Iterator[tuple[int, int, int, int]]:
    for y in range(0, shape[0], tile):
        for x in range(0, shape[1], tile):
            yield y, x, min(tile, shape[0] - y), min(tile, shape[1] - x)


def _source_tiles(
    tiles: TileSource, shape: tuple[int, int], tile: int, channels: int, dtype: np.dtype
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Level-0 tiles ``(y, x, (h, w, C) array)`` in row-major order, checked."""
    expected = _grid(shape, tile)
    if callable(tiles):
        for y, x, h, w in expected:
            yield y, x, _checked(tiles(y, x, h, w), (y, x, h, w), channels, dtype)
        return
    count = 0
    for (y, x), array in tiles:
        want = next(expected, None)
        if want is None or (int(y), int(x)) != want[:2]:
            where = "none (all tiles given)" if want is None else f"{want[:2]}"
            raise ConfigError(
                f"tile {count} is at {(int(y), int(x))}, expected {where}: give level-0 tiles "
                f"of {tile} x {tile} pixels in row-major order"
            )
        yield y, x, _checked(array, want, channels, dtype)
        count += 1
    missing = next(expected, None)
    if missing is not None:
        raise ConfigError(f"the tiles stopped after {count}; tile at {missing[:2]} is missing")


def _checked(
    array: np.ndarray, where: tuple[int, int, int, int], channels: int, dtype: np.dtype
) -> np.ndarray:
    y, x, h, w = where
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape != (h, w, channels):
        raise ConfigError(f"tile at {(y, x)} has shape {array.shape}, expected {(h, w, channels)}")
    return array.astype(dtype, copy=False)


def _halving(
    source: Iterator[tuple[int, int, np.ndarray]], target: np.ndarray | None, method: Resample
) -> Iterator[np.ndarray]:
    """Yield each tile for the writer, and store its half-size copy in ``target``."""
    for y, x, array in source:
        if target is not None:
            small = block_reduce(array, 2, method)
            target[y // 2 : y // 2 + small.shape[0], x // 2 : x // 2 + small.shape[1]] = small
        yield array if array.shape[2] > 1 else array[..., 0]


def _memmap_tiles(array: np.ndarray, tile: int) -> Iterator[tuple[int, int, np.ndarray]]:
    for y, x, h, w in _grid(array.shape[:2], tile):
        yield y, x, np.array(array[y : y + h, x : x + w])


def write_pyramidal_tiff(
    path: str | os.PathLike[str],
    shape: tuple[int, int],
    dtype: np.dtype | str,
    tiles: TileSource,
    *,
    channels: int,
    tile: int = 512,
    mpp: float | None = None,
    levels: int | None = None,
    compression: str | None = "zlib",
    overwrite: bool = False,
    photometric: Literal["rgb", "minisblack"] | None = None,
    resample: Resample | None = None,
    layout: Layout = "ome",
) -> list[tuple[int, int]]:
    """Write a tiled pyramidal TIFF from level-0 tiles without holding a level in memory.

    Args:
        path: output ``.tif``/``.ome.tif``; written atomically.
        shape: level-0 ``(height, width)`` in pixels.
        dtype: pixel type (``uint8`` for RGB and labels).
        tiles: an iterable of ``((y, x), array (h, w[, C]))`` level-0 tiles of ``tile`` pixels
            in row-major order (edge tiles smaller), or a callable ``read(y, x, h, w)``
            returning that array.
        channels: 3 (RGB) or 1 (labels, grey).
        tile: tile edge in pixels, a multiple of 16.
        mpp: microns per pixel at level 0 (recorded in the file); None: not recorded.
        levels: number of levels including level 0; None: halve until a level fits one tile.
        compression: ``"zlib"``, ``"jpeg"`` (RGB uint8, lossy), ``"lzw"``, ``"zstd"`` or
            None/``"none"``.
        overwrite: replace an existing ``path``.
        photometric: default ``"rgb"`` for 3 channels, ``"minisblack"`` otherwise.
        resample: how lower levels are made: ``"mode"`` (labels), ``"mean"`` or
            ``"nearest"``; None: mode for one integer channel, mean otherwise.
        layout: ``"ome"`` (SubIFDs) or ``"pages"`` (see the module docstring).

    Returns:
        The level shapes written, level 0 first.

    Raises:
        OverwriteError: ``path`` exists and ``overwrite`` is False.
        ConfigError: bad shape, tile, channels, mpp, levels, or tiles that do not match.
    """
    path = check_writable(path, overwrite=overwrite)
    dtype = np.dtype(dtype)
    _check_arguments(shape, tile, channels, mpp, levels, layout)
    shapes = level_shapes(shape, tile, levels)
    method = resample or default_resample(channels, dtype)
    compression = None if compression in (None, "none") else compression
    options = {
        "tile": (tile, tile),
        "dtype": dtype,
        "compression": compression,
        "photometric": photometric or ("rgb" if channels == 3 else "minisblack"),
        "channels": channels,
    }
    nbytes = shape[0] * shape[1] * channels * dtype.itemsize
    with (
        atomic_path(path) as tmp,
        tempfile.TemporaryDirectory(prefix=".medseg-pyramid-", dir=path.parent) as scratch,
    ):
        import tifffile

        with tifffile.TiffWriter(tmp, bigtiff=nbytes > 2**31, ome=layout == "ome") as writer:
            source = _source_tiles(tiles, shapes[0], tile, channels, dtype)
            first = _level0_options(mpp, channels, len(shapes), layout)
            _write_levels(writer, source, shapes, Path(scratch), options, first, method)
    return shapes


def _write_levels(
    writer: Any,
    source: Iterator[tuple[int, int, np.ndarray]],
    shapes: list[tuple[int, int]],
    scratch: Path,
    options: dict,
    first: dict,
    method: Resample,
) -> None:
    """Stream level ``i`` into the file while halving it into a scratch memmap (level i+1)."""
    channels = options["channels"]
    for i, level_shape in enumerate(shapes):
        below = None
        if i + 1 < len(shapes):
            below = np.memmap(
                scratch / f"level{i + 1}.raw",
                dtype=options["dtype"],
                mode="w+",
                shape=(*shapes[i + 1], channels),
            )
        writer.write(
            _halving(source, below, method),
            shape=level_shape if channels == 1 else (*level_shape, channels),
            **{k: v for k, v in options.items() if k != "channels"},
            **(first if i == 0 else {"subfiletype": 1}),
        )
        if below is not None:
            below.flush()
            source = _memmap_tiles(below, options["tile"][0])
        del below


def _level0_options(mpp: float | None, channels: int, n_levels: int, layout: Layout) -> dict:
    extra: dict = {}
    if layout == "ome":
        extra["subifds"] = n_levels - 1
        metadata: dict = {"axes": "YXS" if channels > 1 else "YX"}
        if mpp is not None:
            metadata.update(
                PhysicalSizeX=mpp, PhysicalSizeY=mpp, PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm"
            )
        extra["metadata"] = metadata
    else:
        extra["metadata"] = None
    if mpp is not None:
        extra["resolution"] = (1e4 / mpp, 1e4 / mpp)
        extra["resolutionunit"] = "CENTIMETER"
    return extra


def _check_arguments(
    shape: tuple[int, int],
    tile: int,
    channels: int,
    mpp: float | None,
    levels: int | None,
    layout: str,
) -> None:
    if len(shape) != 2 or min(int(s) for s in shape) < 1:
        raise ConfigError(f"slide shape must be (height, width) >= 1, got {shape}")
    if tile < 16 or tile % 16:
        raise ConfigError(f"tile must be a multiple of 16 (TIFF rule), got {tile}")
    if channels < 1:
        raise ConfigError(f"channels must be >= 1, got {channels}")
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise ConfigError(f"mpp must be a positive number of microns, got {mpp}")
    if levels is not None and levels < 1:
        raise ConfigError(f"levels must be >= 1, got {levels}")
    if layout not in ("ome", "pages"):
        raise ConfigError(f"layout must be 'ome' or 'pages', got {layout!r}")
