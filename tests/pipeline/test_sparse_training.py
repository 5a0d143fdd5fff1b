"""Sparse annotations end to end: sparsify a phantom set, plan, preprocess, train a few steps
of ``2d`` and validate the fold with the ignored voxels left out of the loss and metrics."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from medseg.data.phantoms import PhantomConfig, generate_dataset
from medseg.data.sparsify import sparsify_dataset
from medseg.pipeline import plan, preprocess, train

pytestmark = pytest.mark.slow

CONFIG = PhantomConfig(fov_mm=(24.0, 32.0, 32.0), spacing=(3.0, 1.0, 1.0))  # (8, 32, 32)


def test_training_on_every_third_slice_runs_and_validates(tmp_path: Path, shrink_2d_plan) -> None:
    dense = generate_dataset(tmp_path / "dense", spatial_dims=3, num_cases=4, config=CONFIG)
    sparse = tmp_path / "sparse"
    sparsify_dataset(dense, sparse, every_nth_slice=3, axis=0)
    results = tmp_path / "results"
    plan(sparse, results, memory_gb=0.25, jobs=1, progress=False)
    shrink_2d_plan(results)
    preprocess(results, configurations=["2d"], jobs=1, progress=False)
    assert np.load(results / "preprocessed" / "2d" / "phantom_000_seg.npy").min() == -1
    out = train(
        results, "2d", 0, epochs=1, steps_per_epoch=2, num_workers=0, device="cpu", progress=False
    )
    fold = results / "2d" / "fold_0"
    with (fold / "log.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and math.isfinite(float(rows[-1]["train_loss"]))
    validation = out["validation"]
    assert validation["options"]["ignore_label"] == 4
    assert validation["labels"] == ["1", "2", "3"]  # the ignore value is no label
    dice = validation["overall"]["dice"]["mean"]
    assert dice is None or 0.0 <= dice <= 1.0
