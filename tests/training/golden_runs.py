"""Golden runs: small fixed-seed training runs whose numbers must not move when the code does.

``python tests/training/golden_runs.py`` records them into ``golden_runs.json`` (done once, on
the commit before the training engine was refactored); ``test_golden_runs.py`` reruns them and
compares. Each run is float32 (no bf16 autocast), one torch thread, in-process loaders, so the
numbers depend only on the code and the CPU's float kernels:

* ``seg_2d`` / ``seg_3d``: phantoms -> plan (a small U-Net) -> preprocess -> ``fit`` for a few
  epochs -> ``predict`` two cases with mirroring; per-epoch train loss, online validation Dice,
  its EMA, the gradient norm and LR, and per-label voxel counts and a hash of each prediction.
* ``classify``: classification phantoms -> ``fit_classifier`` (LeNet-5) -> per-epoch train loss,
  validation loss, accuracy, AUC, and the test scores.
* ``cascade_augment``: the cascade stage's augmentation of one fixed batch (one-hot previous
  stage, spatial + intensity transforms, mask perturbation): checksums of its outputs.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

GOLDEN_FILE = Path(__file__).with_name("golden_runs.json")
LOG_KEYS = ("train_loss", "val_dice", "val_dice_ema", "grad_norm", "lr")
CLASSIFY_KEYS = ("train_loss", "val_loss", "val_accuracy", "val_auc", "grad_norm", "lr")


def _segmentation_run(work: Path, spatial_dims: int) -> dict[str, Any]:
    from medseg.data.phantom_config import PhantomConfig
    from medseg.data.phantoms import generate_dataset
    from medseg.inference.predict import predict
    from medseg.io import read_image
    from medseg.planning import Plans
    from medseg.planning.preprocessing import preprocess
    from medseg.planning.steps import plan
    from medseg.training import fit

    fov = (64.0, 64.0) if spatial_dims == 2 else (32.0, 32.0, 32.0)
    data = generate_dataset(
        work / "data",
        spatial_dims=spatial_dims,
        num_cases=5,
        seed=3,
        config=PhantomConfig(fov_mm=fov),
    )
    results = work / "results"
    plans = plan(data, results, progress=False)
    name = "2d" if spatial_dims == 2 else "3d_fullres"
    base = plans[name]
    patch = (32, 32) if spatial_dims == 2 else (16, 32, 32)
    kernels = [[3] * spatial_dims] * 3
    strides = [[1] * spatial_dims, [2] * spatial_dims, [2] * spatial_dims]
    small = replace(
        base,
        patch_size=patch,
        batch_size=4,
        learning_rate=3e-3,
        network_config={
            **base.network_config,
            "features": [4, 8, 16],
            "kernel_sizes": kernels,
            "strides": strides,
        },
    )
    Plans(plans.dataset_name, plans.dataset_path, {name: small}).to_json(results / "plans.json")
    preprocess(results, jobs=1, progress=False)
    fit(
        results,
        name,
        0,
        epochs=4,
        steps_per_epoch=8,
        num_workers=0,
        amp=False,
        seed=0,
        progress=False,
    )
    rows = _read_log(results / name / "fold_0" / "log.csv")
    cases = work / "cases"
    cases.mkdir()
    for image in sorted((data / "imagesTr").iterdir())[:2]:
        (cases / image.name).symlink_to(image)
    outputs = predict(
        cases,
        work / "predictions",
        results,
        configurations=[name],
        folds=[0],
        mirror=True,
        device="cpu",
    )
    predictions = {}
    for path in outputs:
        label = np.ascontiguousarray(read_image(path).array.astype(np.int64))
        values, counts = np.unique(label, return_counts=True)
        predictions[path.name] = {
            "counts": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)},
            "sha256": hashlib.sha256(label.tobytes()).hexdigest(),
        }
    return {"log": {k: [r[k] for r in rows] for k in LOG_KEYS}, "predictions": predictions}


def _classification_run(work: Path) -> dict[str, Any]:
    from medseg.data.phantoms_classification import classification_phantom_arrays
    from medseg.inference.classify import predict_scores
    from medseg.planning.classifier import config_for
    from medseg.training import fit_classifier, load_classifier

    train = classification_phantom_arrays(32, spatial_dims=2, size=32, seed=1, split="train")
    test = classification_phantom_arrays(6, spatial_dims=2, size=32, seed=1, split="test")
    config = config_for(train, "lenet5", epochs=5, batch_size=8, augmentation="light", seed=0)
    fit_classifier(train, test, work / "run", config, amp=False, progress=False)
    rows = _read_log(work / "run" / "log.csv")
    model, config, _ = load_classifier(work / "run" / "checkpoint_latest.pt")
    scores = predict_scores(model, test.images, config, amp=False)
    return {
        "log": {k: [r[k] for r in rows] for k in CLASSIFY_KEYS},
        "test_scores": scores[:, 1].tolist(),
    }


def _cascade_augment_run() -> dict[str, Any]:
    from medseg.planning.plan import Plan

    plan = Plan(
        configuration="3d_cascade_fullres",
        spatial_dims=3,
        spacing=(1.0, 1.0, 1.0),
        median_shape=(8, 16, 16),
        patch_size=(8, 16, 16),
        batch_size=2,
        normalization=("zscore",),
        intensity={},
        num_classes=3,
        in_channels=3,
        labels={"background": 0, "a": 1, "b": 2},
        previous_stage="3d_lowres",
        data_configuration="3d_fullres",
    )
    from medseg.training.segmentation import segmentation_augmentation

    augment = segmentation_augmentation(plan)
    generator = torch.Generator().manual_seed(5)
    image = torch.randn(2, 1, 8, 16, 16, generator=generator)
    previous = torch.zeros(2, 1, 8, 16, 16)
    previous[:, :, 2:6, 4:12, 4:12] = 1
    previous[:, :, 3:5, 6:10, 6:10] = 2
    label = previous.long()
    totals: dict[str, list[float]] = {"image": [], "masks": [], "label": []}
    for seed in range(3):
        augment.reseed(seed)
        out, out_label = augment(torch.cat([image, previous], 1), label)
        totals["image"].append(float(out[:, :1].double().sum()))
        totals["masks"].append([float(out[:, k].sum()) for k in range(1, out.shape[1])])
        totals["label"].append(int(out_label.sum()))
    return totals


def _read_log(path: Path) -> list[dict[str, float]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return [
            {k: float(v) if v not in ("", "True", "False") else v for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def run_golden(
    work: Path, which: tuple[str, ...] = ("seg_2d", "seg_3d", "classify", "cascade_augment")
) -> dict[str, Any]:
    """Run the golden runs in ``work`` (a scratch folder), one torch thread, float32."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out: dict[str, Any] = {}
        for name in which:
            folder = work / name
            folder.mkdir(parents=True)
            if name == "seg_2d":
                out[name] = _segmentation_run(folder, 2)
            elif name == "seg_3d":
                out[name] = _segmentation_run(folder, 3)
            elif name == "classify":
                out[name] = _classification_run(folder)
            else:
                out[name] = _cascade_augment_run()
        return out
    finally:
        torch.set_num_threads(threads)


