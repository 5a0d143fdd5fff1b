"""A whole-slide image held in memory: a ``Slide`` over a NumPy array (small images, tests).

``ArraySlide(array, mpp=0.5, downsamples=(1, 2, 4))`` builds the pyramid by block averaging
(RGB) or by taking every ``f``-th pixel (labels), so code written for pyramidal files runs on
a picture already in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.errors import ConfigError
from medseg.io.slide import Slide, SlideLevel

__all__ = ["ArraySlide"]


class ArraySlide(Slide):
    """A ``Slide`` over an ``(H, W, C)`` or ``(H, W)`` array.

    Args:
        array: level-0 pixels; ``(H, W)`` becomes one channel.
        mpp: microns per pixel at level 0 (None: unknown).
        downsamples: integer level downsamples, starting with 1.
        is_label: labels are subsampled (``array[f//2::f, f//2::f]``) instead of averaged.

    Example:
        >>> s = ArraySlide(np.zeros((8, 6, 3), np.uint8), mpp=0.5, downsamples=(1, 2))
        >>> [lv.shape for lv in s.levels], s.read_region(1, 0, 0, 2, 2).shape
        ([(8, 6), (4, 3)], (2, 2, 3))
    """

    def __init__(
        self,
        array: np.ndarray,
        *,
        mpp: float | None = 0.5,
        downsamples: Sequence[int] = (1,),
        is_label: bool = False,
        path: str = "<memory>",
    ) -> None:
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3 or not downsamples or int(downsamples[0]) != 1:
            raise ConfigError(
                f"ArraySlide needs an (H, W[, C]) array and downsamples starting with 1, got "
                f"{array.shape} and {tuple(downsamples)}"
            )
        self._arrays = [_reduce(array, int(f), is_label) for f in downsamples]
        levels = tuple(
            SlideLevel((a.shape[0], a.shape[1]), float(f))
            for a, f in zip(self._arrays, downsamples, strict=True)
        )
        super().__init__(
            Path(path),
            backend="memory",
            levels=levels,
            mpp=mpp,
            channels=array.shape[2],
            dtype=array.dtype,
        )

    def _read(self, level: int, y: int, x: int, h: int, w: int, *_fill: int) -> np.ndarray:
        # the region is inside the level (``Slide.read_region`` fills the rest)
        return self._arrays[level][y : y + h, x : x + w].copy()


def _reduce(array: np.ndarray, factor: int, is_label: bool) -> np.ndarray:
    if factor == 1:
        return array
    if is_label:
        return array[factor // 2 :: factor, factor // 2 :: factor]
    h, w = array.shape[0] // factor, array.shape[1] // factor
    blocks = array[: h * factor, : w * factor].astype(np.float64)
    mean = blocks.reshape(h, factor, w, factor, -1).mean(axis=(1, 3))
    return np.rint(mean).astype(array.dtype) if array.dtype.kind in "iu" else mean
