"""Block downsampling for slide pyramids and thumbnails, band by band (bounded memory)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from medseg.io.slide import Slide

__all__ = ["Resample", "block_reduce", "default_resample", "thumbnail"]

Resample = Literal["mean", "mode", "nearest"]
_BAND_ELEMENTS = 1 << 24  # values read per band for a thumbnail (~16 MB of uint8)


def default_resample(channels: int, dtype: np.dtype) -> Resample:
    """``"mode"`` for label images (one integer channel), ``"mean"`` otherwise.

    Example:
        >>> default_resample(1, np.dtype("uint8")), default_resample(3, np.dtype("uint8"))
        ('mode', 'mean')
    """
    return "mode" if channels == 1 and np.issubdtype(dtype, np.integer) else "mean"


def block_reduce(array: np.ndarray, factor: int, method: Resample) -> np.ndarray:
    """Downsample ``(h, w, C)`` by ``factor`` per axis to ``(ceil(h/f), ceil(w/f), C)``.

    A partial block at the bottom/right edge counts only its own pixels (it is padded by
    repeating the edge). ``mean`` rounds for integer types; ``mode`` takes the most frequent
    value of each block (ties: the first in raster order); ``nearest`` the top-left pixel.

    Example:
        >>> block_reduce(np.arange(4).reshape(2, 2, 1), 2, "mean")[..., 0]
        array([[2]])
    """
    if factor == 1:
        return array
    if method == "nearest":
        return np.ascontiguousarray(array[::factor, ::factor])
    h, w, c = array.shape
    ph, pw = -h % factor, -w % factor
    if ph or pw:
        array = np.pad(array, ((0, ph), (0, pw), (0, 0)), mode="edge")
    hb, wb = array.shape[0] // factor, array.shape[1] // factor
    blocks = array.reshape(hb, factor, wb, factor, c)
    if method == "mean":
        mean = blocks.mean(axis=(1, 3), dtype=np.float64)
        if np.issubdtype(array.dtype, np.integer):
            mean = np.rint(mean)
        return mean.astype(array.dtype)
    values = blocks.transpose(0, 2, 4, 1, 3).reshape(hb, wb, c, factor * factor)
    counts = np.zeros(values.shape, dtype=np.int32)
    for k in range(values.shape[-1]):
        counts[..., k] = (values == values[..., k : k + 1]).sum(axis=-1)
    best = counts.argmax(axis=-1)[..., None]
    return np.take_along_axis(values, best, axis=-1)[..., 0]


def _resize_nearest(array: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    rows = np.minimum((np.arange(out_h) + 0.5) * array.shape[0] / out_h, array.shape[0] - 1)
    cols = np.minimum((np.arange(out_w) + 0.5) * array.shape[1] / out_w, array.shape[1] - 1)
    return array[rows.astype(np.intp)][:, cols.astype(np.intp)]


def thumbnail(slide: Slide, max_size: int) -> tuple[np.ndarray, float]:
    """See ``Slide.thumbnail``: band-wise block reduction of the best level, then resize."""
    h0, w0 = slide.levels[0].shape
    target = max(max(h0, w0) / max_size, 1.0)
    out_h, out_w = max(1, round(h0 / target)), max(1, round(w0 / target))
    candidates = [i for i, lv in enumerate(slide.levels) if lv.downsample <= target * 1.0001]
    level = max(candidates, key=lambda i: slide.levels[i].downsample) if candidates else 0
    lh, lw = slide.levels[level].shape
    factor = max(1, int(target / slide.levels[level].downsample))
    method: Resample = (
        "nearest" if default_resample(slide.channels, slide.dtype) == "mode" else "mean"
    )
    band = factor * max(1, _BAND_ELEMENTS // max(1, lw * slide.channels * factor))
    parts = [
        block_reduce(slide.read_region(level, y, 0, min(band, lh - y), lw), factor, method)
        for y in range(0, lh, band)
    ]
    reduced = np.concatenate(parts, axis=0)
    downsample = w0 / out_w if w0 >= h0 else h0 / out_h  # exact along the longer side
    return _resize_nearest(reduced, out_h, out_w), float(downsample)
