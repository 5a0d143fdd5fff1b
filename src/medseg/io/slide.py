"""Lazy whole-slide images (pathology): open a pyramid, read regions, never decode it all.

A whole-slide image is a pyramid of levels: level 0 at full resolution (e.g. 0.25 um per
pixel, 100,000 x 80,000 pixels), each further level a downsampled copy. ``open_slide`` picks a
backend from the file name:

* ``tifffile`` for ``.tif``/``.tiff``/``.ome.tif(f)``: OME/SubIFD pyramids
  (``series[0].levels``) and SVS-like pyramids of separate, ever smaller pages; regions are
  read through the zarr store of ``tif.aszarr()``, which decodes only the tiles they touch;
* ``openslide`` for vendor formats (``.svs .ndpi .mrxs .scn .vms .vmu .bif``), and as the
  fallback for a vendor ``.tif`` that tifffile cannot read.

Coordinates are ``(y, x)`` in pixels of the level read; arrays are ``(h, w, channels)``
(``channels`` = 3 for RGB, 1 for label slides, kept as the last axis). Parts of a region
outside the slide are filled with ``fill`` (default 255 for RGB: white glass; 0 for labels).

Example:
    >>> with open_slide("slide.ome.tif") as slide:  # doctest: +SKIP
    ...     tile = slide.read_region(slide.level_for_mpp(1.0), 0, 0, 512, 512)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from medseg.errors import ConfigError, ImageIOError
from medseg.io.limits import MAX_IMAGE_GB_ENV, max_image_bytes

__all__ = [
    "OPENSLIDE_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "Slide",
    "SlideLevel",
    "open_slide",
    "slide_backend_for",
]

OPENSLIDE_EXTENSIONS = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif")
TIFF_EXTENSIONS = (".tif", ".tiff")  # .ome.tif(f) end the same way
BACKENDS = ("tifffile", "openslide")
PATHOLOGY_EXTRA = "pip install medseg[pathology]"


@dataclass(frozen=True)
class SlideLevel:
    """One level of a pyramid.

    Attributes:
        shape: ``(height, width)`` in pixels.
        downsample: level-0 pixels per pixel of this level (1.0 for level 0).
    """

    shape: tuple[int, int]
    downsample: float


class Slide:
    """A lazily read whole-slide image; backends subclass it and implement ``_read``.

    Attributes:
        path: the file.
        backend: ``"tifffile"`` or ``"openslide"``.
        levels: the pyramid, level 0 first, ever coarser.
        mpp: microns per pixel at level 0; None when the file does not say (pass ``mpp=``).
        channels: 3 for RGB slides, 1 for label or grey slides.
        dtype: the pixel type.
    """

    def __init__(
        self,
        path: Path,
        *,
        backend: str,
        levels: tuple[SlideLevel, ...],
        mpp: float | None,
        channels: int,
        dtype: np.dtype,
    ) -> None:
        self.path = Path(path)
        self.backend = backend
        self.levels = tuple(levels)
        self.mpp = mpp
        self.channels = int(channels)
        self.dtype = np.dtype(dtype)

    # ------------------------------------------------------------------ for backends

    def _read(self, level: int, y: int, x: int, h: int, w: int, fill: int) -> np.ndarray:
        """The region ``(h, w, channels)``, entirely inside the level (h, w >= 1); pixels the
        file marks as missing (transparent) get ``fill``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file (the slide cannot be read afterwards)."""

    # ------------------------------------------------------------------ public API

    @property
    def default_fill(self) -> int:
        """255 (white glass) for RGB slides, 0 (background) for label/grey slides."""
        return 255 if self.channels >= 3 else 0

    def check_level(self, level: int) -> SlideLevel:
        """The level ``level``; ConfigError naming the valid range when out of range."""
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
            raise ConfigError(f"{self.path}: level must be an integer, got {level!r}")
        if not 0 <= level < len(self.levels):
            raise ConfigError(
                f"{self.path}: level {level} is out of range; valid levels are "
                f"0..{len(self.levels) - 1}"
            )
        return self.levels[int(level)]

    def read_region(
        self, level: int, y: int, x: int, h: int, w: int, *, fill: int | None = None
    ) -> np.ndarray:
        """Read ``h x w`` pixels at ``(y, x)`` of ``level`` (pixels of that level).

        Only the tiles the region touches are decoded. Parts outside the slide get ``fill``.

        Returns:
            ``(h, w, channels)`` array of ``self.dtype``.

        Raises:
            ConfigError: level out of range, negative ``h``/``w``, or a region larger than
                the image budget of ``medseg.io.limits`` (``$MEDSEG_MAX_IMAGE_GB``, 8 GiB).
        """
        lv = self.check_level(level)
        y, x, h, w = int(y), int(x), int(h), int(w)
        if h < 0 or w < 0:
            raise ConfigError(f"{self.path}: region size must be >= 0, got {h} x {w}")
        nbytes = h * w * self.channels * self.dtype.itemsize
        if nbytes > max_image_bytes():
            raise ConfigError(
                f"{self.path}: a {h} x {w} region is {nbytes / 2**30:.3g} GiB, more than the "
                f"{max_image_bytes() / 2**30:.3g} GiB budget ({MAX_IMAGE_GB_ENV}); read it in "
                "tiles or from a coarser level"
            )
        fill = self.default_fill if fill is None else fill
        out = np.full((h, w, self.channels), fill, dtype=self.dtype)
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + h, lv.shape[0]), min(x + w, lv.shape[1])
        if y1 > y0 and x1 > x0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._read(
                int(level), y0, x0, y1 - y0, x1 - x0, fill
            )
        return out

    def level_mpp(self, level: int) -> float | None:
        """Microns per pixel of ``level`` (None when the slide has no mpp)."""
        lv = self.check_level(level)
        return None if self.mpp is None else self.mpp * lv.downsample

    def level_for_mpp(self, mpp: float) -> int:
        """The level to read for a target resolution of ``mpp`` microns per pixel.

        The coarsest level that is still at least as fine as ``mpp`` (tolerance 1e-4), so a
        caller downsamples as little as possible and never upsamples unless even level 0 is
        coarser than ``mpp`` (then level 0).

        Raises:
            ConfigError: ``mpp`` not positive, or the slide has no mpp (pass ``--mpp``).
        """
        if not (isinstance(mpp, (int, float)) and math.isfinite(mpp) and mpp > 0):
            raise ConfigError(f"{self.path}: target mpp must be a positive number, got {mpp!r}")
        if self.mpp is None:
            raise ConfigError(
                f"{self.path}: the slide does not record its microns per pixel (mpp), so "
                f"level for mpp {mpp:g} is unknown; pass --mpp (mpp= in Python)"
            )
        best = 0
        for i, lv in enumerate(self.levels):
            if self.mpp * lv.downsample <= mpp * 1.0001:
                best = i if lv.downsample >= self.levels[best].downsample else best
        return best

    def thumbnail(self, max_size: int = 1024) -> tuple[np.ndarray, float]:
        """The whole slide, its longer side ``max_size`` pixels (or level 0 if smaller).

        Read from the coarsest level still at least that large, row band by row band (a
        single-level giant slide is never decoded whole), block-averaged (nearest for
        label slides) and resized.

        Returns:
            ``(image (h, w, channels), downsample relative to level 0)``.
        """
        from medseg.io.slide_resize import thumbnail

        if int(max_size) < 1:
            raise ConfigError(f"{self.path}: thumbnail max_size must be >= 1, got {max_size}")
        return thumbnail(self, int(max_size))

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        shapes = ", ".join(f"{lv.shape[0]}x{lv.shape[1]}" for lv in self.levels)
        return (
            f"{type(self).__name__}({str(self.path)!r}, backend={self.backend!r}, "
            f"levels=[{shapes}], mpp={self.mpp}, channels={self.channels}, dtype={self.dtype})"
        )


def slide_backend_for(path: str | os.PathLike[str]) -> str:
    """The backend a file name calls for: ``"openslide"`` or ``"tifffile"``.

    Raises:
        ImageIOError: an extension no backend reads.

    Example:
        >>> slide_backend_for("a.svs"), slide_backend_for("b.ome.tiff")
        ('openslide', 'tifffile')
    """
    name = Path(path).name.lower()
    if name.endswith(OPENSLIDE_EXTENSIONS):
        return "openslide"
    if name.endswith(TIFF_EXTENSIONS):
        return "tifffile"
    raise ImageIOError(
        f"{path}: not a whole-slide image file; expected one of "
        f"{', '.join(TIFF_EXTENSIONS + OPENSLIDE_EXTENSIONS)}"
    )


def open_slide(
    path: str | os.PathLike[str], *, mpp: float | None = None, backend: str | None = None
) -> Slide:
    """Open a whole-slide image lazily (nothing is decoded until ``read_region``).

    Args:
        path: the slide file.
        mpp: microns per pixel at level 0; overrides the file's value or supplies a missing
            one. None: the file's value, or ``slide.mpp = None`` when it has none.
        backend: ``"tifffile"`` or ``"openslide"``; None: chosen by the file name
            (``slide_backend_for``); a ``.tif`` tifffile cannot read is tried with OpenSlide.

    Raises:
        ImageIOError: missing, unreadable or corrupt file; a stripped (untiled) TIFF too
            large to decode; OpenSlide needed but not installed.
        ConfigError: unknown backend or a non-positive ``mpp``.
    """
    path = Path(path)
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise ConfigError(f"{path}: mpp must be a positive number of microns, got {mpp!r}")
    if not path.is_file():
        raise ImageIOError(f"{path}: no such slide file")
    chosen = backend or slide_backend_for(path)
    if chosen == "openslide":
        from medseg.io.slide_openslide import open_openslide

        return open_openslide(path, mpp=mpp)
    from medseg.io.slide_tifffile import SlideTooLargeError, open_tifffile

    try:
        return open_tifffile(path, mpp=mpp)
    except ImageIOError as err:
        vendor_fallback = backend is None and not isinstance(err, SlideTooLargeError)
        if not vendor_fallback or not _openslide_available():
            raise
        from medseg.io.slide_openslide import open_openslide

        try:
            return open_openslide(path, mpp=mpp)
        except ImageIOError:
            raise err from None


def _openslide_available() -> bool:
    try:
        import openslide  # noqa: F401
    except (ImportError, OSError):
        return False
    return True
