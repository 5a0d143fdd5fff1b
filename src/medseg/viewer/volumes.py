"""Volumes for the viewer: memory-mapped arrays, slices of the three planes, PNG rendering.

A file is read once (``medseg.io.read_image``), its voxels written to an ``.npy`` file in the
session's cache folder and opened memory-mapped, so many cases can be open while only the
pages a slice touches are in memory. Every volume is ``(z, y, x)``; a 2D image is one axial
slice ``(1, rows, cols)`` with a 1 mm slice spacing.

Planes, as displayed (row 0 at the top): axial ``array[k, :, :]`` (rows y, columns x);
coronal ``array[::-1, j, :]`` (rows z from the top of the volume down, columns x); sagittal
``array[::-1, :, i]`` (rows z, columns y). ``display_to_voxel`` maps a displayed pixel back.

Rendered slices are cached (``SliceCache``: LRU over PNG bytes, thread-safe) and the
neighbouring slices are rendered ahead on a background thread while the user scrolls.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import DatasetError
from medseg.io import Image, read_image

PLANES = ("axial", "coronal", "sagittal")
#: window presets ``name: (center, width)``; ``mri`` and ``auto`` use the image's percentiles
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "ct_lung": (-600.0, 1500.0),
    "ct_soft_tissue": (40.0, 400.0),
    "ct_bone": (400.0, 1800.0),
}
PERCENTILE_PRESETS = {"mri": (1.0, 99.0), "full": (0.0, 100.0)}


@dataclass
class Volume:
    """A ``(z, y, x)`` memory-mapped array with the geometry of the file it came from.

    ``spatial_dims`` is the file's (2 or 3); ``spacing``/``origin``/``direction`` are the
    file's own, so ``to_image`` gives back an ``Image`` on the file's grid.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    spatial_dims: int
    percentiles: dict[str, tuple[float, float]]

    @property
    def spacing3(self) -> tuple[float, float, float]:
        """Spacing of the ``(z, y, x)`` array (1 mm slice spacing for a 2D image)."""
        return tuple(self.spacing) if self.spatial_dims == 3 else (1.0, *self.spacing)  # type: ignore[return-value]

    def to_image(self, array: np.ndarray) -> Image:
        """``array`` ``(z, y, x)`` as an ``Image`` with this volume's geometry."""
        data = array if self.spatial_dims == 3 else array[0]
        return Image(data, self.spacing, self.origin, self.direction)

    def same_grid(self, other: Volume) -> bool:
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing, other.spacing, rtol=1e-4, atol=1e-4)
            and np.allclose(self.origin, other.origin, rtol=1e-4, atol=1e-3)
            and np.allclose(self.direction, other.direction, atol=1e-4)
        )


def load_volume(path: Path, cache_dir: Path, *, labels: bool = False) -> Volume:
    """Read ``path`` and open its voxels memory-mapped from ``cache_dir`` (first channel of a
    multi-channel image; a label map as uint8).

    Raises:
        DatasetError: a label map with values outside 0..255.
        ImageIOError: the file cannot be read.
    """
    image = read_image(path)
    array = image.array
    if array.ndim == image.spatial_dims + 1:
        array = array[0]
    if image.spatial_dims == 2:
        array = array[None]
    if labels:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise DatasetError(f"{path}: label values outside 0..255 are not supported")
        array = array.astype(np.uint8)
    elif array.dtype not in (np.int16, np.uint8, np.uint16, np.float32):
        array = array.astype(np.float32)
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}|{labels}".encode())
    cache = cache_dir / f"{key.hexdigest()[:24]}.npy"
    if not cache.exists():
        tmp = cache.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp.npy")
        np.save(tmp, np.ascontiguousarray(array))
        os.replace(tmp, cache)
    mapped = np.load(cache, mmap_mode="r", allow_pickle=False)
    return Volume(
        mapped,
        image.spacing,
        image.origin,
        image.direction,
        image.spatial_dims,
        {} if labels else _percentiles(mapped),
    )


