"""Accuracy within a CPU time budget on the real datasets in ../shared/data (a table, not a test).

For each dataset: plan (with the time budget, so the planner measures step times and picks
the configuration), preprocess, train on a training split with the budget, predict a held-out
split that training never saw, and evaluate. Prints Dice per label next to a published
reference figure, with the steps reached, time per epoch and the share spent waiting for data.

    .venv/bin/python benchmarks/pipeline.py --datasets hippocampus --budget 60m
    .venv/bin/python benchmarks/pipeline.py --quick          # 3 minutes per dataset

The held-out split: the dataset's official labelled test split where it has one (DRIVE's
``imagesTs``/``labelsTs``), otherwise every 5th case (sorted), never trained on (the folders
here already lack the organisers' hold-out cases).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from medseg.cli.options import parse_duration
from medseg.data import load_dataset
from medseg.pipeline import evaluate, plan, predict, preprocess, train

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Best published figures we can cite for each set (mean Dice per label).
REFERENCE = {
    "hippocampus": (
        "nnU-Net 3D full-res, MSD test set (seed 004)",
        {"Anterior": 0.90, "Posterior": 0.89},
    ),
    "acdc": ("nnU-Net, ACDC test set (Isensee et al. 2021)", {"RV": 0.92, "MYO": 0.90, "LV": 0.95}),
    "montgomery_cxr": ("U-Net lung fields, Montgomery (reported ~0.95-0.97)", {"lung": 0.96}),
    "drive": ("U-Net vessels, DRIVE test (Ronneberger-style, ~0.80-0.83 F1)", {"vessel": 0.82}),
    "isbi2012_em": (
        "U-Net membranes (Ronneberger 2015: warping error; ~0.90 F1 typical)",
        {"membrane": 0.90},
    ),
}


def split_dataset(source: Path, work: Path) -> tuple[Path, Path]:
    """Symlink a train set (4 of every 5 cases) and a test set (every 5th) out of ``source``."""
    dataset = load_dataset(source)
    train_dir, test_dir = work / "train", work / "test"
    for folder in (train_dir, test_dir):
        (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
        (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    meta = json.loads((source / "dataset.json").read_text(encoding="utf-8"))
    meta.pop("training", None)
    official = source / "labelsTs"
    # an official labelled test split (DRIVE) is used as is; otherwise every 5th case is held out
    test_ids = (
        [] if official.is_dir() else [c.case_id for i, c in enumerate(dataset.cases) if i % 5 == 4]
    )
    for case in dataset.cases:
        target = test_dir if case.case_id in test_ids else train_dir
        for path in case.image_paths:
            (target / "imagesTr" / path.name).symlink_to(path)
        (target / "labelsTr" / case.label_path.name).symlink_to(case.label_path)
    if official.is_dir():
        for label in sorted(official.iterdir()):
            test_ids.append(label.name.split(".")[0])
            (test_dir / "labelsTr" / label.name).symlink_to(label)
            for image in sorted((source / "imagesTs").glob(f"{test_ids[-1]}_*")):
                (test_dir / "imagesTr" / image.name).symlink_to(image)
    for folder, n in (
        (
            train_dir,
            len(dataset.cases) - len(test_ids) if not official.is_dir() else len(dataset.cases),
        ),
        (test_dir, len(test_ids)),
    ):
        text = json.dumps({**meta, "numTraining": n}, indent=2)
        (folder / "dataset.json").write_text(text, encoding="utf-8")
    return train_dir, test_dir


def run(name: str, budget_s: float, work: Path) -> dict:
    source = SHARED / name
    shutil.rmtree(work, ignore_errors=True)
    train_dir, test_dir = split_dataset(source, work)
    results = work / "results"
    t0 = time.perf_counter()
    plans = plan(train_dir, results, time_budget_s=budget_s, progress=False)
    config = plans.recommended or "2d"
    preprocess(results, configurations=[config], progress=False)
    prep_s = time.perf_counter() - t0
    out = train(
        results,
        config,
        "all",
        epochs=plans[config].num_epochs,
        time_budget_s=budget_s,
        validate=False,
        progress=True,
    )
    predict(
        test_dir / "imagesTr",
        work / "pred",
        results,
        configurations=[config],
        folds=["all"],
        mirror=True,
    )
    labels = {k: v for k, v in load_dataset(train_dir).foreground_labels.items()}
    summary = evaluate(
        work / "pred",
        test_dir / "labelsTr",
        work / "eval",
        labels={k: (v,) for k, v in labels.items()},
        jobs=2,
    )
    rows = list(csv.DictReader(open(results / config / "fold_all" / "log.csv", encoding="utf-8")))
    return {
        "dataset": name,
        "configuration": config,
        "plan": plans[config],
        "dice": {k: summary["per_label"][k]["dice"]["mean"] for k in labels},
        "steps": out["fit"]["steps"],
        "epochs": out["fit"]["epochs"],
        "train_s": out["fit"]["seconds"],
        "prep_s": prep_s,
        "epoch_s": sum(float(r["epoch_seconds"]) for r in rows) / max(len(rows), 1),
        "wait": sum(float(r["data_wait_share"]) for r in rows) / max(len(rows), 1),
        "n_test": summary["n_cases"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="hippocampus,montgomery_cxr,isbi2012_em,drive,acdc")
    parser.add_argument("--budget", default="60m", help="training time budget per dataset")
    parser.add_argument("--quick", action="store_true", help="3 minutes per dataset")
    parser.add_argument(
        "--work", default=os.environ.get("TMPDIR", "/tmp") + "/medseg_pipeline_bench"
    )
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the real datasets are needed")
    budget = 180.0 if args.quick else parse_duration(args.budget)
    torch.set_num_threads(os.cpu_count() or 1)
    results = []
    for name in args.datasets.split(","):
        result = run(name, budget, Path(args.work) / name)
        results.append(result)
        print(
            json.dumps(
                {
                    **result,
                    "plan": str(result["plan"].patch_size) + f" x {result['plan'].batch_size}",
                }
            ),
            flush=True,
        )  # each dataset as it finishes, in case a later one fails
    print(
        f"\nCPU budget {budget / 60:.0f} min per dataset, {os.cpu_count()} cores, "
        f"torch {torch.__version__}\n"
    )
    print(
        "| dataset | config | patch x batch | steps | s/epoch | data wait | test cases "
        "| Dice per label | reference |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ref_name, ref = REFERENCE.get(r["dataset"], ("-", {}))
        dice = ", ".join(
            f"{k} {v:.3f}" + (f" (ref {ref[k]:.2f})" if k in ref else "")
            for k, v in r["dice"].items()
        )
        p = r["plan"]
        print(
            f"| {r['dataset']} | {r['configuration']} | {p.patch_size} x {p.batch_size} "
            f"| {r['steps']} | {r['epoch_s']:.1f} | {r['wait']:.0%} | {r['n_test']} | {dice} "
            f"| {ref_name} |"
        )


if __name__ == "__main__":
    main()
