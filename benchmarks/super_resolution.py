"""Through-plane super-resolution on Hippocampus MRI: medseg's residual U-Net against linear
and cubic interpolation (issue 23, part D; a table, not a test).

Data: ``/work/shared/data/hippocampus`` (MSD Task04, T1 MRI crops, 1 mm isotropic). Volumes
are split by case (sorted ids: the last ``--test-volumes`` are the test set, the
``--train-volumes`` before them train the network). Each volume is cropped to a multiple of
``--factor`` slices along ``--axis``; its thick-slice version averages every ``--factor``
slices (``medseg.enhance.thick_slices``: 4 mm slices from 1 mm data for factor 4).

Methods, each upsampling the thick volume back onto the 1 mm grid:

* ``linear``: ``medseg.enhance.upsample_slices`` (the network's input);
* ``cubic``: ``scipy.ndimage.zoom`` order 3 on the same grid (``medseg.enhance.cubic_upsample``);
* ``medseg SR``: ``fit_denoiser`` with ``mode="super_resolution"`` for ``--budget`` seconds
  (3D residual U-Net, L1 loss, random crops), applied to the whole thick volume;
* ``+ flips``: the same model, outputs averaged over the 8 flips.

PSNR and SSIM (``medseg.metrics.image_quality``) against the original volume, with
``data_range`` = each original volume's ``max - min``; mean over the test volumes.

    .venv/bin/python benchmarks/super_resolution.py --budget 300
    .venv/bin/python benchmarks/super_resolution.py --quick        # smoke: 20 s, 3 volumes

Skips (exit 0) when the data folder is absent. One torch thread by default (shared machine).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path("/work/shared/data/hippocampus")


class Volumes:
    """Clean volumes in memory: the source ``fit_denoiser`` takes (``clean(i)``)."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays
        self.case_ids = [f"v{i:03d}" for i in range(len(arrays))]
        self.spatial_dims = 3

    def clean(self, index: int) -> np.ndarray:
        return self.arrays[index]

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("super-resolution reads clean volumes only")


def load_volumes(count: int, skip_last: int, factor: int, axis: int) -> list[np.ndarray]:
    """``(1, *spatial)`` float32 volumes, cropped to a multiple of ``factor`` along ``axis``."""
    from medseg.data.dataset import load_dataset, read_case

    cases = load_dataset(DATA).cases
    chosen = cases[len(cases) - skip_last - count : len(cases) - skip_last]
    out = []
    for case in chosen:
        array = read_case(case)[0].channels_first().astype(np.float32)
        n = array.shape[axis + 1] - array.shape[axis + 1] % factor
        out.append(np.take(array, np.arange(n), axis=axis + 1))
    return out


def evaluate(volumes: list[np.ndarray], methods: dict, factor: int, axis: int) -> dict:
    """Mean PSNR / SSIM and seconds per volume of each method (``low -> fine``)."""
    from medseg.enhance import thick_slices
    from medseg.metrics.image_quality import psnr, ssim

    scores = {name: {"psnr": [], "ssim": [], "seconds": []} for name in methods}
    for clean in volumes:
        low, span = thick_slices(clean, factor, axis), float(clean.max() - clean.min())
        for name, method in methods.items():
            t0 = time.perf_counter()
            fine = method(low)[(slice(None), *(slice(0, s) for s in clean.shape[1:]))]
            scores[name]["seconds"].append(time.perf_counter() - t0)
            scores[name]["psnr"].append(psnr(clean[0], fine[0], data_range=span))
            scores[name]["ssim"].append(ssim(clean[0], fine[0], data_range=span))
    return {n: {k: float(np.mean(v)) for k, v in s.items()} for n, s in scores.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="Training seconds.")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--axis", type=int, default=0)
    parser.add_argument("--train-volumes", type=int, default=100)
    parser.add_argument("--test-volumes", type=int, default=12)
    parser.add_argument("--features", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="Run folder (default: temp).")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not (DATA / "dataset.json").is_file():
        print(f"skipped: {DATA} not found")
        return 0
    if args.quick:
        args.budget, args.train_volumes, args.test_volumes = 20.0, 8, 3
    torch.set_num_threads(args.threads)
    from medseg.enhance import (
        DenoiseConfig,
        cubic_upsample,
        fit_denoiser,
        load_denoiser,
        super_resolve_array,
        upsample_slices,
    )

    f, axis = args.factor, args.axis
    test = load_volumes(args.test_volumes, 0, f, axis)
    train = load_volumes(args.train_volumes, args.test_volumes, f, axis)
    config = DenoiseConfig(
        mode="super_resolution",
        sr_factor=f,
        sr_axis=axis,
        loss="l1",
        features=tuple(args.features),
        patch_size=(32, 32, 32),
        batch_size=4,
        epochs=1000,
        steps_per_epoch=50,
        val_fraction=0.05,
    )
    run = args.out or Path(tempfile.mkdtemp(prefix="medseg_sr_"))
    result = fit_denoiser(
        Volumes(train), run, config, time_budget_s=args.budget, overwrite=True, progress=False
    )
    with open(run / "log.csv", encoding="utf-8") as handle:
        epochs = len(list(csv.DictReader(handle)))
    model, saved = load_denoiser(run)
    methods = {
        "linear": lambda low: upsample_slices(low, f, axis),
        "cubic (scipy zoom, order 3)": lambda low: cubic_upsample(low, f, axis),
        "medseg SR": lambda low: super_resolve_array(model, saved, low),
        "medseg SR + flips": lambda low: super_resolve_array(model, saved, low, mirror=True),
    }
    scores = evaluate(test, methods, f, axis)
    print(
        f"\nHippocampus, x{f} along array axis {axis} ({f} mm slices from 1 mm), "
        f"{len(test)} test volumes; PSNR/SSIM data_range = each volume's max - min. "
        f"Network: features {tuple(args.features)}, {args.budget:.0f} s of training "
        f"({result.steps} steps, {epochs} epochs, {args.threads} CPU thread(s)), "
        f"{len(train)} training volumes."
    )
    print("| method | PSNR (dB) | SSIM | s / volume |\n|---|---|---|---|")
    for name, s in scores.items():
        print(f"| {name} | {s['psnr']:.2f} | {s['ssim']:.4f} | {s['seconds']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
