"""Denoising benchmark: Hippocampus MRI slices with Rician noise at 5 % of the range.

Data: ``/work/shared/data/hippocampus`` (MSD Task04, T1 MRI crops). Volumes are split by
case (sorted ids: the last ``--test-volumes`` are the test set, the ``--train-volumes`` before
them train the networks); each volume gives its central third of slices along the first array
axis. Each clean slice gets Rician noise of sigma = 5 % of its own ``max - min``
(``medseg.enhance.noise.rician``), and PSNR/SSIM use that same range as ``data_range``
(``medseg.metrics.image_quality``, equal to scikit-image's). Test noise is a fixed draw.

Methods:

* ``noisy``: the input itself;
* ``nlm``: scikit-image non-local means (``denoise_nl_means``, ``fast_mode=True``,
  ``patch_size=5``, ``patch_distance=6``, ``sigma`` from ``estimate_sigma`` on each noisy
  slice, ``h = k * sigma`` with ``k`` in ``NLM_H`` chosen by the best mean PSNR on the test
  slices themselves: an oracle choice that favours the baseline);
* ``supervised``: ``medseg.enhance.fit_denoiser`` (clean targets, fresh Rician draws each
  step) for ``--budget`` seconds;
* ``n2n``: noise2noise on two fixed noisy realisations per training slice (the clean slice is
  never read by the trainer; asserted), same budget;
* ``+ flips``: the same model, outputs averaged over the 4 flips of the slice.

Run: ``python benchmarks/denoise.py --budget 600 --features 32 64 128`` (prints a Markdown
table; numbers with the budget and the steps each run completed, which depend on the
machine's load). ``--modes supervised`` or ``n2n`` trains one (two processes can train the
two at once), ``--reuse`` evaluates the runs already in ``--out``, ``--dims 3`` uses whole
volumes (3D networks and 3D NLM), ``--threads`` sets torch's threads (default 1: on a busy
2-core machine two threads made each step ten times slower). ``--steps N`` trains a fixed
number of steps instead of ``--budget`` seconds (the cosine schedule then runs over the steps;
on a shared machine this compares settings at equal training, whatever the load), ``--patch``
sets the training crop (default: the library's, 64 x 64 or 32^3 capped at the median image).
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medseg.data.dataset import load_dataset, read_case
from medseg.enhance import DenoiseConfig, denoise_array, fit_denoiser, load_denoiser
from medseg.enhance.noise import rician
from medseg.metrics.image_quality import psnr, ssim

DATA = Path("/work/shared/data/hippocampus")
LEVEL = 0.05
NLM_H = (0.4, 0.5, 0.6, 0.8, 1.0)


def load_slices(first: int, count: int, dims: int = 2) -> list[np.ndarray]:
    """Central-third slices (float32, ``(y, x)``) of ``count`` volumes from index ``first``,
    or (``dims=3``) the whole volumes."""
    dataset = load_dataset(DATA)
    slices = []
    for case in dataset.cases[first : first + count]:
        image, _ = read_case(case)
        volume = image.array[0].astype(np.float32)
        if dims == 3:
            slices.append(volume)
            continue
        depth = volume.shape[0]
        for z in range(depth // 3, 2 * depth // 3):
            if np.ptp(volume[z]) > 0:
                slices.append(volume[z])
    return slices


def noisy_copy(clean: np.ndarray, seed: tuple[int, ...]) -> np.ndarray:
    return rician(clean, LEVEL, np.random.default_rng(seed), data_range=float(np.ptp(clean)))


class SliceSource:
    """Training slices (or volumes) in memory: ``clean`` for supervised, two fixed draws for
    n2n."""

    def __init__(self, slices: list[np.ndarray]) -> None:
        self.slices = slices
        self.spatial_dims = slices[0].ndim
        self.case_ids = [f"slice_{i:05d}" for i in range(len(slices))]
        self.clean_reads = 0

    def clean(self, index: int) -> np.ndarray:
        self.clean_reads += 1
        return self.slices[index][None]

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        clean = self.slices[index]
        return noisy_copy(clean, (index, 1))[None], noisy_copy(clean, (index, 2))[None]


def scores(clean: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[float, float]:
    p, s = [], []
    for c, o in zip(clean, outputs, strict=True):
        span = float(np.ptp(c))
        p.append(psnr(c, o, data_range=span))
        s.append(ssim(c, o, data_range=span))
    return float(np.mean(p)), float(np.mean(s))


def run_nlm(noisy: list[np.ndarray], clean: list[np.ndarray]) -> dict[str, object]:
    from skimage.restoration import denoise_nl_means, estimate_sigma

    best: dict[str, object] = {}
    for k in NLM_H:
        start, outputs = time.perf_counter(), []
        for image in noisy:
            sigma = float(estimate_sigma(image))
            outputs.append(
                denoise_nl_means(
                    image,
                    h=k * sigma,
                    sigma=sigma,
                    fast_mode=True,
                    patch_size=5,
                    patch_distance=6,
                )
            )
        seconds = (time.perf_counter() - start) / len(noisy)
        p, s = scores(clean, outputs)
        logging.info("NLM h = %.1f sigma: PSNR %.2f SSIM %.4f", k, p, s)
        if not best or p > best["psnr"]:
            best = {"psnr": p, "ssim": s, "seconds": seconds, "note": f"h = {k} sigma_est"}
    return best


def run_network(
    mode: str,
    source: SliceSource,
    noisy: list[np.ndarray],
    clean: list[np.ndarray],
    run_dir: Path,
    args: argparse.Namespace,
) -> dict[str, dict[str, object]]:
    """Train (or, with ``--reuse``, load) one denoiser; rows without and with flips."""
    config = DenoiseConfig(
        noise=f"rician:{LEVEL}",
        mode=mode,
        loss="l2",
        features=tuple(args.features),
        batch_size=args.batch_size,
        patch_size=tuple(args.patch) if args.patch else None,
        steps_per_epoch=50,
        epochs=-(-args.steps // 50) if args.steps else 100_000,
        val_fraction=0.05,
        seed=args.seed,
    )
    reads_before = source.clean_reads
    if not (args.reuse and (run_dir / "checkpoint_best.pt").is_file()):
        budget = None if args.steps else args.budget
        fit_denoiser(source, run_dir, config, time_budget_s=budget, progress=False, device="cpu")
    if mode == "n2n":
        assert source.clean_reads == reads_before, "noise2noise read a clean slice"
    model, saved = load_denoiser(run_dir)
    with open(run_dir / "log.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    best = max(rows, key=lambda r: float(r["val_psnr"]))
    trained = sum(float(r["epoch_seconds"]) for r in rows)
    note = (
        f"{f'step budget {args.steps}' if args.steps else f'budget {args.budget:.0f} s'} "
        f"({trained:.0f} s in epochs incl. validation), patch {saved.patch_size}, "
        f"{rows[-1]['step']} steps, best epoch {best['epoch']} of {len(rows)}"
    )
    results = {}
    for mirror in (False, True):
        start = time.perf_counter()
        outputs = [denoise_array(model, saved, im[None], mirror=mirror)[0] for im in noisy]
        seconds = (time.perf_counter() - start) / len(noisy)
        p, s = scores(clean, outputs)
        name = f"{mode} (medseg){' + flips' if mirror else ''}"
        results[name] = {"psnr": p, "ssim": s, "seconds": seconds, "note": note}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0, help="training seconds per network")
    parser.add_argument("--train-volumes", type=int, default=120)
    parser.add_argument("--test-volumes", type=int, default=12)
    parser.add_argument("--features", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=0, help="train steps instead of --budget")
    parser.add_argument("--patch", type=int, nargs="+", default=None, help="training crop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--modes", nargs="+", default=["supervised", "n2n"], choices=("supervised", "n2n")
    )
    parser.add_argument(
        "--reuse", action="store_true", help="evaluate runs already in --out, no training"
    )
    parser.add_argument("--no-nlm", action="store_true", help="skip the NLM baseline")
    parser.add_argument("--dims", type=int, default=2, choices=(2, 3), help="slices or volumes")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: far faster on a busy machine)"
    )
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    total = len(load_dataset(DATA).cases)
    test_first = total - args.test_volumes
    train = load_slices(test_first - args.train_volumes, args.train_volumes, args.dims)
    clean = load_slices(test_first, args.test_volumes, args.dims)
    noisy = [noisy_copy(c, (10_000 + i, 0)) for i, c in enumerate(clean)]
    logging.info("%d training slices, %d test slices", len(train), len(clean))
    rows = {
        "noisy": {
            "psnr": scores(clean, noisy)[0],
            "ssim": scores(clean, noisy)[1],
            "seconds": 0.0,
            "note": "Rician, sigma 5 % of each image's range",
        }
    }
    if not args.no_nlm:
        rows["nlm (scikit-image)"] = run_nlm(noisy, clean)
    root = args.out or Path(tempfile.mkdtemp(prefix="denoise_bench_"))
    source = SliceSource(train)
    for mode in args.modes:
        results = run_network(mode, source, noisy, clean, root / mode, args)
        logging.info("%s: %s", mode, results)
        rows.update(results)
    print(
        f"\nHippocampus {args.dims}D, {len(clean)} test images of {args.test_volumes} volumes; "
        f"{len(train)} training images of {args.train_volumes} volumes; "
        f"network features {args.features}, batch {args.batch_size}, "
        f"{args.threads} torch thread(s)\n"
    )
    print("| method | PSNR (dB) | SSIM | s / image | settings |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['psnr']:.2f} | {row['ssim']:.4f} | {row['seconds']:.4f} | "
            f"{row['note']} |"
        )


if __name__ == "__main__":
    main()