def _percentiles(array: np.ndarray) -> dict[str, tuple[float, float]]:
    step = max(1, array.size // 2_000_000)
    sample = np.asarray(array.reshape(-1)[::step], dtype=np.float32)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return {name: (0.0, 1.0) for name in PERCENTILE_PRESETS}
    return {
        name: (float(np.percentile(finite, lo)), float(np.percentile(finite, hi)))
        for name, (lo, hi) in PERCENTILE_PRESETS.items()
    }


def slice_count(shape: tuple[int, ...], plane: str) -> int:
    """Number of slices of a ``(z, y, x)`` shape along ``plane``."""
    return shape[PLANES.index(plane)]


def plane_slice(array: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The displayed 2D slice (module docstring for the orientation)."""
    if plane == "axial":
        return array[index]
    if plane == "coronal":
        return array[::-1, index, :]
    return array[::-1, :, index]


def plane_spacing(spacing3: tuple[float, ...], plane: str) -> tuple[float, float]:
    """``(row_mm, col_mm)`` of the displayed slice."""
    z, y, x = spacing3
    return {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[plane]


def display_to_voxel(
    plane: str, index: int, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z, y, x)`` index arrays of displayed pixels ``(rows, cols)`` of a slice."""
    full = np.full_like(rows, index)
    if plane == "axial":
        return full, rows, cols
    z = shape[0] - 1 - rows
    return (z, full, cols) if plane == "coronal" else (z, cols, full)


def window_range(volume: Volume, window: str | None, center: float | None, width: float | None):
    """``(low, high)`` intensities mapped to black and white.

    ``center``/``width`` win over a preset; a preset is one of ``WINDOW_PRESETS`` or
    ``PERCENTILE_PRESETS`` (default ``mri``: the 1st and 99th percentiles).
    """
    if center is not None and width is not None:
        return center - width / 2, center + width / 2
    if window in WINDOW_PRESETS:
        c, w = WINDOW_PRESETS[window]
        return c - w / 2, c + w / 2
    return volume.percentiles.get(window or "mri", volume.percentiles["mri"])


def to_uint8(slice2d: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linear window: ``low`` -> 0, ``high`` -> 255, clipped (NaN -> 0).

    Example:
        >>> to_uint8(np.array([[0.0, 50.0, 100.0]]), 0.0, 100.0).tolist()
        [[0, 128, 255]]
    """
    scale = 255.0 / max(high - low, 1e-6)
    out = (np.asarray(slice2d, dtype=np.float32) - np.float32(low)) * np.float32(scale)
    return np.nan_to_num(np.clip(out + 0.5, 0, 255), nan=0.0).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels: np.ndarray, *, level: int = 1) -> bytes:
    """A greyscale ``(rows, cols)`` uint8 array as PNG bytes.

    Rows use PNG filter 0 (none) and ``zlib`` at ``level``: label maps shrink a hundredfold
    at level 1 in well under a millisecond; a noisy image is sent with level 0 (stored),
    as Pillow's adaptive filtering and compression cost 15-25 ms for a 512 x 512 slice.
    Any PNG decoder reads it (the tests decode it with Pillow).
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    rows, cols = pixels.shape
    raw = np.zeros((rows, cols + 1), np.uint8)  # a filter-type byte (0) before each row
    raw[:, 1:] = pixels
    header = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


class SliceCache:
    """An LRU cache of rendered slices with background prefetch of neighbours (thread-safe)."""

    def __init__(self, max_items: int = 1024, *, prefetch: int = 2) -> None:
        self.max_items = max_items
        self.prefetch = prefetch
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medseg-prefetch")
        self._pending: set[Hashable] = set()

    def get(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        """The cached bytes of ``key``, rendering (and caching) them on a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = render()
        self._put(key, data)
        return data

    def _put(self, key: Hashable, data: bytes) -> None:
        with self._lock:
            self._items[key] = data
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def schedule(self, key: Hashable, render: Callable[[], bytes]) -> None:
        """Render ``key`` on the background thread unless cached or already queued."""
        with self._lock:
            if key in self._items or key in self._pending:
                return
            self._pending.add(key)

        def job() -> None:
            try:
                self._put(key, render())
            except Exception:  # noqa: BLE001 - a prefetch failure shows on the real request
                pass
            finally:
                with self._lock:
                    self._pending.discard(key)

        self._pool.submit(job)

    def drop(self, predicate: Callable[[Hashable], bool]) -> None:
        """Forget every key for which ``predicate`` is true (e.g. a case's edited layer)."""
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                del self._items[key]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
