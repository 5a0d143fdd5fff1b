"""Accuracy of the pipeline's choices under one fixed CPU budget (issue 13; tables, not a test).

Each experiment trains every row of its table on the same 5-fold cross-validation splits that
the pipeline makes (``splits.json``, folds 0, 1, 2 by default) with the SAME training time
budget per fold (``--budget``; ``--epochs`` is only an upper bound), then reads the fold's
full-case validation Dice (original geometry, mean over validation cases and foreground
labels). It prints, per row: the budget, the optimiser steps reached in each fold, the Dice of
each fold and mean ± std over folds (sample std), and writes the tables to
``<work>/choices_<experiment>.md`` and all finished tables to ``docs/choices_benchmarks.md``.

Experiments (run in the order given; default ``sparse,networks,losses,elastic``):

* ``networks``: unet / attention_unet / residual_unet / unet_plusplus on Hippocampus
  (``3d_fullres``) and Montgomery CXR (``2d``), a subset of ``--cases`` cases of each.
* ``losses``: dice_ce / dice / focal / tversky on DRIVE (``2d``, its 20 training cases).
* ``elastic``: elastic deformation probability 0 vs 0.5 on DRIVE and ISBI 2012 EM (``2d``).
* ``transformers``: unet / transunet / swin_unet / unetr (``cpu`` presets) on Hippocampus and
  ACDC (``3d_fullres``; ``--datasets hippocampus`` for one), a subset of ``--cases`` cases.
* ``sparse``: Hippocampus (``3d_fullres``) with dense labels vs every 5th slice along axis 0
  annotated (``medseg.data.sparsify``: other voxels ``ignore``); the sparse model's
  validation predictions are scored against the DENSE labels.

    .venv/bin/python benchmarks/choices.py                          # all, 40 s per fold
    .venv/bin/python benchmarks/choices.py --experiment losses --budget 60
    .venv/bin/python benchmarks/choices.py --quick                  # smoke: 5 s, 1 fold

Training runs in float32 (``precision="fp32"``): the bf16 autocast path on CPUs without
native bf16 can be slow or unstable, and one precision for every row keeps them comparable.
Finished folds are cached in ``<results>/bench_runs.json``, so a rerun (same budget) only
trains what is missing; the ``unet`` Hippocampus row of ``networks`` is the ``dense`` row
of ``sparse``, and the DRIVE ``elastic 0`` row of ``elastic`` is the ``dice_ce`` row of
``losses`` (same data, splits, plan and budget: the planner's defaults).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from medseg.data import load_dataset
from medseg.pipeline import evaluate, plan, preprocess, train
from medseg.planning.choices import PlanChoices

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DOC = Path(__file__).resolve().parents[1] / "docs" / "choices_benchmarks.md"
#: Fixed validation batches after each epoch: with 250 steps per epoch a budget of tens of
#: seconds ends inside the first epoch, so they only pick the one checkpoint; one saves time.
VAL_BATCHES = 1
#: Heading of the hand-written reading in the doc, which ``write_doc`` keeps.
READING = "## Reading"
EXPERIMENTS = ("sparse", "networks", "losses", "elastic", "transformers")
TITLES = {
    "sparse": "Sparse annotation: Hippocampus, dense vs every 5th axial slice",
    "networks": "Networks",
    "losses": "Losses: DRIVE",
    "elastic": "Elastic deformation: DRIVE and ISBI 2012 EM",
    "transformers": "Transformers: U-Net vs TransUNet, Swin-UNet, UNETR (cpu presets)",
}


@dataclass(frozen=True)
class Row:
    """One row of a table: a plan variant (None: the planner's defaults) of a configuration."""

    name: str
    config: str
    variant: str | None = None
    choices: PlanChoices | None = None

    @property
    def configuration(self) -> str:
        return self.config if self.variant is None else f"{self.config}-{self.variant}"


@dataclass
class Setup:
    budget: float
    folds: list[int]
    epochs: int
    workers: int
    threads: int
    work: Path
    cases: int  # subset size for hippocampus (0: all)
    cxr_cases: int  # subset size for montgomery_cxr (0: all)
    small_cases: int = 0  # subset size for drive / isbi2012_em (0: all; --quick: 10)
    datasets: tuple[str, ...] = ()  # only these datasets in the networks experiment (): all


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- datasets


def subset_dataset(
    source: Path, target: Path, num_cases: int, case_ids: list[str] | None = None
) -> list[str]:
    """Symlink ``num_cases`` cases of ``source`` (evenly spaced over the sorted cases; all when
    ``num_cases`` is 0 or larger), or the cases ``case_ids``, into the nnU-Net v2 folder
    ``target``; returns their ids."""
    cases = load_dataset(source).cases
    if case_ids is not None:
        cases = tuple(c for c in cases if c.case_id in set(case_ids))
    elif 0 < num_cases < len(cases):
        cases = [cases[i * len(cases) // num_cases] for i in range(num_cases)]
    if (target / "dataset.json").is_file():
        return [c.case_id for c in cases]
    shutil.rmtree(target, ignore_errors=True)
    for folder in ("imagesTr", "labelsTr"):
        (target / folder).mkdir(parents=True)
    for case in cases:
        for path in case.image_paths:
            (target / "imagesTr" / path.name).symlink_to(path)
        (target / "labelsTr" / case.label_path.name).symlink_to(case.label_path)
    meta = json.loads((source / "dataset.json").read_text(encoding="utf-8"))
    for key in ("training", "test", "numTest"):
        meta.pop(key, None)
    meta["numTraining"] = len(cases)
    # written last: its presence marks a complete subset
    (target / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return [c.case_id for c in cases]


def sparse_copy(source: Path, target: Path, every: int = 5, axis: int = 0) -> None:
    """The sparse copy of ``source``: ``medseg.data.sparsify`` where it exists, else the same
    rule here (slices ``k % every == 0`` along ``axis`` keep labels, the rest ``ignore``)."""
    if (target / "dataset.json").is_file():
        return
    try:
        from medseg.data.sparsify import sparsify_dataset
    except ImportError:
        sparsify_dataset = None
    if sparsify_dataset is not None:
        summary = sparsify_dataset(source, target, every_nth_slice=every, axis=axis)
        say(
            f"sparse copy (medseg.data.sparsify): {summary.num_cases} cases, ignore = "
            f"{summary.ignore_label}, {summary.annotated_slices}/{summary.total_slices} slices "
            f"and {summary.annotated_share:.1%} of the voxels annotated"
        )
        return
    import numpy as np

    from medseg.io import read_image, write_image

    dataset = load_dataset(source)
    ignore = max(dataset.label_values) + 1
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "labelsTr").mkdir(parents=True)
    (tmp / "imagesTr").mkdir()
    for case in dataset.cases:
        for path in case.image_paths:
            (tmp / "imagesTr" / path.name).symlink_to(path.resolve())
        label = read_image(case.label_path)
        array = np.asarray(label.array).astype(np.uint8)
        keep = (np.arange(array.shape[axis]) % every == 0).reshape(
            [-1 if d == axis else 1 for d in range(array.ndim)]
        )
        sparse = np.where(keep, array, np.uint8(ignore))
        write_image(label.with_array(sparse), tmp / "labelsTr" / case.label_path.name)
    meta = json.loads((source / "dataset.json").read_text(encoding="utf-8"))
    meta["labels"] = {**meta["labels"], "ignore": ignore}
    (tmp / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    tmp.rename(target)
    say(f"sparse copy (written here): {len(dataset.cases)} cases, ignore = {ignore}")


# ---------------------------------------------------------------- training


def prepare(data: Path, results: Path, config: str, rows: list[Row]) -> None:
    """Plan (base plans, then each row's variant) and preprocess ``config`` once."""
    if not (results / "plans.json").is_file():
        say(f"plan {data.name} -> {results}")
        plan(data, results, progress=False, jobs=1)
    planned = json.loads((results / "plans.json").read_text(encoding="utf-8"))["configurations"]
    for row in rows:
        if row.variant is not None and row.configuration not in planned:
            plan(data, results, progress=False, jobs=1, variant=row.variant, choices=row.choices)
    t0 = time.perf_counter()
    done = preprocess(results, configurations=[config], jobs=1, progress=False)
    if done[config]["processed"]:
        say(f"preprocessed {config}: {done[config]} in {time.perf_counter() - t0:.0f} s")


def train_fold(results: Path, row: Row, fold: int, setup: Setup) -> dict:
    """Train (or take from the cache) one fold of one row."""
    cache_path = results / "bench_runs.json"
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.is_file() else {}
    key = (
        f"{row.configuration}|fold{fold}|{setup.budget:g}s|w{setup.workers}|e{setup.epochs}"
        f"|v{VAL_BATCHES}|t{setup.threads}"
    )
    if key in cache:
        run = cache[key]
        say(f"  {row.name} fold {fold}: cached, Dice {run['dice']:.4f}")
        return run
    shutil.rmtree(results / row.configuration / f"fold_{fold}", ignore_errors=True)
    t0 = time.perf_counter()
    out = train(
        results,
        row.configuration,
        fold,
        epochs=setup.epochs,
        time_budget_s=setup.budget,
        num_workers=setup.workers,
        val_batches=VAL_BATCHES,
        progress=False,
        precision="fp32",
    )
    validation = out["validation"]
    run = {
        "dice": float(validation["overall"]["dice"]["mean"]),
        "steps": int(out["fit"]["steps"]),
        "train_s": float(out["fit"]["seconds"]),
        "wall_s": time.perf_counter() - t0,
        "n_val": int(validation["n_cases"]),
        "fold_dir": str(out["fit"]["fold_dir"]),
    }
    cache[key] = run
    cache_path.write_text(json.dumps(cache, indent=2), encoding="utf-8")
    say(
        f"  {row.name} fold {fold}: Dice {run['dice']:.4f}, {run['steps']} steps, "
        f"{run['train_s']:.0f} s training, {run['wall_s']:.0f} s with validation"
    )
    return run


def run_rows(label: str, data: Path, results: Path, rows: list[Row], setup: Setup) -> list[dict]:
    prepare(data, results, rows[0].config, rows)
    table = []
    for row in rows:
        say(f"{label}: {row.name} ({row.configuration})")
        runs = [train_fold(results, row, fold, setup) for fold in setup.folds]
        table.append({"dataset": label, "row": row.name, "runs": runs})
    trivial = all_foreground_dice(data, results, setup.folds)
    if trivial is not None:
        TRIVIAL[label] = trivial
    return table


#: Per dataset with one foreground label: the Dice of predicting every pixel as foreground.
TRIVIAL: dict[str, float] = {}


def all_foreground_dice(data: Path, results: Path, folds: list[int]) -> float | None:
    """Mean over ``folds`` of the mean validation Dice of an all-foreground prediction (the
    level an untrained network that marks everything reaches); None with several labels."""
    from medseg.io import read_image

    dataset = load_dataset(data)
    if len(dataset.foreground_labels) != 1:
        return None
    (value,) = dataset.foreground_labels.values()
    splits = json.loads((results / "splits.json").read_text(encoding="utf-8"))
    per_fold = []
    for fold in folds:
        dice = []
        for case_id in splits[fold]["val"]:
            array = read_image(dataset.case(case_id).label_path).array
            foreground = int((array == value).sum())
            dice.append(2 * foreground / (foreground + array.size))
        per_fold.append(statistics.fmean(dice))
    return statistics.fmean(per_fold)


# ---------------------------------------------------------------- tables


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else float("nan")


def fmt_pm(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}" if std == std else f"{mean:.3f}"


def table_markdown(rows: list[dict], setup: Setup, extra: str | None = None) -> list[str]:
    """The markdown table of ``rows`` (each ``dataset``, ``row``, ``runs``), plus which
    differences exceed the fold spread."""
    folds = " | ".join(f"Dice fold {f}" for f in setup.folds)
    lines = [
        f"| dataset | row | budget / fold | trained s (mean) | steps per fold | {folds} "
        "| mean ± std |" + (f" {extra} |" if extra else ""),
        "|---|---|---|---|---|" + "---|" * len(setup.folds) + "---|" + ("---|" if extra else ""),
    ]
    for r in rows:
        dice = [run["dice"] for run in r["runs"]]
        steps = "/".join(str(run["steps"]) for run in r["runs"])
        trained = statistics.fmean(run["train_s"] for run in r["runs"])
        cells = " | ".join(f"{d:.3f}" for d in dice)
        line = (
            f"| {r['dataset']} | {r['row']} | {setup.budget:g} s | {trained:.0f} s | {steps} "
            f"| {cells} | {fmt_pm(*mean_std(dice))} |"
        )
        lines.append(line + (f" {r.get('extra', '')} |" if extra else ""))
    lines += ["", *spread_verdicts(rows)]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        if dataset in TRIVIAL:
            lines.append(
                f"- {dataset}: marking every pixel as foreground would score "
                f"{TRIVIAL[dataset]:.3f} on the same validation cases (an untrained level)"
            )
    return lines


def spread_verdicts(rows: list[dict]) -> list[str]:
    """Per dataset, every pair of rows: does the difference of the means exceed the larger of
    the two fold stds?"""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        group = [r for r in rows if r["dataset"] == dataset]
        stats = {r["row"]: mean_std([run["dice"] for run in r["runs"]]) for r in group}
        names = list(stats)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                (ma, sa), (mb, sb) = stats[a], stats[b]
                spread = max(sa, sb)
                diff = ma - mb
                if spread != spread:
                    verdict = "no fold spread (one fold)"
                elif abs(diff) > spread:
                    better = a if diff > 0 else b
                    verdict = f"**exceeds** the fold spread ({better} higher)"
                else:
                    verdict = "within the fold spread"
                out.append(
                    f"- {dataset}: {a} vs {b}: difference {diff:+.3f}, larger std "
                    f"{spread:.3f}: {verdict}"
                )
    return out


def emit(experiment: str, lines: list[str], setup: Setup, notes: list[str]) -> None:
    text = "\n".join([f"### {TITLES[experiment]}", "", *notes, *([""] if notes else []), *lines])
    print("\n" + text + "\n", flush=True)
    (setup.work / f"choices_{experiment}.md").write_text(text + "\n", encoding="utf-8")


# ---------------------------------------------------------------- experiments


def exp_networks(setup: Setup) -> None:
    nets = ("unet", "attention_unet", "residual_unet", "unet_plusplus")
    rows = []
    for name, config in (("hippocampus", "3d_fullres"), ("montgomery_cxr", "2d")):
        if setup.datasets and name not in setup.datasets:
            continue
        if not (SHARED / name).is_dir():
            say(f"networks: {SHARED / name} absent, skipped")
            continue
        n = setup.cases if name == "hippocampus" else setup.cxr_cases
        root = setup.work / f"{name}_n{n}"
        data = root / "data"
        subset_dataset(SHARED / name, data, n)
        table_rows = [
            Row(
                net,
                config,
                None if net == "unet" else net.replace("_", ""),
                PlanChoices(network=net),
            )
            for net in nets
        ]
        rows += run_rows(name, data, root / "results", table_rows, setup)
    if rows:
        emit("networks", table_markdown(rows, setup), setup, subset_note(setup, "networks"))


def exp_transformers(setup: Setup) -> None:
    """The seeds' Synapse question on our data: does a transformer beat the U-Net at the same
    plan and CPU budget? The transformers' ``cpu`` presets; ``--network`` rounds the planned
    patch to each network's divisor (16 for TransUNet and UNETR, 8 for Swin-UNet)."""
    nets = ("unet", "transunet", "swin_unet", "unetr")
    rows = []
    for name in ("hippocampus", "acdc"):
        if (setup.datasets and name not in setup.datasets) or not (SHARED / name).is_dir():
            continue
        root = setup.work / f"{name}_n{setup.cases}"
        subset_dataset(SHARED / name, root / "data", setup.cases)
        table_rows = [
            Row(
                net,
                "3d_fullres",
                None if net == "unet" else net.replace("_", ""),
                PlanChoices(network=net),
            )
            for net in nets
        ]
        rows += run_rows(name, root / "data", root / "results", table_rows, setup)
    if rows:
        emit("transformers", table_markdown(rows, setup), setup, subset_note(setup, "transformers"))


def exp_losses(setup: Setup) -> None:
    if not (SHARED / "drive").is_dir():
        say("losses: drive absent, skipped")
        return
    root = setup.work / f"drive_n{setup.small_cases}"
    data = root / "data"
    subset_dataset(SHARED / "drive", data, setup.small_cases)
    rows = [
        Row(loss, "2d", None if loss == "dice_ce" else loss, PlanChoices(loss=loss))
        for loss in ("dice_ce", "dice", "focal", "tversky")
    ]
    table = run_rows("drive", data, root / "results", rows, setup)
    emit("losses", table_markdown(table, setup), setup, subset_note(setup, "losses"))


def exp_elastic(setup: Setup) -> None:
    table = []
    for name in ("drive", "isbi2012_em"):
        if not (SHARED / name).is_dir():
            say(f"elastic: {name} absent, skipped")
            continue
        root = setup.work / f"{name}_n{setup.small_cases}"
        data = root / "data"
        subset_dataset(SHARED / name, data, setup.small_cases)
        rows = [Row("elastic 0", "2d"), Row("elastic 0.5", "2d", "el05", PlanChoices(elastic=0.5))]
        table += run_rows(name, data, root / "results", rows, setup)
    if table:
        emit("elastic", table_markdown(table, setup), setup, subset_note(setup, "elastic"))


def exp_sparse(setup: Setup) -> None:
    name = "hippocampus"
    if not (SHARED / name).is_dir():
        say("sparse: hippocampus absent, skipped")
        return
    config = "3d_fullres"
    root = setup.work / f"{name}_n{setup.cases}"
    dense_data = root / "data"
    subset_dataset(SHARED / name, dense_data, setup.cases)
    sparse_root = setup.work / f"{name}_n{setup.cases}_sparse5"
    sparse_copy(dense_data, sparse_root / "data", every=5, axis=0)
    dense = run_rows(name, dense_data, root / "results", [Row("unet", config)], setup)[0]
    sparse = run_rows(
        name, sparse_root / "data", sparse_root / "results", [Row("unet", config)], setup
    )[0]
    splits = json.loads((sparse_root / "results" / "splits.json").read_text(encoding="utf-8"))
    dense_splits = json.loads((root / "results" / "splits.json").read_text(encoding="utf-8"))
    if splits != dense_splits:
        sys.exit("sparse and dense results have different splits.json; cannot compare")
    # the sparse model's validation predictions, scored against the dense labels
    sparse_runs = []
    for fold, run in zip(setup.folds, sparse["runs"], strict=True):
        fold_dir = Path(run["fold_dir"])
        summary = evaluate(
            fold_dir / "validation",
            dense_data / "labelsTr",
            fold_dir / "evaluation_dense",
            labels=[1, 2],
            ignore_label=None,
            cases=splits[fold]["val"],
            jobs=1,
            overwrite=True,
        )
        sparse_runs.append({**run, "dice": float(summary["overall"]["dice"]["mean"])})
        say(
            f"  sparse fold {fold}: Dice vs dense labels {sparse_runs[-1]['dice']:.4f} "
            f"(vs its own sparse labels {run['dice']:.4f})"
        )
    dense_mean = mean_std([r["dice"] for r in dense["runs"]])[0]
    sparse_mean = mean_std([r["dice"] for r in sparse_runs])[0]
    ratio = sparse_mean / dense_mean if dense_mean > 0 else float("nan")
    per_fold = ", ".join(
        f"{s['dice'] / d['dice']:.1%}" for s, d in zip(sparse_runs, dense["runs"], strict=True)
    )
    rows = [
        {"dataset": name, "row": "dense labels", "runs": dense["runs"], "extra": "100 %"},
        {
            "dataset": name,
            "row": "every 5th slice (axis 0)",
            "runs": sparse_runs,
            "extra": f"{ratio:.1%} (per fold {per_fold})",
        },
    ]
    lines = table_markdown(rows, setup, extra="of dense mean")
    verdict = "meets" if ratio >= 0.95 else "misses"
    lines.append(
        f"- sparse / dense mean Dice = {ratio:.1%}: {verdict} the target of >= 95 % "
        "(both scored against the dense labels)"
    )
    emit("sparse", lines, setup, subset_note(setup, "sparse"))


def subset_note(setup: Setup, experiment: str) -> list[str]:
    n = setup.cases or "all"
    return {
        "networks": [
            f"Hippocampus `3d_fullres` ({n} cases) and Montgomery `2d` "
            f"({setup.cxr_cases or 'all'} cases): subsets evenly spaced over the sorted cases; "
            "validation = 1/5 of the subset per fold."
        ],
        "losses": ["DRIVE `2d`, its 20 official training cases (16 train / 4 validation)."],
        "transformers": [
            f"Hippocampus and ACDC `3d_fullres`, subsets of {n} cases evenly spaced over the "
            "sorted cases; validation = 1/5 of the subset per fold; each network at its "
            "`cpu` preset, the patch rounded to its divisor (the reason is in plans.json)."
        ],
        "elastic": [
            "DRIVE (20 cases) and ISBI 2012 EM (30 cases) `2d`. ISBI's cases are consecutive "
            "sections of one stack and the folds are shuffled, so neighbouring sections leak "
            "between train and validation (the same for both rows)."
        ],
        "sparse": [
            f"Hippocampus `3d_fullres`, subset of {n} cases; the sparse copy keeps the slices "
            "k % 5 == 0 along array axis 0 (other voxels `ignore`, left out of the loss). "
            "Both models are scored on the same validation cases against the dense labels."
        ],
    }[experiment]


def write_doc(setup: Setup, experiments: list[str], doc: Path) -> None:
    """All finished tables (``<work>/choices_<experiment>.md``) with the run's header."""
    cpu = platform.processor() or "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), cpu
        )
    except OSError:
        pass
    parts = [
        "# Accuracy of the pipeline's choices under a fixed CPU budget",
        "",
        "Written by `benchmarks/choices.py` (issue 13). "
        f"Machine: {cpu}, {os.cpu_count()} cores (shared with other jobs, so step counts "
        f"vary); torch {torch.__version__}; {dt.date.today().isoformat()}.",
        "",
        f"- Training budget: **{setup.budget:g} s per fold for every row** "
        f"(`time_budget_s`; `--epochs {setup.epochs}` is only an upper bound; the poly "
        "learning-rate schedule follows the share of the budget used (`run_lr_factor`)); "
        'float32 (`precision="fp32"`: the bf16 '
        f"autocast path on this CPU can be slow or unstable); {setup.threads} torch "
        "thread(s) (`--threads`: with other jobs on the 2 cores, two threads made a "
        f"Hippocampus step ~2.7x slower than one) and {setup.workers} loader worker(s) "
        "(data loading in the training process); planner defaults apart from the row's "
        "choice.",
        f"- Folds {', '.join(map(str, setup.folds))} of the pipeline's 5-fold cross-validation "
        "splits (`splits.json`, seed 12345); Dice = the fold's full-case validation Dice in "
        "original geometry, mean over validation cases and foreground labels; mean ± sample "
        "std over the folds. `trained s`: the seconds training counted (the budget is checked "
        "after each step, so a run overshoots by up to one step plus one validation batch: "
        "rows with slow steps train a little longer, but reach fewer steps).",
        f"- Subsets: Hippocampus {setup.cases or 'all'} of 208 cases, Montgomery "
        f"{setup.cxr_cases or 'all'} of 138 (evenly spaced over the sorted cases), DRIVE its "
        "20 training cases, ISBI 2012 EM its 30 cases.",
        "- A difference **exceeds the fold spread** when the difference of the two means is "
        "larger than the larger of the two stds. With budgets this short (a few to a few tens "
        "of optimiser steps, see `steps per fold`) the models are far from converged: a "
        "ranking here may not hold at full training, and heavier networks are penalised by "
        "reaching fewer steps.",
        "",
    ]
    missing = []
    for experiment in experiments:
        path = setup.work / f"choices_{experiment}.md"
        if path.is_file():
            parts += [path.read_text(encoding="utf-8"), ""]
        else:
            missing.append(experiment)
    if missing:
        parts += [f"Not finished in this run: {', '.join(missing)}.", ""]
    # a hand-written reading of the tables (from its heading on) is kept
    old = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    if READING in old:
        parts.append(old[old.index(READING) :].rstrip() + "\n")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(parts), encoding="utf-8")
    say(f"wrote {doc}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--experiment", default=",".join(EXPERIMENTS), help=f"comma list of {EXPERIMENTS}"
    )
    parser.add_argument("--budget", type=float, default=40.0, help="training seconds per fold")
    parser.add_argument("--folds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=1000, help="upper bound only")
    parser.add_argument("--cases", type=int, default=60, help="hippocampus subset (0: all)")
    parser.add_argument("--cxr-cases", type=int, default=40, help="montgomery subset (0: all)")
    parser.add_argument(
        "--workers", type=int, default=0, help="loader workers (0: in the training process)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared 2-core machine two threads wait on each other)",
    )
    parser.add_argument(
        "--datasets", default="", help="networks experiment: only these (e.g. montgomery_cxr)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke: 5 s, fold 0, 10 cases")
    parser.add_argument("--work", default="/tmp/medseg_bench_choices")
    parser.add_argument("--doc", default=str(DOC), help="where the combined tables go")
    parser.add_argument(
        "--doc-only", action="store_true", help="only rewrite --doc from the finished tables"
    )
    args = parser.parse_args()
    experiments = [e for e in args.experiment.split(",") if e]
    unknown = set(experiments) - set(EXPERIMENTS)
    if unknown:
        parser.error(f"unknown experiment(s) {sorted(unknown)}; choose from {EXPERIMENTS}")
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the real datasets are needed")
    work = Path(args.work)
    setup = Setup(
        budget=5.0 if args.quick else args.budget,
        folds=[0] if args.quick else [int(f) for f in args.folds.split(",")],
        epochs=args.epochs,
        workers=args.workers,
        threads=args.threads,
        work=work / "quick" if args.quick else work,
        cases=10 if args.quick else args.cases,
        cxr_cases=10 if args.quick else args.cxr_cases,
        small_cases=10 if args.quick else 0,
        datasets=tuple(d for d in args.datasets.split(",") if d),
    )
    setup.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(setup.threads)
    say(
        f"experiments {experiments}, {setup.budget:g} s per fold, folds {setup.folds}, "
        f"work {setup.work}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    doc = Path(args.doc) if not args.quick else setup.work / "choices_benchmarks.md"
    runners = {
        "networks": exp_networks,
        "losses": exp_losses,
        "elastic": exp_elastic,
        "sparse": exp_sparse,
        "transformers": exp_transformers,
    }
    if args.doc_only:
        write_doc(setup, experiments, doc)
        return
    t0 = time.perf_counter()
    for experiment in experiments:
        t1 = time.perf_counter()
        runners[experiment](setup)
        say(f"{experiment} done in {(time.perf_counter() - t1) / 60:.1f} min")
        write_doc(setup, experiments, doc)
    say(f"all done in {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
