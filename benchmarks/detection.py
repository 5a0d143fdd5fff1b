"""Detection and instance benchmarks (issue 20's targets), on the CPU with short budgets.

(a) Montgomery chest X-rays: the two lungs (connected components of the lung mask) as boxes,
    CenterNet at 128^2, AP50 / AP75 / mAP@[.5:.95] (COCO 101-point) on held-out cases.
    Target: AP50 >= 0.95.
(b) ISBI 2012 EM: cells = connected components (face connectivity) of the non-membrane label;
    watershed head with ``instance_method="auto"``; on held-out images, PQ / SQ / RQ / AJI / F1
    of the components of the model's foreground (> 0.5, and > a threshold chosen on the
    validation cases), the distance watershed and the boundary watershed (each with the
    settings tuned on the validation cases). Target: PQ of the boundary watershed >=
    components + 0.05.
(c) Phantom touching cells (``generate_instances_dataset``): watershed head, counting error on
    held-out cases. Target: < 5 %.

Each part trains into a run folder under ``--work`` with a time budget (``--budget-*``,
seconds) and ``--threads`` intra-op threads; held-out cases never reach training (nor the
validation that picks the checkpoint). Prints one table.

    python benchmarks/detection.py --work /tmp/detbench [--parts montgomery,isbi,phantom]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from medseg.data.dataset import load_dataset
from medseg.data.phantoms_instances import generate_instances_dataset
from medseg.detect.config import DetectConfig
from medseg.detect.data import instance_map, object_values
from medseg.detect.instances import components_instances
from medseg.detect.predict import (
    load_detector,
    predict_detections,
    predict_instances,
    predict_maps,
)
from medseg.detect.train import fit_detector
from medseg.detect.tune import apply_settings, label_instances
from medseg.io import read_image
from medseg.metrics.boxes import boxes_from_labels
from medseg.metrics.detection import (
    aggregated_jaccard_index,
    coco_map,
    counting_error,
    instance_f1,
    panoptic_quality,
)

DATA = Path(os.environ.get("MEDSEG_DATA", "/work/shared/data"))


def subset(source: Path, case_ids: list[str], out: Path) -> Path:
    """An nnU-Net v2 folder ``out`` of symbolic links to ``case_ids`` of ``source``."""
    data = load_dataset(source)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(exist_ok=True)
    for case_id in case_ids:
        case = data.case(case_id)
        for path in (*case.image_paths, case.label_path):
            link = out / path.parent.name / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
    meta = {
        "name": data.name,
        "channel_names": data.channel_names,
        "labels": data.labels,
        "numTraining": len(case_ids),
        "file_ending": data.file_ending,
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    return out


def split(source: Path, test_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    ids = [c.case_id for c in load_dataset(source).cases]
    order = np.random.default_rng(seed).permutation(len(ids))
    count = round(test_fraction * len(ids))
    test = sorted(ids[i] for i in order[:count])
    return [i for i in ids if i not in test], test


def truth_instances(source: Path, config: DetectConfig, case_id: str) -> np.ndarray:
    data = load_dataset(source)
    label = read_image(data.case(case_id).label_path).array
    return instance_map(label, config, object_values(data, config))[0]


def train(source: Path, run: Path, config: DetectConfig, budget: float) -> tuple[float, int]:
    start = time.perf_counter()
    result = fit_detector(source, run, config, time_budget_s=budget, overwrite=True, progress=False)
    return time.perf_counter() - start, result.steps


def montgomery(work: Path, budget: float) -> dict[str, object]:
    source = DATA / "montgomery_cxr"
    train_ids, test_ids = split(source, 0.2)
    data = subset(source, train_ids, work / "montgomery_train")
    config = DetectConfig(
        str(data),
        head="centernet",
        instances="components",
        min_voxels=2000,
        image_size=(128, 128),
        features=(16, 32, 64, 128, 256),
        batch_size=4,
        learning_rate=2e-3,
        epochs=10_000,
        steps_per_epoch=40,
        val_fraction=0.15,
    )
    seconds, steps = train(data, work / "montgomery_run", config, budget)
    detector = load_detector(work / "montgomery_run")
    preds, scores, truth = [], [], []
    for case_id in test_ids:
        case = load_dataset(source).case(case_id)
        boxes, score, _ = predict_detections(detector, case.image_paths[0])
        preds.append(boxes.numpy()), scores.append(score.numpy())
        truth.append(boxes_from_labels(truth_instances(source, config, case_id), 2)[0])
    ap = coco_map(preds, scores, truth)
    return {
        "part": "(a) Montgomery lungs, centernet 128^2",
        "train/test cases": f"{len(train_ids)}/{len(test_ids)}",
        "budget s": budget,
        "trained s": round(seconds),
        "steps": steps,
        "result": f"AP50 {ap['AP50']:.3f}, AP75 {ap['AP75']:.3f}, mAP {ap['mAP']:.3f}",
        "target": "AP50 >= 0.95",
        "met": ap["AP50"] >= 0.95,
    }


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    sizes = np.bincount(labels.ravel())
    out = labels.copy()
    out[sizes[labels] < min_size] = 0
    return out


def scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    pq = panoptic_quality(pred, truth)
    f1 = instance_f1(pred, truth)
    return {
        "PQ": pq["PQ"],
        "SQ": pq["SQ"],
        "RQ": pq["RQ"],
        "AJI": aggregated_jaccard_index(pred, truth),
        "F1": f1["f1"],
        "fp": f1["fp"],
        "fn": f1["fn"],
    }


def isbi_methods(config: DetectConfig, tuned: dict, val_maps: list, val_truth: list) -> dict:
    """Instance methods compared on the held-out images, each set on the validation cases."""

    def components(threshold: float):
        def run(foreground: np.ndarray, _distance: np.ndarray) -> np.ndarray:
            mask = foreground > threshold
            return remove_small(components_instances(mask, connectivity=4), config.min_size)

        return run

    best_t = max(
        (0.4, 0.5, 0.6, 0.7),
        key=lambda t: np.mean(
            [
                panoptic_quality(components(t)(*m), g)["PQ"]
                for m, g in zip(val_maps, val_truth, strict=True)
            ]
        ),
    )
    methods = {"components (foreground > 0.5)": components(0.5)}
    methods[f"components (foreground > {best_t}, tuned on val)"] = components(best_t)
    for name in ("distance", "boundary"):  # the JSON's keys come back sorted
        setting = tuned["methods"][name]
        trial = apply_settings(config, setting)
        label = ", ".join(f"{k} {v}" for k, v in setting.items() if k not in ("method", "val_pq"))
        title = {"distance": "old watershed (distance)", "boundary": "new boundary watershed"}
        methods[f"{title[name]}: {label}"] = lambda f, d, trial=trial: label_instances(trial, f, d)
    return methods


def trained_steps(run: Path) -> int:
    """The last step of a finished run's ``log.csv``."""
    lines = (run / "log.csv").read_text().strip().splitlines()
    return int(lines[-1].split(",")[1])


