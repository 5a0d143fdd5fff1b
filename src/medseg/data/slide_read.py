"""Reading a whole-slide tile at a requested resolution (µm per pixel).

``read_tile(slide, y, x, mpp=1.0, tile_size=512)`` returns the ``tile_size``-square tile whose
top-left corner is level-0 pixel ``(y, x)`` (floats allowed) and whose pixels are ``mpp``
microns wide. It reads the **coarsest level still at least as fine** as ``mpp`` (so it never
upsamples unless level 0 itself is coarser) and resamples by the remaining factor ``f``:

* RGB: the mean of each ``f x f`` block (``f`` an integer and the corner on the level's pixel
  grid: exact block means, rounded half to even like ``numpy.rint`` and medseg's pyramid
  writer); otherwise area averaging over a fractional box (Pillow's ``BOX`` filter; bilinear
  when upsampling);
* labels: nearest neighbour, the level pixel under each tile pixel's centre (never a mix of
  labels). A label slide's own pyramid level is used where one matches ``mpp``, so its
  downsampling (medseg writes the block mode) applies there.

Parts of the tile beyond the slide get the slide's fill (255 for RGB glass, 0 for labels).
"""

from __future__ import annotations

import math

import numpy as np

from medseg.errors import ConfigError
from medseg.io.slide import Slide

__all__ = ["level_for", "read_tile"]


def read_tile(
    slide: Slide,
    y: float,
    x: float,
    *,
    mpp: float,
    tile_size: int,
    base_mpp: float | None = None,
    is_label: bool | None = None,
) -> np.ndarray:
    """The ``(tile_size, tile_size, C)`` tile at level-0 ``(y, x)`` resampled to ``mpp``
    (``(tile_size, tile_size)`` for labels); see the module docstring.

    Args:
        slide: the slide.
        y, x: level-0 pixel coordinates of the tile's top-left corner.
        mpp: the tile's microns per pixel.
        tile_size: tile side in pixels.
        base_mpp: the slide's level-0 µm per pixel (default ``slide.mpp``; a label slide
            stored at a lower resolution than its image passes the image's mpp times its
            downsample).
        is_label: nearest-neighbour resampling and a 2D result (default: one channel).

    Raises:
        ConfigError: neither ``base_mpp`` nor ``slide.mpp`` is known (pass ``--mpp``).
    """
    base = slide.mpp if base_mpp is None else base_mpp
    if base is None:
        raise ConfigError(
            f"{slide.path}: the slide does not record its microns per pixel; pass --mpp "
            "(mpp= in Python)"
        )
    is_label = slide.channels == 1 if is_label is None else is_label
    level = level_for(slide, base, mpp)
    ds = slide.levels[level].downsample
    f = mpp / (base * ds)  # level pixels per tile pixel
    ly, lx = y / ds, x / ds
    if _integer(f) and _integer(ly) and _integer(lx):
        step = round(f)
        region = slide.read_region(level, round(ly), round(lx), tile_size * step, tile_size * step)
        out = _block_reduce(region, step, is_label)
    else:
        out = _resample(slide, level, ly, lx, f, tile_size, is_label)
    return out[..., 0] if is_label else out


def level_for(slide: Slide, base_mpp: float, mpp: float) -> int:
    """The coarsest level of ``slide`` whose pixels are at most ``mpp`` µm (level 0 if none).

    Example:
        >>> from medseg.data.slide_array import ArraySlide
        >>> s = ArraySlide(np.zeros((16, 16, 3), np.uint8), mpp=0.5, downsamples=(1, 2, 4))
        >>> level_for(s, 0.5, 1.0), level_for(s, 0.5, 1.5), level_for(s, 0.5, 0.25)
        (1, 1, 0)
    """
    if not (math.isfinite(mpp) and mpp > 0):
        raise ConfigError(f"{slide.path}: target mpp must be a positive number, got {mpp!r}")
    best = 0
    for i, lv in enumerate(slide.levels):
        if (
            base_mpp * lv.downsample <= mpp * 1.0001
            and lv.downsample >= slide.levels[best].downsample
        ):
            best = i
    return best


def _integer(value: float) -> bool:
    return abs(value - round(value)) < 1e-6


def _block_reduce(region: np.ndarray, step: int, is_label: bool) -> np.ndarray:
    """``(H * step, W * step, C)`` -> ``(H, W, C)``: block means (RGB) or the pixel under each
    block's centre (labels)."""
    if step == 1:
        return region
    if is_label:
        return region[step // 2 :: step, step // 2 :: step]
    h, w = region.shape[0] // step, region.shape[1] // step
    mean = region.astype(np.float64).reshape(h, step, w, step, -1).mean(axis=(1, 3))
    if region.dtype.kind in "iu":
        return np.rint(mean).astype(region.dtype)
    return mean.astype(region.dtype)


def _resample(
    slide: Slide, level: int, ly: float, lx: float, f: float, size: int, is_label: bool
) -> np.ndarray:
    """A tile whose corner or factor is fractional: read the bounding region, then resample."""
    extent = size * f
    r0, c0 = math.floor(ly), math.floor(lx)
    r1, c1 = math.ceil(ly + extent), math.ceil(lx + extent)
    region = slide.read_region(level, r0, c0, r1 - r0, c1 - c0)
    if is_label:
        centres = (np.arange(size) + 0.5) * f
        rows = np.clip(np.floor(ly - r0 + centres).astype(int), 0, region.shape[0] - 1)
        cols = np.clip(np.floor(lx - c0 + centres).astype(int), 0, region.shape[1] - 1)
        return region[rows][:, cols]
    from PIL import Image as PILImage

    box = (lx - c0, ly - r0, lx - c0 + extent, ly - r0 + extent)
    method = PILImage.Resampling.BOX if f >= 1 else PILImage.Resampling.BILINEAR
    if region.dtype == np.uint8 and region.shape[2] in (3, 4):
        pil = PILImage.fromarray(np.ascontiguousarray(region))
        return np.asarray(pil.resize((size, size), method, box=box))
    channels = []  # other types: one float image per channel
    for c in range(region.shape[2]):
        pil = PILImage.fromarray(region[..., c].astype(np.float32), mode="F")
        channels.append(np.asarray(pil.resize((size, size), method, box=box)))
    return np.stack(channels, axis=-1).astype(region.dtype)
