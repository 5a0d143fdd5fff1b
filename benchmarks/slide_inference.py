"""Whole-slide inference: medseg's ``predict_slide`` against MONAI's WSI patch inference.

Usage::

    python benchmarks/slide_inference.py                      # 50,000^2 (the issue's size)
    python benchmarks/slide_inference.py --sizes 8192 16384   # smaller, faster

For each size a phantom H&E slide (``medseg.data.phantoms_slide.phantom_slide``, 0.5 µm/px,
``layout="pages"`` so OpenSlide reads it) is written once into ``--work`` and reused. The
same randomly initialised small 2D U-Net (``medseg.nets`` ``unet``) predicts it with

* **medseg**: ``predict_slide`` (tissue tiles only, Gaussian blending in row bands, the mask
  and a heatmap written as pyramidal OME-TIFFs);
* **MONAI**: the idiomatic MONAI WSI pipeline, ``monai.inferers.PatchInferer`` with a
  ``WSISlidingWindowSplitter`` (``reader="OpenSlide"``: MONAI's ``tifffile`` backend decodes
  the whole level for every patch, unusable on a slide) filtering patches by the same tissue
  mask, and a ``ZarrAvgMerger`` on disk (MONAI's out-of-core merger; ``AvgMerger`` would hold
  ``K x H x W`` float32); then the argmax, chunk by chunk, into the same pyramidal writer.

Each run is a separate subprocess, so peak RSS (``ru_maxrss``) does not mix. Reported:
seconds per slide (tissue detection, inference and writing), tiles predicted, tiles/s,
peak RSS, and the flat-memory ratio (peak RSS on the largest / smallest slide). CPU only,
``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = 4


def network(features: tuple[int, ...]):
    """The benchmark's U-Net, seeded (both tools get the same weights)."""
    import torch

    from medseg.nets import build_network

    torch.manual_seed(0)
    strides = [1] + [2] * (len(features) - 1)
    net = build_network(
        "unet",
        spatial_dims=2,
        in_channels=3,
        out_channels=CLASSES,
        features=features,
        strides=strides,
    )
    return net.eval()


def ensure_slide(
    work: Path, size: int, mpp: float, tiled_from: int | None = None, height: int | None = None
) -> Path:
    """The benchmark slide: a phantom of ``size``^2, or (``tiled_from``) a phantom of that
    side repeated over ``size``^2 (the 50,000^2 phantom takes over an hour to draw on 2 cores;
    repeating a 4,096^2 one takes minutes and gives the same tissue statistics); ``height``:
    a ``height x size`` strip instead (memory follows the width: one band of tile rows)."""
    from medseg.data.phantoms_slide import phantom_slide

    name = f"phantom_{size}" + (f"_from_{tiled_from}" if tiled_from else "")
    name += f"_h{height}" if height else ""
    path = work / f"{name}.ome.tif"
    if path.exists():
        return path
    start = time.perf_counter()
    if tiled_from is None:
        phantom_slide(path, size=(size, size), mpp=mpp, layout="pages")
    else:
        base = ensure_slide(work, tiled_from, mpp)
        repeat_slide(base, path, (height or size, size), mpp)
    print(f"# wrote {path} in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def repeat_slide(
    base: Path, path: Path, shape: tuple[int, int], mpp: float, tile: int = 512
) -> None:
    """Write ``base``'s level 0 repeated (periodically) over a pyramid of ``shape``."""
    from medseg.io.slide import open_slide
    from medseg.io.slide_writer import write_pyramidal_tiff

    with open_slide(base) as slide:
        h, w = slide.levels[0].shape
        pixels = slide.read_region(0, 0, 0, h, w)
    rows, cols = np.arange(shape[0]) % h, np.arange(shape[1]) % w

    def tiles():
        for y in range(0, shape[0], tile):
            for x in range(0, shape[1], tile):
                r, c = rows[y : y + tile], cols[x : x + tile]
                yield (y, x), pixels[r[:, None], c[None, :]]

    write_pyramidal_tiff(
        path, shape, np.uint8, tiles(), channels=3, tile=tile, mpp=mpp, layout="pages"
    )


def run_medseg(args: argparse.Namespace, out: Path) -> dict:
    from medseg.inference.slide import predict_slide

    summary = predict_slide(
        network(args.features),
        args.slide,
        out / "medseg_mask.ome.tif",
        tile_size=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device="cpu",
        heatmap_path=out / "medseg_heat.tif",
        progress=False,
        overwrite=True,
    )
    return {"tiles": summary.tiles_processed, "tissue": summary.tissue_fraction}


