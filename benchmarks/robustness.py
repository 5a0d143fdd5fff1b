"""Robustness to image degradation and uncertainty vs failure on Hippocampus (issue 14).

Trains a small ``3d_fullres`` Hippocampus model under a CPU time budget on the training cases
of a split (or reuses ``--results``), then on held-out cases that training never saw:

1. ``medseg.evaluation.robustness``: Dice and HD95 with noise, bias field, blur, low
   resolution and contrast at levels 0-4 (table: Dice per level and the drop at level 4);
2. ``medseg predict --save-uncertainty`` + ``medseg evaluate``: the Spearman correlation
   between each case's mean entropy (whole image, and the predicted foreground band) and its
   mean Dice over labels, and the three most uncertain cases with their Dice rank.

    .venv/bin/python benchmarks/robustness.py                     # ~8 min training + ~5 min
    .venv/bin/python benchmarks/robustness.py --results /tmp/rob/results  # reuse a model
    .venv/bin/python benchmarks/robustness.py --quick             # smoke: 30 s, 4 cases

Skips (exit 0, with a message) when ``/work/shared/data/hippocampus`` is absent. Uses one
torch thread and no loader workers by default (the machine is shared).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch

DATA = Path("/work/shared/data/hippocampus")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def split_cases(source: Path, work: Path, num_train: int, num_test: int) -> tuple[Path, Path]:
    """Symlink a training dataset (``num_train`` cases) and a disjoint held-out folder
    (``num_test`` cases, evenly spaced over the sorted ids) under ``work``."""
    from medseg.data import load_dataset

    cases = load_dataset(source).cases
    step = len(cases) / num_test
    test_ids = {cases[int(i * step)].case_id for i in range(num_test)}
    train = [c for c in cases if c.case_id not in test_ids][:num_train]
    test = [c for c in cases if c.case_id in test_ids]
    data, held = work / "train_data", work / "held_out"
    if not (data / "dataset.json").is_file():
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(held, ignore_errors=True)
        for folder in (data / "imagesTr", data / "labelsTr", held / "images", held / "labels"):
            folder.mkdir(parents=True)
        for case in train:
            for path in case.image_paths:
                (data / "imagesTr" / path.name).symlink_to(path)
            (data / "labelsTr" / case.label_path.name).symlink_to(case.label_path)
        for case in test:
            for path in case.image_paths:
                (held / "images" / path.name).symlink_to(path)
            (held / "labels" / case.label_path.name).symlink_to(case.label_path)
        meta = json.loads((source / "dataset.json").read_text(encoding="utf-8"))
        for key in ("training", "test", "numTest"):
            meta.pop(key, None)
        meta["numTraining"] = len(train)
        (data / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return data, held


def train_model(data: Path, results: Path, budget: float) -> None:
    from medseg.pipeline import plan, preprocess, train

    if any((results / "3d_fullres" / "fold_all").glob("checkpoint_best.pt")):
        say(f"reusing the model in {results}")
        return
    say(f"plan + preprocess {data}")
    plan(data, results, progress=False, jobs=1)
    preprocess(results, configurations=["3d_fullres"], jobs=1, progress=False)
    say(f"train 3d_fullres fold all for {budget:.0f} s")
    out = train(
        results,
        "3d_fullres",
        "all",
        time_budget_s=budget,
        epochs=1000,
        num_workers=0,
        validate=False,
        progress=False,
        precision="fp32",
    )
    say(f"trained: {out['fit']['steps']} steps in {out['fit']['seconds']:.0f} s")


def robustness_table(summary: dict) -> list[str]:
    perturbations = summary["perturbations"]
    levels = len(next(iter(perturbations.values()))["levels"])
    lines = [
        f"Dice (mean over labels, then mean ± std over {summary['n_cases']} held-out cases)",
        "| perturbation | parameter | "
        + " | ".join(f"level {k}" for k in range(levels))
        + " | Dice drop at the last level | HD95 increase (mm) |",
        "|---" * (levels + 4) + "|",
    ]
    for name, entry in perturbations.items():
        cells = []
        for level in entry["levels"]:
            stats = level["labels"]["all"]["dice"]
            cells.append(f"{stats['mean']:.3f} ± {stats['std']:.3f} [{level['parameter']:.3g}]")
        last = entry["levels"][-1]["labels"]["all"]
        lines.append(
            f"| {name} | {entry['parameter_name']} | "
            + " | ".join(cells)
            + f" | {last['dice_drop']:.3f} | {last['hd95_increase']:.2f} |"
        )
    return lines


def uncertainty_table(pred: Path, evaluation: Path) -> list[str]:
    from medseg.report.results import rank_cases
    from medseg.report.uncertainty import read_uncertainty_csv, uncertainty_correlation

    with open(evaluation / "per_case.csv", newline="", encoding="utf-8") as f:
        rows = [
            {"case": r["case"], "label": r["label"], "dice": float(r["dice"])}
            for r in csv.DictReader(f)
        ]
    dice = dict(rank_cases(rows))
    uncertainty = read_uncertainty_csv(pred / "uncertainty.csv")
    lines = [
        "| entropy over | Spearman rho with case Dice | p | n |",
        "|---|---|---|---|",
    ]
    for key in ("mean_entropy", "foreground_entropy"):
        stats = uncertainty_correlation({c: v[key] for c, v in uncertainty.items()}, dice)
        lines.append(f"| {key} | {stats['rho']:.3f} | {stats['p']:.3g} | {stats['n']} |")
    worst_first = sorted(dice, key=lambda c: (dice[c], c))
    top = sorted(uncertainty, key=lambda c: -uncertainty[c]["mean_entropy"])[:3]
    lines += ["", "| most uncertain case | mean entropy | Dice | Dice rank (1 = worst) |"]
    lines.append("|---|---|---|---|")
    for case in top:
        rank = worst_first.index(case) + 1 if case in dice else math.nan
        lines.append(
            f"| {case} | {uncertainty[case]['mean_entropy']:.4f} | {dice.get(case, math.nan):.3f}"
            f" | {rank} of {len(dice)} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/medseg_bench_robustness"))
    parser.add_argument("--results", type=Path, default=None, help="Reuse a trained model.")
    parser.add_argument("--budget", type=float, default=480.0, help="Training seconds.")
    parser.add_argument("--train-cases", type=int, default=80)
    parser.add_argument("--cases", type=int, default=15, help="Held-out cases.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mirror", action="store_true", help="Test-time mirroring (8x slower).")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not (DATA / "dataset.json").is_file():
        print(f"skipped: {DATA} not found")
        return 0
    if args.quick:
        args.budget, args.cases, args.train_cases = 30.0, 4, 12
    torch.set_num_threads(args.threads)
    from medseg.evaluation import evaluate_folders
    from medseg.evaluation.robustness import robustness
    from medseg.inference import predict

    work = args.work
    data, held = split_cases(DATA, work, args.train_cases, args.cases)
    results = args.results or work / "results"
    if args.results is None:
        train_model(data, results, args.budget)

    t0 = time.perf_counter()
    say(f"robustness on {args.cases} held-out cases")
    summary = robustness(
        results,
        held / "images",
        held / "labels",
        work / "robustness",
        mirror=args.mirror,
        device="cpu",
        overwrite=True,
    )
    say(f"robustness done in {time.perf_counter() - t0:.0f} s")
    lines = robustness_table(summary)

    t0 = time.perf_counter()
    pred = work / "predictions"
    predict(
        held / "images",
        pred,
        results,
        mirror=args.mirror,
        device="cpu",
        save_uncertainty=True,
        overwrite=True,
    )
    evaluate_folders(pred, held / "labels", work / "evaluation", jobs=1, overwrite=True)
    say(f"predict + evaluate done in {time.perf_counter() - t0:.0f} s")
    lines += ["", *uncertainty_table(pred, work / "evaluation")]
    text = "\n".join(lines)
    print(text)
    (work / "robustness_benchmark.md").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
