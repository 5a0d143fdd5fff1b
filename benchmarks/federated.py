"""Federated training (issue 18; a table, not a test): centralised vs FedAvg vs local-only.

The dataset is split into 3 shifted sites (site_0: resampled to 2 mm, site_1: noisy with a
bias field, site_2: 3x fewer cases), then ``medseg.federated.compare.compare_training``
trains the three ways with equal total steps (sites x rounds x local steps) and scores every
model on every site's validation patches (mean and worst site). Flower's cost is read from
``rounds.jsonl``: seconds per round against the sites' local training seconds, bytes per
round, and the simulation's start-up (Ray) as total minus rounds.

    .venv/bin/python benchmarks/federated.py                       # 2D phantoms, small
    .venv/bin/python benchmarks/federated.py --data ../shared/data/hippocampus --cases 60 \
        --rounds 5 --local-steps 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medseg.data import load_dataset
from medseg.data.phantoms import generate_dataset
from medseg.federated.compare import compare_training
from medseg.federated.sites import split_sites
from medseg.io.formats import read_image


def shifts_for(spatial_dims: int) -> dict:
    return {
        "sites": [
            {"spacing": [2.0] * spatial_dims, "share": 3.0},
            {"noise": 0.15, "bias_field": 0.4, "share": 3.0},
            {"share": 1.0},
        ]
    }


def subset(data: Path, cases: int, work: Path) -> Path:
    """The first ``cases`` labelled cases of ``data`` as an nnU-Net v2 dataset (symlinks)."""
    ds = load_dataset(data)
    out = work / "subset"
    (out / "imagesTr").mkdir(parents=True)
    (out / "labelsTr").mkdir(parents=True)
    for case in ds.cases[:cases]:
        for c, path in enumerate(case.image_paths):
            (out / "imagesTr" / f"{case.case_id}_{c:04d}{ds.file_ending}").symlink_to(path)
        (out / "labelsTr" / f"{case.case_id}{ds.file_ending}").symlink_to(case.label_path)
    meta = {"name": ds.name, "channel_names": ds.channel_names, "labels": ds.labels}
    meta |= {"numTraining": min(cases, len(ds.cases)), "file_ending": ds.file_ending}
    (out / "dataset.json").write_text(json.dumps(meta))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="phantom", help="'phantom' (2D) or a dataset folder")
    parser.add_argument("--cases", type=int, default=21)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-steps", type=int, default=5)
    parser.add_argument("--strategy", default="fedavg", choices=("fedavg", "fedprox"))
    parser.add_argument("--fedbn", action="store_true")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (main process)")
    parser.add_argument("--keep", type=Path, help="Keep the work folder here.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # 2 threads on a loaded 2-core machine: 10x slower
    work = args.keep or Path(tempfile.mkdtemp(prefix="fedbench_"))
    if args.data == "phantom":
        data, dims = generate_dataset(work / "ds", spatial_dims=2, num_cases=args.cases), 2
    else:
        data = subset(Path(args.data), args.cases, work)
        dims = read_image(load_dataset(data).cases[0].image_paths[0]).spatial_dims
    (work / "shift.json").write_text(json.dumps(shifts_for(dims)))
    record = split_sites(data, work / "sites", sites=3, shifts=work / "shift.json", overwrite=True)
    print("sites:", {s["name"]: s["cases"] for s in record["sites"]})
    started = time.perf_counter()
    result = compare_training(
        work / "sites",
        work / "compare",
        rounds=args.rounds,
        local_steps=args.local_steps,
        strategy=args.strategy,
        fedbn=args.fedbn,
        cpus=args.cpus,
        overwrite=True,
    )
    total = time.perf_counter() - started
    names = list(next(iter(result["rows"].values()))["sites"])
    print(f"\nequal total steps: {result['steps']} ({args.rounds} rounds x {args.local_steps})")
    print(f"{'model':30s} {'mean':>6s} {'worst':>6s} " + " ".join(f"{n:>7s}" for n in names))
    for model, row in result["rows"].items():
        cells = " ".join(f"{row['sites'][n]:7.3f}" for n in names)
        print(f"{model:30s} {row['mean']:6.3f} {row['worst']:6.3f} {cells}")
    rounds = [
        json.loads(x)
        for x in (work / "compare/federated/rounds.jsonl").read_text().split("\n")
        if x
    ]
    print(f"\n{'round':>5s} {'seconds':>8s} {'train s (sum)':>13s} {'MB up':>7s} {'MB down':>8s}")
    for r in rounds:
        print(
            f"{r['round']:5d} {r['seconds']:8.1f} {sum(r['train_seconds']):13.1f} "
            f"{r['bytes_up'] / 1e6:7.1f} {r['bytes_down'] / 1e6:8.1f}"
        )
    later = rounds[1:] or rounds
    share = np.mean([1 - sum(r["train_seconds"]) / args.cpus / r["seconds"] for r in later])
    print(f"seconds: {result['seconds']}; whole benchmark {total:.0f} s")
    print(
        f"Flower overhead (rounds >= 2, 1 - train CPU-seconds / cpus / round seconds): {share:.0%}"
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