#: Pins the float kernels to the baseline x86 code paths (ATen's default vectorisation,
#: oneDNN's SSE4.1 kernels, MKL's conditional-numerical-reproducibility mode), so a run gives the
#: same bits on any x86 CPU; with each machine's own kernels the 2D and 3D runs differed by up to
#: 1e-4 between AVX-512 and AVX2 (measured on the recording machine by forcing the ISA).
REPRODUCIBLE_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_CBWR": "COMPATIBLE",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    "OMP_NUM_THREADS": "1",
}
RUNS = ("seg_2d", "seg_3d", "classify", "cascade_augment")


def run_reproducibly(work: Path, which: tuple[str, ...] = RUNS) -> dict[str, Any]:
    """``run_golden`` in a child process with :data:`REPRODUCIBLE_ENV` (the kernels are chosen at
    import, so this cannot be set in a process that already imported torch)."""
    import os
    import subprocess

    out = work / "golden.json"
    env = {**os.environ, **REPRODUCIBLE_ENV, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, __file__, "--out", str(out), "--work", str(work / "runs"), *which],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"golden run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", default=list(RUNS))
    parser.add_argument(
        "--out", type=Path, help="write the runs here (JSON); default: record golden_runs.json"
    )
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--commit", default="", help="the commit recorded (with --out unset)")
    args = parser.parse_args()
    if args.out is None:  # record: rerun self in the reproducible environment
        with tempfile.TemporaryDirectory() as tmp:
            runs = run_reproducibly(Path(tmp), tuple(args.runs))
        record = {
            "recorded_on": {
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "commit": args.commit,
                "environment": REPRODUCIBLE_ENV,
            },
            "runs": runs,
        }
        GOLDEN_FILE.write_text(
            json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
        sys.stdout.write(f"wrote {GOLDEN_FILE}\n")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            runs = run_golden(args.work or Path(tmp), tuple(args.runs))
        args.out.write_text(json.dumps(runs), encoding="utf-8")