def isbi(work: Path, budget: float, reuse: bool = False) -> dict[str, object]:
    source = DATA / "isbi2012_em"
    train_ids, test_ids = split(source, 0.2)
    data = subset(source, train_ids, work / "isbi_train")
    config = DetectConfig(
        str(data),
        head="watershed",
        instances="components",
        labels=(0,),
        min_voxels=30,
        patch_size=(256, 256),
        features=(16, 32, 64, 128),
        batch_size=4,
        learning_rate=2e-3,
        min_size=30,
        min_distance=4,
        instance_method="auto",
        epochs=10_000,
        steps_per_epoch=40,
        val_fraction=0.15,
    )
    if reuse and (work / "isbi_run/watershed.json").is_file():  # evaluate the earlier run
        seconds, steps = float("nan"), trained_steps(work / "isbi_run")
    else:
        seconds, steps = train(data, work / "isbi_run", config, budget)
    detector = load_detector(work / "isbi_run")
    tuned = json.loads((work / "isbi_run/watershed.json").read_text())
    val_ids = json.loads((work / "isbi_run/split.json").read_text())["val"]
    dataset = load_dataset(source)

    def maps(case_id: str) -> tuple[np.ndarray, np.ndarray]:
        return predict_maps(detector, dataset.case(case_id).image_paths[0])

    val_maps = [maps(c) for c in val_ids]
    val_truth = [truth_instances(source, config, c) for c in val_ids]
    methods = isbi_methods(config, tuned, val_maps, val_truth)
    rows = {name: [] for name in methods}
    for case_id in test_ids:
        truth, test_maps = truth_instances(source, config, case_id), maps(case_id)
        for name, method in methods.items():
            rows[name].append(scores(method(*test_maps), truth))
    table = [
        {"method": name, **{k: f"{np.mean([r[k] for r in rs]):.3f}" for k in rs[0]}}
        for name, rs in rows.items()
    ]
    print(
        f"(b) ISBI EM, {len(test_ids)} held-out images, {steps} steps in {seconds:.0f} s "
        f"(load {os.getloadavg()[0]:.1f}); settings chosen on {len(val_ids)} val images"
    )
    print_table(table)
    pq = {name: float(np.mean([r["PQ"] for r in rs])) for name, rs in rows.items()}
    names = list(pq)  # components 0.5, components tuned, old watershed, new
    cc, new = pq[names[0]], pq[names[3]]
    return {
        "part": "(b) ISBI EM cells, boundary watershed vs components",
        "train/test cases": f"{len(train_ids)}/{len(test_ids)}",
        "budget s": budget,
        "trained s": "reused" if np.isnan(seconds) else round(seconds),
        "steps": steps,
        "result": f"PQ new {new:.3f}, old watershed {pq[names[2]]:.3f}, components {cc:.3f} "
        f"({new - cc:+.3f}); auto picked {tuned['method']}",
        "target": "PQ >= components + 0.05",
        "met": new >= cc + 0.05,
    }