def run_monai(args: argparse.Namespace, out: Path) -> dict:
    import torch
    from monai.inferers import PatchInferer, WSISlidingWindowSplitter
    from monai.inferers.merger import ZarrAvgMerger

    from medseg.data.slide_tissue import tissue_mask
    from medseg.io.slide import open_slide
    from medseg.io.slide_writer import write_pyramidal_tiff

    with open_slide(args.slide) as slide:
        mask, ds = tissue_mask(slide)
        shape = slide.levels[0].shape
    t = args.tile
    kept = []

    def touches(patch, location) -> bool:  # MONAI reads the patch first, then filters it
        y, x = location
        y0, x0 = int(y / ds), int(x / ds)
        keep = bool(mask[y0 : math.ceil((y + t) / ds), x0 : math.ceil((x + t) / ds)].any())
        kept.append(keep)
        return keep

    splitter = WSISlidingWindowSplitter(
        patch_size=t, overlap=args.overlap, filter_fn=touches, reader="OpenSlide"
    )
    zarr_dir = Path(tempfile.mkdtemp(dir=out, prefix="monai-zarr-"))
    inferer = PatchInferer(
        splitter=splitter, merger_cls=ZarrAvgMerger, batch_size=args.batch_size,
        preprocessing=lambda x: x.float(), postprocessing=lambda y: torch.softmax(y, 1),
        store=str(zarr_dir / "out.zarr"), value_store=str(zarr_dir / "values.zarr"),
        count_store=str(zarr_dir / "counts.zarr"),
    )  # fmt: skip
    net = network(args.features)
    with torch.inference_mode():
        merged = inferer(str(args.slide), net)
    rows = 512

    def tiles():
        for y in range(0, shape[0], rows):
            probs = np.asarray(merged[0, :, y : y + rows, :])
            labels = np.argmax(probs, axis=0).astype(np.uint8)
            for x in range(0, shape[1], rows):
                yield (y, x), labels[:, x : x + rows]

    write_pyramidal_tiff(
        out / "monai_mask.ome.tif",
        shape,
        np.uint8,
        tiles(),
        channels=1,
        tile=rows,
        mpp=args.mpp,
        overwrite=True,
    )
    return {"tiles": int(sum(kept)), "tissue": float(mask.mean())}


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.work)
    start = time.perf_counter()
    result = (run_medseg if args.tool == "medseg" else run_monai)(args, out)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**result, "seconds": seconds, "peak_rss_mb": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000])
    parser.add_argument("--mpp", type=float, default=0.5)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--features", type=lambda s: tuple(int(v) for v in s.split(",")), default=(8, 16, 32, 64)
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--tiled-from",
        type=int,
        default=None,
        help="build each slide by repeating a phantom of this side (e.g. 4096): minutes "
        "instead of an hour for 50,000^2",
    )
    parser.add_argument("--tools", nargs="+", default=["medseg", "monai"])
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "medseg_slide_bench"))
    parser.add_argument(
        "--height", type=int, default=None, help="slides of HEIGHT x SIZE (a strip) instead"
    )
    parser.add_argument("--tool", help=argparse.SUPPRESS)
    parser.add_argument("--slide", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tool:
        return worker(args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        slide = ensure_slide(work, size, args.mpp, args.tiled_from, args.height)
        for tool in args.tools:
            command = [sys.executable, __file__, "--tool", tool, "--slide", str(slide),
                       "--work", str(work), "--tile", str(args.tile), "--overlap",
                       str(args.overlap), "--batch-size", str(args.batch_size), "--features",
                       ",".join(map(str, args.features)), "--threads", str(args.threads),
                       "--mpp", str(args.mpp)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"size": size, "height": args.height or size, "tool": tool, **result})
            print(json.dumps(rows[-1]), flush=True)
    report(rows, args)


def report(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"\ntile {args.tile}, overlap {args.overlap}, batch {args.batch_size}, "
        f"U-Net features {args.features}, {args.threads} torch thread(s), CPU\n"
    )
    print("| slide | tool | tiles | tissue | seconds | tiles/s | peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['height']} x {r['size']} | {r['tool']} | {r['tiles']} | {r['tissue']:.1%} | "
            f"{r['seconds']:.0f} | {r['tiles'] / r['seconds']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    sizes = sorted({r["size"] for r in rows})
    by = {(r["size"], r["tool"]): r for r in rows}
    for tool in args.tools:
        if len(sizes) > 1 and (sizes[0], tool) in by and (sizes[-1], tool) in by:
            ratio = by[sizes[-1], tool]["peak_rss_mb"] / by[sizes[0], tool]["peak_rss_mb"]
            print(f"\n{tool}: peak RSS {sizes[-1]}^2 / {sizes[0]}^2 = {ratio:.2f}")
    for size in sizes:
        if (size, "medseg") in by and (size, "monai") in by:
            ratio = by[size, "medseg"]["seconds"] / by[size, "monai"]["seconds"]
            print(f"{size}^2: medseg / MONAI time = {ratio:.2f}")


if __name__ == "__main__":
    main()
