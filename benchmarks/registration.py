"""Registration benchmark: Hippocampus inter-subject pairs, warped-label Dice and seconds per
pair for identity, SimpleITK affine and B-spline, and VoxelMorph (ACDC ED->ES:
``registration_acdc.py``).

Usage::

    python benchmarks/registration.py [--data ../shared/data] [--budget 12m] [--pairs 20]
        [--out /tmp/registration_bench] [--label-weight 1.0] [--no-diffeomorphic]

Hippocampus cases are split once (seeded): ``2 * pairs`` test cases form ``pairs`` disjoint
(moving, fixed) test pairs; VoxelMorph trains on the rest (``exclude`` in its config) with a
time budget, padded to 48x64x48. Every method maps the moving labels onto the fixed grid;
Dice is the mean over the two hippocampus labels. Identity aligns the image centres (as the
padding does). Times are wall-clock seconds per pair on this machine (VoxelMorph: inference
+ warping + field, model loaded once; SimpleITK: registration + label propagation).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medseg.classic.registration import propagate, register
from medseg.cli.options import parse_duration
from medseg.data.dataset import load_dataset, read_case
from medseg.io import Image
from medseg.registration.apply import load_registration_model, register_pair
from medseg.registration.config import RegistrationConfig
from medseg.registration.data import common_shape, crop_to, pad_to
from medseg.registration.jacobian import folding_percent
from medseg.registration.scores import mean_label_dice
from medseg.registration.train import fit_registration

SMALL = dict(
    features=(16, 32, 32),
    decoder_features=(32, 32, 32),
    final_features=(32, 16, 16),
    downsize=2,
)


def _single(image: Image) -> Image:
    return image.with_array(image.channels_first()[0].astype(np.float32))


def test_pairs(dataset, count: int, seed: int) -> list[tuple[str, str]]:
    ids = [c.case_id for c in dataset.cases]
    order = np.random.default_rng(seed).permutation(len(ids))[: 2 * count]
    chosen = [ids[i] for i in order]
    return [(chosen[2 * i], chosen[2 * i + 1]) for i in range(count)]


def identity_labels(fixed: Image, labels: Image) -> np.ndarray:
    shape = common_shape([fixed.spatial_shape, labels.spatial_shape], 1)
    return crop_to(pad_to(labels.array.astype(np.uint8), shape), fixed.spatial_shape)


def run_classic(fixed: Image, moving: Image, labels: Image, kind: str) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = register(fixed, moving, transform=kind, seed=0)
    warped = propagate(labels.with_array(labels.array.astype(np.uint8)), result.transform, fixed)
    return warped.array, time.perf_counter() - start


def run_voxelmorph(loaded, fixed, moving, labels) -> tuple[np.ndarray, float, float]:
    start = time.perf_counter()
    _, warped, field = register_pair(loaded, fixed, moving, labels)
    seconds = time.perf_counter() - start
    # folding of the voxel flow on the fixed grid (spacing 1 mm: mm field = voxel flow)
    flow = torch.from_numpy(field.array[::-1].copy())[None]
    return warped.array, seconds, folding_percent(flow, fixed.spacing)


def train(data: Path, out: Path, exclude, budget: float, *, diffeo: bool, args) -> Path:
    run = out / ("voxelmorph_diffeo" if diffeo else "voxelmorph")
    resume = args.resume and (run / "checkpoint_latest.pt").exists()
    if run.exists() and not (args.reuse or resume):
        shutil.rmtree(run)
    if resume or not (run / "checkpoint_best.pt").exists():
        config = RegistrationConfig(
            dataset=str(data),
            exclude=tuple(exclude),
            diffeomorphic=diffeo,
            label_weight=args.label_weight,
            learning_rate=args.lr,
            steps_per_epoch=50,
            epochs=10_000,
            val_pairs=8,
            **SMALL,
        )
        result = fit_registration(
            data, run, config, time_budget_s=budget, resume=resume, progress=False
        )
        print(
            f"# trained {run.name}: {result.steps} steps, {result.seconds:.0f} s, "
            f"best val Dice {result.best_metric:.3f}",
            flush=True,
        )
    return run


def evaluate(
    data: Path, pairs, runs: dict[str, Path], *, classic: bool = True
) -> dict[str, list[tuple[float, float, float]]]:
    dataset = load_dataset(data)
    loaded = {name: load_registration_model(run) for name, run in runs.items()}
    kinds = ("affine", "bspline") if classic else ()
    rows: dict[str, list] = {k: [] for k in ["identity", *kinds, *runs]}
    for moving_id, fixed_id in pairs:
        fixed, fixed_labels = read_case(dataset.case(fixed_id))
        moving, moving_labels = read_case(dataset.case(moving_id))
        fixed, moving = _single(fixed), _single(moving)
        truth = fixed_labels.array
        rows["identity"].append(
            (mean_label_dice(truth, identity_labels(fixed, moving_labels), (1, 2)), 0.0, np.nan)
        )
        for kind in kinds:
            warped, seconds = run_classic(fixed, moving, moving_labels, kind)
            rows[kind].append((mean_label_dice(truth, warped, (1, 2)), seconds, float("nan")))
        for name, model in loaded.items():
            warped, seconds, folding = run_voxelmorph(model, fixed, moving, moving_labels)
            rows[name].append((mean_label_dice(truth, warped, (1, 2)), seconds, folding))
        print(
            f"# {moving_id} -> {fixed_id}: "
            + ", ".join(f"{k} {v[-1][0]:.3f}" for k, v in rows.items()),
            flush=True,
        )
    return rows


def table(title: str, rows) -> str:
    lines = [
        f"\n{title}",
        "| method | Dice mean ± sd | s / pair | folding % |",
        "|---|---|---|---|",
    ]
    for name, values in rows.items():
        dice, seconds, folding = (np.array(v, dtype=float) for v in zip(*values, strict=True))
        fold = "-" if np.all(np.isnan(folding)) else f"{np.nanmean(folding):.3f}"
        lines.append(
            f"| {name} | {dice.mean():.3f} ± {dice.std():.3f} | {seconds.mean():.3f} | {fold} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/registration_bench"))
    parser.add_argument("--budget", default="12m", help="VoxelMorph training budget per variant")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--label-weight", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--no-diffeomorphic", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="reuse trained runs in --out")
    parser.add_argument(
        "--resume", action="store_true", help="continue runs in --out up to --budget in all"
    )
    parser.add_argument("--skip-classic", action="store_true", help="no SimpleITK baselines")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(args.threads))
    hippo = args.data / "hippocampus"
    if not (hippo / "dataset.json").is_file():
        print(f"no Hippocampus data in {hippo}", file=sys.stderr)
        return 1
    budget = parse_duration(args.budget)
    pairs = test_pairs(load_dataset(hippo), args.pairs, seed=0)
    exclude = [c for pair in pairs for c in pair]
    runs = {"voxelmorph": train(hippo, args.out, exclude, budget, diffeo=False, args=args)}
    if not args.no_diffeomorphic:
        runs["voxelmorph_diffeo"] = train(hippo, args.out, exclude, budget, diffeo=True, args=args)
    rows = evaluate(hippo, pairs, runs, classic=not args.skip_classic)
    print(
        table(
            f"Hippocampus, {len(pairs)} inter-subject test pairs, padded to 48x64x48; VoxelMorph "
            f"features {SMALL['features']} on the pair downsized x{SMALL['downsize']}, "
            f"{budget:.0f} s training each on {args.threads} CPU "
            f"threads, label weight {args.label_weight}, lr {args.lr}",
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
