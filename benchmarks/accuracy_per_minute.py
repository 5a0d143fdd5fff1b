"""Accuracy per CPU-minute (issue 15; a table and a curve, not a test).

Trains one held-out fold of one dataset with each time budget in ``--budgets`` (minutes), with
the planner's defaults (the same plan rule as ``medseg plan``), and reads, per run:

* the validation Dice per label (full cases, original geometry: ``medseg.pipeline.train``'s
  validation of the fold, from ``checkpoint_best.pt``);
* the optimiser steps, steps per second of training, the share of the epoch spent waiting for
  data (``log.csv``'s ``data_wait_share``, weighted by epoch length) and the share spent in the
  per-epoch validation (``val_seconds``);
* the precision the plan chose (bf16 autocast where the CPU has it, float32 otherwise).

It prints a table, writes ``<work>/accuracy_per_minute_<dataset>.json`` and a curve of Dice per
label against minutes (``.png``), and with ``--doc`` the table into
``docs/accuracy_per_minute.md``. Finished runs are cached in that JSON, so a rerun only
trains the budgets that are missing.

    .venv/bin/python benchmarks/accuracy_per_minute.py hippocampus --budgets 5,10,20,40,60
    .venv/bin/python benchmarks/accuracy_per_minute.py acdc --budgets 10,30,60
    .venv/bin/python benchmarks/accuracy_per_minute.py drive --config 2d --budgets 2,5,10
    .venv/bin/python benchmarks/accuracy_per_minute.py phantoms --budgets 0.5,1 --cases 12   # smoke

``--cases N`` takes an evenly spaced subset (the split is made on it); ``--seeds 0,1,2`` repeats
each budget with other training seeds (the split stays fixed) and reports mean ± std.

Levers at EQUAL STEPS (``--steps``; wall-clock budgets are unreliable on a shared machine):
each run trains exactly that many optimiser steps (``--steps-per-epoch`` per epoch, the plan's
LR schedule decaying over them) with a weight EMA of decay ``--ema`` and each LR warm-up in
``--warmups``, then validates BOTH weights of its last checkpoint (``checkpoint_latest.pt``):
the EMA (its ``network_state``) and the plain training weights (its ``ema`` entry). EMA does
not change training, so the two rows of a run differ only by the averaging.

    .venv/bin/python benchmarks/accuracy_per_minute.py hippocampus --steps 300,640 \\
        --warmups 0,50 --ema 0.99 --seeds 0,1 --threads 1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from choices import SHARED, say, subset_dataset  # noqa: E402

from medseg.data import load_dataset  # noqa: E402
from medseg.device import available_cpus  # noqa: E402
from medseg.pipeline import plan, preprocess, train, validate_fold  # noqa: E402
from medseg.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

DATASETS = {
    "hippocampus": ("hippocampus", "3d_fullres"),
    "acdc": ("acdc", "3d_fullres"),
    "drive": ("drive", "2d"),
    "montgomery": ("montgomery_cxr", "2d"),
    "isbi": ("isbi2012_em", "2d"),
}
DOC = Path(__file__).resolve().parents[1] / "docs" / "accuracy_per_minute.md"


def dataset_folder(name: str, work: Path, cases: int) -> Path:
    """The dataset to train on: a folder under ``../shared/data`` (a subset of ``cases``
    cases when asked), a path, or ``phantoms`` (generated)."""
    if name == "phantoms":
        from medseg.data.phantoms import generate_dataset

        folder = work / "phantoms_data"
        if not (folder / "dataset.json").is_file():
            generate_dataset(folder, spatial_dims=3, num_cases=cases or 12, seed=0)
        return folder
    source = Path(name) if Path(name).is_dir() else find_shared(DATASETS[name][0])
    if not cases:
        return source
    target = work / f"{source.name}_{cases}cases"
    subset_dataset(source, target, cases)
    return target


def find_shared(fragment: str) -> Path:
    """The folder under ``../shared/data`` whose name contains ``fragment`` (case-insensitive)
    and holds a ``dataset.json`` (searched two levels deep)."""
    for path in sorted(SHARED.glob("*")) + sorted(SHARED.glob("*/*")):
        if fragment.lower() in path.name.lower() and (path / "dataset.json").is_file():
            return path
    raise SystemExit(f"no dataset matching '{fragment}' under {SHARED}")


def log_shares(fold_dir: Path) -> tuple[float, float]:
    """(data-wait share, validation share) of the run's epochs, weighted by epoch length."""
    with open(fold_dir / "log.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    seconds = [float(r["epoch_seconds"]) for r in rows]
    total = max(sum(seconds), 1e-9)
    wait = sum(float(r["data_wait_share"]) * s for r, s in zip(rows, seconds, strict=True))
    validation = sum(float(r.get("val_seconds") or 0.0) for r in rows)
    return wait / total, validation / total


def train_budget(results: Path, config: str, minutes: float, seed: int, args) -> dict:
    """One run of ``minutes`` of training on fold ``args.fold`` (a fresh fold folder)."""
    shutil.rmtree(results / config / f"fold_{args.fold}", ignore_errors=True)
    out = train(
        results,
        config,
        args.fold,
        epochs=10_000,  # the budget decides
        time_budget_s=minutes * 60,
        num_workers=args.workers,
        seed=seed,
        progress=False,
    )
    fit, validation = out["fit"], out["validation"]
    wait, val_share = log_shares(Path(fit["fold_dir"]))
    per_label = {
        label: float(stats["dice"]["mean"]) for label, stats in validation["per_label"].items()
    }
    return {
        "minutes": minutes,
        "seed": seed,
        "dice": per_label,
        "mean_dice": float(validation["overall"]["dice"]["mean"]),
        "steps": int(fit["steps"]),
        "train_s": float(fit["seconds"]),
        "steps_per_s": int(fit["steps"]) / max(float(fit["seconds"]), 1e-9),
        "data_wait_share": wait,
        "val_share": val_share,
        "n_val": int(validation["n_cases"]),
    }


def per_label_dice(validation: dict) -> dict[str, float]:
    return {label: float(s["dice"]["mean"]) for label, s in validation["per_label"].items()}


def train_steps(results: Path, config: str, steps: int, seed: int, warmup: int, args) -> dict:
    """One run of ``steps`` optimiser steps; the full-case validation Dice of its last
    checkpoint's EMA weights and of its plain weights (``checkpoint_raw.pt``)."""
    fold = results / config / f"fold_{args.fold}"
    shutil.rmtree(fold, ignore_errors=True)
    load_before = os.getloadavg()[0]
    out = train(
        results,
        config,
        args.fold,
        epochs=max(steps // args.steps_per_epoch, 1),
        steps_per_epoch=args.steps_per_epoch,
        num_workers=args.workers,
        seed=seed,
        progress=False,
        validate=False,
        ema_decay=args.ema,
        warmup_steps=warmup,
    )
    fit = out["fit"]
    load_after = os.getloadavg()[0]
    latest = load_checkpoint(fold / "checkpoint_latest.pt", kind="weights")
    plain = latest["ema"]["train_network_state"] if "ema" in latest else latest["network_state"]
    raw = {**latest, "network_state": plain}
    save_checkpoint(fold / "checkpoint_raw.pt", **raw)
    weights = {}
    for name, checkpoint in (("ema", "latest"), ("plain", "raw")):
        summary = validate_fold(results, config, args.fold, checkpoint=checkpoint, progress=False)
        weights[name] = {
            "dice": per_label_dice(summary),
            "mean_dice": float(summary["overall"]["dice"]["mean"]),
        }
    return {
        "steps": int(fit["steps"]),
        "seed": seed,
        "warmup": warmup,
        "ema": args.ema,
        "weights": weights,
        "train_s": float(fit["seconds"]),
        "steps_per_s": int(fit["steps"]) / max(float(fit["seconds"]), 1e-9),
        "load": (load_before + load_after) / 2,
    }


def lever_table(runs: list[dict], label_names: dict[str, str]) -> list[str]:
    """One row per (steps, warm-up, weights): Dice per label, mean ± std over seeds."""
    labels = list(runs[0]["weights"]["ema"]["dice"])
    heads = " | ".join(f"Dice {label_names.get(lab, lab)}" for lab in labels)
    lines = [
        f"| steps | warm-up | weights | seeds | {heads} | mean Dice | steps/s | load |",
        "|---|---|---|---|" + "---|" * len(labels) + "---|---|---|",
    ]
    for key in sorted({(r["steps"], r["warmup"]) for r in runs}):
        group = [r for r in runs if (r["steps"], r["warmup"]) == key]
        for name in ("plain", "ema"):

            def stat(values: list[float]) -> str:
                spread = statistics.stdev(values) if len(values) > 1 else float("nan")
                return fmt((statistics.fmean(values), spread))

            w = [r["weights"][name] for r in group]
            dice = " | ".join(stat([x["dice"][lab] for x in w]) for lab in labels)
            weights = name if name == "plain" else f"EMA {group[0]['ema']:g}"
            lines.append(
                f"| {key[0]} | {key[1]} | {weights} | {len(group)} | {dice} "
                f"| {stat([x['mean_dice'] for x in w])} "
                f"| {statistics.fmean(r['steps_per_s'] for r in group):.2f} "
                f"| {statistics.fmean(r['load'] for r in group):.1f} |"
            )
    return lines


def run_levers(args, config: str, results: Path, data: Path, cache: dict, cache_path: Path):
    """The ``--steps`` mode: every (steps, warm-up, seed), cached; prints the lever table."""
    runs = []
    for steps in [int(s) for s in args.steps.split(",")]:
        for warmup in [int(w) for w in args.warmups.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                key = f"{config}|fold{args.fold}|{steps}steps|warmup{warmup}|ema{args.ema:g}"
                key += f"|seed{seed}|w{args.workers}|spe{args.steps_per_epoch}"
                if key not in cache:
                    say(f"{args.dataset} {config}: {steps} steps, warm-up {warmup}, seed {seed}")
                    cache[key] = train_steps(results, config, steps, seed, warmup, args)
                    cache_path.write_text(json.dumps(cache, indent=2), encoding="utf-8")
                    say(f"  {json.dumps(cache[key]['weights'])}")
                runs.append(cache[key])
    names = {str(v): k for k, v in load_dataset(data).foreground_labels.items()}
    threads = torch.get_num_threads()
    title = f"{args.dataset} {config}, fold {args.fold}, equal steps, {threads} thread(s)"
    lines = [f"### {title}", "", *lever_table(runs, names), ""]
    print("\n".join(lines))
    if args.doc:
        DOC.write_text(DOC.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + "\n".join(lines))


def summarise(runs: list[dict]) -> list[dict]:
    """Mean (and std over seeds) per budget."""
    rows = []
    for minutes in sorted({r["minutes"] for r in runs}):
        group = [r for r in runs if r["minutes"] == minutes]
        labels = list(group[0]["dice"])

        def stat(values: list[float]) -> tuple[float, float]:
            spread = statistics.stdev(values) if len(values) > 1 else float("nan")
            return statistics.fmean(values), spread

        rows.append(
            {
                "minutes": minutes,
                "seeds": len(group),
                "dice": {lab: stat([r["dice"][lab] for r in group]) for lab in labels},
                "mean_dice": stat([r["mean_dice"] for r in group]),
                "steps": statistics.fmean(r["steps"] for r in group),
                "steps_per_s": statistics.fmean(r["steps_per_s"] for r in group),
                "data_wait_share": statistics.fmean(r["data_wait_share"] for r in group),
                "val_share": statistics.fmean(r["val_share"] for r in group),
            }
        )
    return rows


def fmt(mean_std: tuple[float, float]) -> str:
    mean, std = mean_std
    return f"{mean:.3f}" if std != std else f"{mean:.3f} ± {std:.3f}"


def table(rows: list[dict], label_names: dict[str, str]) -> list[str]:
    labels = list(rows[0]["dice"])
    heads = " | ".join(f"Dice {label_names.get(lab, lab)}" for lab in labels)
    lines = [
        f"| minutes | seeds | {heads} | mean Dice | steps | steps/s | data wait | validation |",
        "|---|---|" + "---|" * len(labels) + "---|---|---|---|---|",
    ]
    for row in rows:
        dice = " | ".join(fmt(row["dice"][lab]) for lab in labels)
        lines.append(
            f"| {row['minutes']:g} | {row['seeds']} | {dice} | {fmt(row['mean_dice'])} "
            f"| {row['steps']:.0f} | {row['steps_per_s']:.2f} | {row['data_wait_share']:.1%} "
            f"| {row['val_share']:.1%} |"
        )
    return lines


def plot(rows: list[dict], label_names: dict[str, str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    minutes = [r["minutes"] for r in rows]
    for label in rows[0]["dice"]:
        means = [r["dice"][label][0] for r in rows]
        stds = [r["dice"][label][1] for r in rows]
        ax.errorbar(
            minutes,
            means,
            yerr=[0 if s != s else s for s in stds],
            marker="o",
            capsize=3,
            label=label_names.get(label, label),
        )
    ax.set_xlabel("training minutes (2-core CPU)")
    ax.set_ylabel("validation Dice")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help=f"{', '.join(DATASETS)}, phantoms, or a folder")
    parser.add_argument("--budgets", default="5,10,20,40,60", help="minutes, comma-separated")
    parser.add_argument("--config", default=None, help="configuration (default per dataset)")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    parser.add_argument("--cases", type=int, default=0, help="subset size (0: all)")
    parser.add_argument("--workers", type=int, default=1, help="data loader workers")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medseg_accuracy_per_minute"))
    parser.add_argument("--doc", action="store_true", help=f"write the table into {DOC}")
    parser.add_argument("--steps", default="", help="equal-steps lever mode: steps, comma-sep.")
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--warmups", default="0", help="LR warm-up steps, comma-separated")
    parser.add_argument("--ema", type=float, default=0.99, help="weight EMA decay (--steps)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: every available CPU, as medseg train; a wall-clock budget "
        "with 1 thread on 2 cores gets 0.48 instead of 1.06 steps/s on Hippocampus)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads or available_cpus())
    budgets = [float(b) for b in args.budgets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    config = args.config or DATASETS.get(args.dataset, (None, "3d_fullres"))[1]
    args.work.mkdir(parents=True, exist_ok=True)
    data = dataset_folder(args.dataset, args.work, args.cases)
    results = args.work / f"results_{data.name}"
    if not (results / "plans.json").is_file():
        plan(data, results, progress=False, jobs=1)
    preprocess(results, configurations=[config], jobs=1, progress=False)
    cache_path = args.work / f"accuracy_per_minute_{args.dataset}.json"
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.is_file() else {}
    if args.steps:
        run_levers(args, config, results, data, cache, cache_path)
        return
    runs = []
    for minutes in budgets:
        for seed in seeds:
            key = f"{config}|fold{args.fold}|{minutes:g}min|seed{seed}|w{args.workers}"
            if key not in cache:
                say(f"{args.dataset} {config}: {minutes:g} min, seed {seed}")
                t0 = time.perf_counter()
                cache[key] = train_budget(results, config, minutes, seed, args)
                cache_path.write_text(json.dumps(cache, indent=2), encoding="utf-8")
                say(
                    f"  Dice {cache[key]['mean_dice']:.3f}, {cache[key]['steps']} steps, "
                    f"{time.perf_counter() - t0:.0f} s with validation"
                )
            runs.append(cache[key])
    rows = summarise(runs)
    names = {str(v): k for k, v in load_dataset(data).foreground_labels.items()}
    cpu = platform.processor() or platform.machine()
    title = f"{args.dataset} {config}, fold {args.fold}, {torch.get_num_threads()} threads, {cpu}"
    lines = [f"### {title}", "", *table(rows, names), ""]
    print("\n".join(lines))
    figure = args.work / f"accuracy_per_minute_{args.dataset}.png"
    plot(rows, names, title, figure)
    say(f"curve: {figure}")
    if args.doc:
        text = DOC.read_text(encoding="utf-8") if DOC.is_file() else "# Accuracy per CPU-minute\n"
        DOC.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
