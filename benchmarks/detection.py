"""Detection and instance benchmarks (issue 20's targets), on the CPU with short budgets.

(a) Montgomery chest X-rays: the two lungs (connected components of the lung mask) as boxes,
    CenterNet at 128^2, AP50 / AP75 / mAP@[.5:.95] (COCO 101-point) on held-out cases.
    Target: AP50 >= 0.95.
(b) ISBI 2012 EM: cells = connected components (face connectivity) of the non-membrane label;
    watershed head; panoptic quality of its instances against the connected components of the
    same model's foreground (> 0.5) on held-out images. Target: PQ >= components + 0.05.
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
from medseg.io import read_image
from medseg.metrics.boxes import boxes_from_labels
from medseg.metrics.detection import coco_map, counting_error, panoptic_quality

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


def isbi(work: Path, budget: float) -> dict[str, object]:
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
        epochs=10_000,
        steps_per_epoch=40,
        val_fraction=0.15,
    )
    seconds, steps = train(data, work / "isbi_run", config, budget)
    detector = load_detector(work / "isbi_run")
    pq_ws, pq_cc = [], []
    for case_id in test_ids:
        image = load_dataset(source).case(case_id).image_paths[0]
        truth = truth_instances(source, config, case_id)
        pq_ws.append(panoptic_quality(predict_instances(detector, image), truth)["PQ"])
        foreground, _ = predict_maps(detector, image)
        baseline = remove_small(components_instances(foreground > 0.5, connectivity=4), 30)
        pq_cc.append(panoptic_quality(baseline, truth)["PQ"])
    ws, cc = float(np.mean(pq_ws)), float(np.mean(pq_cc))
    tuned = json.loads((work / "isbi_run/watershed.json").read_text())
    return {
        "part": "(b) ISBI EM cells, watershed vs components",
        "train/test cases": f"{len(train_ids)}/{len(test_ids)}",
        "budget s": budget,
        "trained s": round(seconds),
        "steps": steps,
        "result": f"PQ watershed {ws:.3f} (h {tuned['h']}, min_distance "
        f"{tuned['min_distance']} tuned on val), components {cc:.3f} ({ws - cc:+.3f})",
        "target": "PQ >= components + 0.05",
        "met": ws >= cc + 0.05,
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    parts = {
        "montgomery": lambda: montgomery(args.work, args.budget_montgomery),
        "isbi": lambda: isbi(args.work, args.budget_isbi),
        "phantom": lambda: phantom(args.work, args.budget_phantom),
    }
    rows = [parts[name.strip()]() for name in args.parts.split(",")]
    print_table(rows)


if __name__ == "__main__":
    main()
