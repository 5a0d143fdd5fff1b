"""The OpenSlide backend of ``medseg.io.slide``: vendor formats (SVS, NDPI, MRXS, ...).

OpenSlide's ``read_region`` takes level-0 coordinates and returns RGBA; here regions are
given in pixels of the level read, and RGBA becomes RGB composited on ``fill`` (transparent
pixels, e.g. areas a scanner skipped, become ``fill``). Install with
``pip install medseg[pathology]`` (``openslide-python`` + ``openslide-bin``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ImageIOError
from medseg.io.slide import PATHOLOGY_EXTRA, Slide, SlideLevel

__all__ = ["OpenSlideSlide", "import_openslide", "open_openslide"]


def import_openslide() -> Any:
    """The ``openslide`` module; ImageIOError naming the install command when missing."""
    try:
        import openslide
    except (ImportError, OSError) as err:
        raise ImageIOError(
            f"OpenSlide is not installed ({err}); install it with '{PATHOLOGY_EXTRA}'"
        ) from err
    return openslide


class OpenSlideSlide(Slide):
    """A slide read with OpenSlide (see the module docstring)."""

    def __init__(self, path: Path, handle: Any, *, mpp: float | None) -> None:
        self._handle = handle
        levels = tuple(
            SlideLevel((int(h), int(w)), float(d))
            for (w, h), d in zip(handle.level_dimensions, handle.level_downsamples, strict=True)
        )
        super().__init__(
            path, backend="openslide", levels=levels, mpp=mpp, channels=3, dtype=np.uint8
        )

    def _read(self, level: int, y: int, x: int, h: int, w: int, fill: int) -> np.ndarray:
        downsample = self.levels[level].downsample
        location = (round(x * downsample), round(y * downsample))
        try:
            rgba = np.asarray(self._handle.read_region(location, level, (w, h)))
        except Exception as err:  # openslide.OpenSlideError and decoder errors
            raise ImageIOError(
                f"{self.path}: cannot read level {level} region at (y={y}, x={x}): {err}"
            ) from err
        alpha_u8 = rgba[..., 3]
        if alpha_u8.min() == 255:  # opaque: the common case, no arithmetic
            return np.ascontiguousarray(rgba[..., :3])
        alpha = alpha_u8[..., None].astype(np.float32) / 255.0
        out = rgba[..., :3].astype(np.float32) * alpha + float(fill) * (1.0 - alpha)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def close(self) -> None:
        self._handle.close()


def open_openslide(path: Path, *, mpp: float | None = None) -> OpenSlideSlide:
    """Open a slide with OpenSlide.

    Raises:
        ImageIOError: OpenSlide missing (names the install command), or a file it cannot read.
    """
    openslide = import_openslide()
    try:
        handle = openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError as err:
        raise ImageIOError(f"{path}: not a slide format OpenSlide reads (corrupt?)") from err
    except (openslide.OpenSlideError, OSError) as err:
        raise ImageIOError(f"{path}: OpenSlide cannot read the slide (corrupt?): {err}") from err
    if mpp is None:
        mpp = _property_mpp(handle, openslide)
    return OpenSlideSlide(path, handle, mpp=mpp)


def _property_mpp(handle: Any, openslide: Any) -> float | None:
    values = []
    for key in (openslide.PROPERTY_NAME_MPP_X, openslide.PROPERTY_NAME_MPP_Y):
        try:
            values.append(float(handle.properties[key]))
        except (KeyError, ValueError):
            return None
    if not all(v > 0 for v in values):
        return None
    return float(values[0])