def phantom(work: Path, budget: float) -> dict[str, object]:
    data = generate_instances_dataset(work / "cells", num_cases=30, seed=0, overwrite=True)
    train_ids, test_ids = split(data, 0.2)
    train_data = subset(data, train_ids, work / "cells_train")
    config = DetectConfig(
        str(train_data),
        head="watershed",
        features=(16, 32, 64),
        batch_size=4,
        learning_rate=3e-3,
        epochs=10_000,
        steps_per_epoch=40,
        val_fraction=0.15,
    )
    seconds, steps = train(train_data, work / "cells_run", config, budget)
    detector = load_detector(work / "cells_run")
    errors, pq = [], []
    for case_id in test_ids:
        case = load_dataset(data).case(case_id)
        labels = predict_instances(detector, case.image_paths[0])
        truth = read_image(case.label_path).array
        errors.append(counting_error(labels, truth))
        pq.append(panoptic_quality(labels, truth)["PQ"])
    error = float(np.mean(errors))
    return {
        "part": "(c) phantom touching cells, watershed",
        "train/test cases": f"{len(train_ids)}/{len(test_ids)}",
        "budget s": budget,
        "trained s": round(seconds),
        "steps": steps,
        "result": f"count error {100 * error:.1f} % (PQ {np.mean(pq):.3f})",
        "target": "count error < 5 %",
        "met": error < 0.05,
    }


def print_table(rows: list[dict[str, object]]) -> None:
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    print(" | ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(row[k]).ljust(w) for k, w in zip(keys, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="Folder for datasets and runs.")
    parser.add_argument("--parts", default="montgomery,isbi,phantom")
    parser.add_argument("--budget-montgomery", type=float, default=240.0)
    parser.add_argument("--budget-isbi", type=float, default=240.0)
    parser.add_argument("--budget-phantom", type=float, default=90.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--reuse", action="store_true", help="(b): evaluate the run already in --work, no training."
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    parts = {
        "montgomery": lambda: montgomery(args.work, args.budget_montgomery),
        "isbi": lambda: isbi(args.work, args.budget_isbi, args.reuse),
        "phantom": lambda: phantom(args.work, args.budget_phantom),
    }
    rows = [parts[name.strip()]() for name in args.parts.split(",")]
    print_table(rows)


if __name__ == "__main__":
    main()
