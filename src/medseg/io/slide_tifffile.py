"""The tifffile backend of ``medseg.io.slide``: OME/SubIFD and page pyramids read via zarr.

Levels come from ``tif.series[0].levels`` (tifffile gathers OME SubIFD pyramids, SVS pages
and generic "reduced" pages of decreasing size into it). Each level is opened once as a zarr
array over ``tif.aszarr(series=0, level=i)``: slicing it decodes only the tiles touched.

Microns per pixel, the first found of: OME-XML ``PhysicalSizeX`` (with its unit), Aperio's
``MPP = 0.25`` in the ImageDescription, TIFF ``XResolution`` + ``ResolutionUnit`` (cm/inch).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ImageIOError
from medseg.io.slide import PATHOLOGY_EXTRA, Slide, SlideLevel

__all__ = ["MAX_STRIPPED_BYTES", "SlideTooLargeError", "TiffSlide", "open_tifffile", "tiff_mpp"]

# A stripped (untiled) TIFF page is decoded whole by most readers; above this refuse it.
MAX_STRIPPED_BYTES = 2 * 2**30

_UM_PER_UNIT = {
    "pm": 1e-6,
    "nm": 1e-3,
    "µm": 1.0,
    "um": 1.0,
    "\u03bcm": 1.0,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
}
_APERIO_MPP = re.compile(r"\bMPP\s*=\s*([0-9.eE+-]+)")


class SlideTooLargeError(ImageIOError):
    """A stripped (untiled) TIFF too large to decode; convert it to a tiled pyramid."""


class TiffSlide(Slide):
    """A slide read with tifffile + zarr (see the module docstring)."""

    def __init__(self, path: Path, tif: Any, *, mpp: float | None) -> None:
        series = tif.series[0]
        axes = series.axes.upper()
        if "Y" not in axes or "X" not in axes:
            raise ImageIOError(f"{path}: first TIFF series has axes {axes!r}, no Y and X")
        self._tif = tif
        self._axes = axes
        self._arrays: dict[int, Any] = {}
        shapes = [_yx(axes, lv.shape) for lv in series.levels]
        base = shapes[0]
        levels = tuple(SlideLevel(s, float((base[0] / s[0] + base[1] / s[1]) / 2)) for s in shapes)
        channel_axis = next((a for a in "SC" if a in axes), None)
        channels = 1 if channel_axis is None else series.shape[axes.index(channel_axis)]
        super().__init__(
            path,
            backend="tifffile",
            levels=levels,
            mpp=mpp,
            channels=channels,
            dtype=series.dtype,
        )

    def _array(self, level: int) -> Any:
        if level not in self._arrays:
            try:
                import zarr
            except ImportError as err:
                raise ImageIOError(
                    f"{self.path}: reading slides needs zarr; install it with '{PATHOLOGY_EXTRA}'"
                ) from err

            store = self._tif.aszarr(series=0, level=level)
            self._arrays[level] = zarr.open(store, mode="r")
        return self._arrays[level]

    def _read(self, level: int, y: int, x: int, h: int, w: int, fill: int) -> np.ndarray:
        index = []
        for a in self._axes:
            if a == "Y":
                index.append(slice(y, y + h))
            elif a == "X":
                index.append(slice(x, x + w))
            elif a in "SC":
                index.append(slice(None))
            else:  # time, z, ... planes: the first
                index.append(0)
        try:
            data = np.asarray(self._array(level)[tuple(index)])
        except Exception as err:  # codec errors come in many types
            raise ImageIOError(
                f"{self.path}: cannot decode level {level} region at (y={y}, x={x}): {err}"
            ) from err
        kept = [a for a in self._axes if a in "YXSC"]
        order = [kept.index("Y"), kept.index("X")] + [i for i, a in enumerate(kept) if a in "SC"]
        data = np.transpose(data, order)
        return data.reshape(h, w, self.channels)

    def close(self) -> None:
        self._arrays.clear()
        self._tif.close()


def _yx(axes: str, shape: tuple[int, ...]) -> tuple[int, int]:
    return int(shape[axes.index("Y")]), int(shape[axes.index("X")])


def open_tifffile(
    path: Path, *, mpp: float | None = None, max_stripped_bytes: int | None = None
) -> TiffSlide:
    """Open a TIFF/OME-TIFF slide lazily with tifffile.

    Raises:
        ImageIOError: not a readable TIFF, or no image series.
        SlideTooLargeError: a stripped (untiled) level 0 larger than ``MAX_STRIPPED_BYTES``.
    """
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError) as err:
        raise ImageIOError(
            f"{path}: not a readable TIFF slide (corrupt or truncated?): {err}"
        ) from err
    try:
        if not tif.series:
            raise ImageIOError(f"{path}: the TIFF holds no image (empty or corrupt)")
        _check_stripped(
            path, tif, MAX_STRIPPED_BYTES if max_stripped_bytes is None else max_stripped_bytes
        )
        _check_data_offsets(path, tif)
        found = tiff_mpp(tif)
        return TiffSlide(path, tif, mpp=mpp if mpp is not None else found)
    except ImageIOError:
        tif.close()
        raise
    except Exception as err:  # tifffile raises many types on a malformed file
        tif.close()
        raise ImageIOError(f"{path}: not a readable TIFF slide (corrupt?): {err}") from err


def _check_stripped(path: Path, tif: Any, limit: int) -> None:
    page = tif.series[0].keyframe
    nbytes = int(np.prod(tif.series[0].shape)) * np.dtype(tif.series[0].dtype).itemsize
    if not page.is_tiled and nbytes > limit:
        raise SlideTooLargeError(
            f"{path}: a stripped (untiled) TIFF of {nbytes / 2**30:.3g} GiB decoded, more than "
            f"the {limit / 2**30:.3g} GiB that may be decoded at once; convert it to a tiled "
            "pyramid (medseg.io.slide_writer.write_pyramidal_tiff, or "
            "'vips tiffsave in.tif out.tif --tile --pyramid --compression deflate')"
        )


def _check_data_offsets(path: Path, tif: Any) -> None:
    """Refuse a truncated file: every level's tiles must lie inside the file.

    (tifffile reads a tile past the end, or a page without offsets, as zeros.)
    """
    size = Path(path).stat().st_size
    for i, level in enumerate(tif.series[0].levels):
        page = level.keyframe
        offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        counts = np.asarray(page.databytecounts, dtype=np.int64)
        if offsets.size == 0 or counts.size != offsets.size:
            raise ImageIOError(f"{path}: level {i} has no tile offsets (truncated or corrupt)")
        if int((offsets + counts).max()) > size:
            raise ImageIOError(
                f"{path}: level {i} has tiles past the end of the file (truncated or corrupt; "
                f"{size} bytes)"
            )


def tiff_mpp(tif: Any) -> float | None:
    """Microns per pixel at level 0 from OME-XML, an Aperio description or TIFF resolution.

    Returns:
        The first value found, or None.
    """
    for finder in (_ome_mpp, _aperio_mpp, _resolution_mpp):
        try:
            value = finder(tif)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, ZeroDivisionError):
            value = None
        if value is not None and math.isfinite(value) and value > 0:
            return float(value)
    return None


def _ome_mpp(tif: Any) -> float | None:
    if not tif.is_ome or not tif.ome_metadata:
        return None
    import xml.etree.ElementTree as ET

    root = ET.fromstring(tif.ome_metadata)
    for element in root.iter():
        if element.tag.endswith("}Pixels") or element.tag == "Pixels":
            size = element.get("PhysicalSizeX")
            if size is None:
                return None
            unit = element.get("PhysicalSizeXUnit", "µm")
            return float(size) * _UM_PER_UNIT[unit]
    return None


def _aperio_mpp(tif: Any) -> float | None:
    description = tif.pages.first.description or ""
    if not description.startswith("Aperio"):
        return None
    match = _APERIO_MPP.search(description)
    return float(match.group(1)) if match else None


def _resolution_mpp(tif: Any) -> float | None:
    tags = tif.pages.first.tags
    if "XResolution" not in tags or "ResolutionUnit" not in tags:
        return None
    numerator, denominator = tags["XResolution"].value
    pixels_per_unit = numerator / denominator
    unit = int(tags["ResolutionUnit"].value)
    um_per_unit = {2: 25400.0, 3: 10000.0}.get(unit)  # 1: no unit
    if um_per_unit is None or pixels_per_unit <= 0:
        return None
    return um_per_unit / pixels_per_unit
