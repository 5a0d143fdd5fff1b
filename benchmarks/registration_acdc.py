"""Registration benchmark on ACDC: ED -> ES of the same patient, warped-label Dice per
structure (RV, MYO, LV), folding % and seconds per pair for identity, SimpleITK affine and
B-spline, and VoxelMorph trained on the training patients' ED->ES pairs.

Usage::

    python benchmarks/registration_acdc.py [--data ../shared/data] [--budget 10m]
        [--test-patients 10] [--shape 16x192x224] [--out /tmp/registration_acdc]
        [--label-weight 1.0] [--classic-pairs 3] [--reuse | --resume]

Patients are split once (seeded): ``--test-patients`` patients (both frames) are excluded
from training and validation. VoxelMorph trains with ``pairs="same-subject"`` (moving =
``frame01`` = ED, fixed = ``frame02`` = ES) on the others, every volume cropped or padded
about its centre to ``--shape`` (array order z, y, x; both frames of a patient share a grid,
so the same crop keeps them aligned). Every method is evaluated on the test pairs cropped the
same way (the share of label voxels the crop drops is printed). The copy's spacing is lost
(1 mm written), so SimpleITK's B-spline mesh (about 50 "mm") is in voxels.
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
from medseg.registration.data import pad_to
from medseg.registration.jacobian import folding_percent
from medseg.registration.pairs import same_subject_pairs
from medseg.registration.train import fit_registration

SMALL = dict(
    features=(16, 32, 32),
    decoder_features=(32, 32, 32),
    final_features=(32, 16, 16),
    downsize=2,
)
STRUCTURES = {1: "RV", 2: "MYO", 3: "LV"}


def dice_per_structure(truth: np.ndarray, moved: np.ndarray) -> list[float]:
    scores = []
    for value in STRUCTURES:
        a, b = truth == value, moved == value
        total = int(a.sum()) + int(b.sum())
        scores.append(2.0 * int((a & b).sum()) / total if total else float("nan"))
    return scores


def cropped(image: Image, shape: tuple[int, ...], *, labels: bool = False) -> Image:
    array = image.channels_first()[0]
    array = np.rint(array).astype(np.uint8) if labels else array.astype(np.float32)
    return Image(pad_to(array, shape), spacing=image.spacing)


def test_split(pairs, count: int, seed: int):
    order = np.random.default_rng(seed).permutation(len(pairs))
    test = [pairs[i] for i in sorted(order[:count])]
    return test, [c for pair in test for c in pair]


def train(data: Path, out: Path, exclude, budget: float, shape, args) -> Path:
    run = out / "voxelmorph"
    resume = args.resume and (run / "checkpoint_latest.pt").exists()
    if run.exists() and not (args.reuse or resume):
        shutil.rmtree(run)
    if resume or not (run / "checkpoint_best.pt").exists():
        config = RegistrationConfig(
            dataset=str(data),
            pairs="same-subject",
            shape=shape,
            exclude=tuple(exclude),
            label_weight=args.label_weight,
            learning_rate=args.lr,
            steps_per_epoch=40,
            epochs=10_000,
            val_fraction=0.1,
            val_pairs=4,
            **SMALL,
        )
        result = fit_registration(
            data, run, config, time_budget_s=budget, resume=resume, progress=False
        )
        print(
            f"# trained: {result.steps} steps, {result.seconds:.0f} s, "
            f"best val Dice {result.best_metric:.3f}",
            flush=True,
        )
    return run


def evaluate(data: Path, pairs, run: Path, shape, *, classic: int):
    dataset = load_dataset(data)
    loaded = load_registration_model(run)
    kinds = ("affine", "bspline") if classic > 0 else ()
    rows: dict[str, list] = {k: [] for k in ["identity", *kinds, "voxelmorph"]}
    lost = []
    for number, (moving_id, fixed_id) in enumerate(pairs):
        fixed, fixed_labels = read_case(dataset.case(fixed_id))
        moving, moving_labels = read_case(dataset.case(moving_id))
        for lab in (fixed_labels, moving_labels):
            total = int((lab.array > 0).sum())
            kept = int((cropped(lab, shape, labels=True).array > 0).sum())
            lost.append(1 - kept / total)
        fixed, moving = cropped(fixed, shape), cropped(moving, shape)
        fixed_labels = cropped(fixed_labels, shape, labels=True)
        moving_labels = cropped(moving_labels, shape, labels=True)
        truth = fixed_labels.array
        rows["identity"].append((*dice_per_structure(truth, moving_labels.array), 0.0, np.nan))
        for kind in kinds if number < classic else ():
            start = time.perf_counter()
            result = register(fixed, moving, transform=kind, seed=0)
            warped = propagate(moving_labels, result.transform, fixed).array
            seconds = time.perf_counter() - start
            rows[kind].append((*dice_per_structure(truth, warped), seconds, np.nan))
        start = time.perf_counter()
        _, warped, field = register_pair(loaded, fixed, moving, moving_labels)
        seconds = time.perf_counter() - start
        flow = torch.from_numpy(field.array[::-1].copy())[None]  # spacing 1: mm = voxels
        folding = folding_percent(flow)
        rows["voxelmorph"].append((*dice_per_structure(truth, warped.array), seconds, folding))
        print(
            f"# {moving_id} -> {fixed_id}: "
            + ", ".join(
                f"{k} {np.nanmean(v[-1][:3]):.3f}" for k, v in rows.items() if len(v) > number
            ),
            flush=True,
        )
    print(f"# label voxels outside the crop: max {100 * max(lost):.2f} %", flush=True)
    return rows


def table(title: str, rows) -> str:
    lines = [
        f"\n{title}",
        "| method | pairs | RV | MYO | LV | mean ± sd | s / pair | folding % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, values in rows.items():
        arr = np.array(values, dtype=float)
        dice = [f"{np.nanmean(arr[:, i]):.3f}" for i in range(3)]
        mean = np.nanmean(arr[:, :3], axis=1)
        fold = "-" if np.all(np.isnan(arr[:, 4])) else f"{np.nanmean(arr[:, 4]):.3f}"
        lines.append(
            f"| {name} | {len(arr)} | {' | '.join(dice)} | {mean.mean():.3f} ± {mean.std():.3f} | "
            f"{arr[:, 3].mean():.2f} | {fold} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/registration_acdc"))
    parser.add_argument("--budget", default="10m", help="VoxelMorph training budget")
    parser.add_argument("--test-patients", type=int, default=10)
    parser.add_argument("--shape", default="16x192x224", help="crop/pad shape, z x y x x")
    parser.add_argument("--label-weight", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--reuse", action="store_true", help="reuse a trained run in --out")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out up to --budget in all"
    )
    parser.add_argument(
        "--classic-pairs", type=int, default=3, help="SimpleITK on the first N test pairs"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(args.threads))
    acdc = args.data / "acdc"
    if not (acdc / "dataset.json").is_file():
        print(f"no ACDC data in {acdc}", file=sys.stderr)
        return 1
    shape = tuple(int(n) for n in args.shape.split("x"))
    budget = parse_duration(args.budget)
    pairs = same_subject_pairs([c.case_id for c in load_dataset(acdc).cases])
    test, exclude = test_split(pairs, args.test_patients, seed=0)
    run = train(acdc, args.out, exclude, budget, shape, args)
    rows = evaluate(acdc, test, run, shape, classic=args.classic_pairs)
    print(
        table(
            f"ACDC ED->ES, {len(test)} held-out patients ({len(pairs) - len(test)} for training "
            f"and validation), cropped to {args.shape}; VoxelMorph features "
            f"{SMALL['features']} downsized x{SMALL['downsize']}, {budget:.0f} s training on "
            f"{args.threads} shared CPU threads, label weight {args.label_weight}, lr {args.lr}",
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
