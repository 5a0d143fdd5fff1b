"""Whole-slide region reads (issue 22; a table, not a test).

Writes a phantom H&E slide (``medseg.data.phantoms_slide``, pyramidal tiled TIFF, zlib,
512 px tiles, levels as top-level reduced pages so every reader sees the pyramid) and times
``read_region`` of random ``--tile`` x ``--tile`` regions at level 0 and level 1 with:

* ``medseg tifffile``: ``open_slide(backend="tifffile")`` (zarr over ``tif.aszarr()``);
* ``medseg openslide``: ``open_slide(backend="openslide")`` (generic tiled TIFF);
* ``medseg tifffile OME``: the same slide rewritten as an OME-TIFF with SubIFD levels
  (``write_pyramidal_tiff`` fed by ``read_region``: a slide conversion, timed);
* ``MONAI tifffile``: ``monai.data.WSIReader(backend="tifffile").get_data`` (the peer; it
  decodes the whole level for each patch, so it gets only ``--monai-reads`` reads).

Each reader opens the slide once and reads one warm-up region first; the file is in the OS
page cache (just written), so the figures are decode + copy time. Target: < 20 ms per 512^2.

    .venv/bin/python benchmarks/slide_read.py [--size 20000] [--reads 60] [--monai-reads 2]
                                              [--slide PATH (reused if it exists)]

Measured (2026-12-02, 2 shared CPU cores under load, 20000^2 slide, 60 reads, MONAI 2):
see docs/pathology.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medseg.data.phantoms_slide import phantom_slide
from medseg.io.slide import open_slide
from medseg.io.slide_writer import write_pyramidal_tiff


def _positions(shape: tuple[int, int], tile: int, count: int, seed: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    return [
        (int(rng.integers(0, shape[0] - tile)), int(rng.integers(0, shape[1] - tile)))
        for _ in range(count)
    ]


def _time(read: Callable[[int, int], np.ndarray], positions: list[tuple[int, int]]) -> list[float]:
    read(*positions[0])  # warm-up (opens stores, caches)
    times = []
    for y, x in positions:
        start = time.perf_counter()
        read(y, x)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _medseg_rows(path: Path, tile: int, reads: int) -> list[tuple[str, int, list[float]]]:
    rows = []
    for backend in ("tifffile", "openslide"):
        with open_slide(path, backend=backend) as slide:
            for level in (0, 1):
                positions = _positions(slide.levels[level].shape, tile, reads + 1, level)
                times = _time(
                    lambda y, x, k=level: slide.read_region(k, y, x, tile, tile), positions
                )
                rows.append((f"medseg {backend}", level, times))
    return rows


def _ome_rows(path: Path, tile: int, reads: int) -> list[tuple[str, int, list[float]]]:
    ome = path.with_name(path.name.split(".")[0] + "_subifd.ome.tif")
    with open_slide(path) as slide:
        if not ome.exists():
            start = time.perf_counter()
            write_pyramidal_tiff(
                ome,
                slide.levels[0].shape,
                np.uint8,
                lambda y, x, h, w: slide.read_region(0, y, x, h, w),
                channels=3,
                tile=512,
                mpp=slide.mpp,
            )
            print(f"converted to OME-TIFF (SubIFDs) in {time.perf_counter() - start:.0f} s")
    rows = []
    with open_slide(ome) as slide:
        for level in (0, 1):
            positions = _positions(slide.levels[level].shape, tile, reads + 1, level)
            times = _time(lambda y, x, k=level: slide.read_region(k, y, x, tile, tile), positions)
            rows.append(("medseg tifffile OME", level, times))
    return rows


def _monai_rows(path: Path, tile: int, reads: int) -> list[tuple[str, int, list[float]]]:
    try:
        from monai.data import WSIReader
    except ImportError:
        return []
    reader = WSIReader(backend="tifffile", channel_dim=-1)
    wsi = reader.read(str(path))
    rows = []
    for level in (0, 1):
        h, w = reader.get_size(wsi, level)
        ratio = reader.get_downsample_ratio(wsi, level)
        positions = _positions((h, w), tile, reads + 1, level)

        def read(y: int, x: int, level: int = level, ratio: float = ratio) -> np.ndarray:
            location = (round(y * ratio), round(x * ratio))  # MONAI: level-0 coordinates
            return reader.get_data(wsi, location=location, size=(tile, tile), level=level)[0]

        rows.append(("MONAI tifffile", level, _time(read, positions)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=20000, help="slide edge in pixels")
    parser.add_argument("--tile", type=int, default=512, help="region edge in pixels")
    parser.add_argument("--reads", type=int, default=60, help="regions per backend and level")
    parser.add_argument("--monai-reads", type=int, default=2, help="regions for MONAI")
    parser.add_argument("--slide", type=Path, default=None, help="slide file (kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.slide or Path(scratch) / "bench.tif"
        if not path.exists():
            start = time.perf_counter()
            phantom_slide(
                path, size=(args.size, args.size), mpp=0.5, layout="pages", write_labels=False
            )
            print(
                f"wrote {args.size}^2 phantom slide in {time.perf_counter() - start:.0f} s "
                f"({path.stat().st_size / 2**20:.0f} MiB)"
            )
        rows = _medseg_rows(path, args.tile, args.reads)
        rows += _ome_rows(path, args.tile, args.reads)
        rows += _monai_rows(path, args.tile, args.monai_reads)
    print(f"\n{args.tile}^2 region reads, {args.size}^2 slide")
    print(f"{'reader':<20} {'level':>5} {'reads':>5} {'median ms':>10} {'p95 ms':>8}")
    for name, level, times in rows:
        print(
            f"{name:<20} {level:>5} {len(times):>5} {np.median(times):>10.1f} "
            f"{np.percentile(times, 95):>8.1f}"
        )


if __name__ == "__main__":
    main()
