"""The cross-validation step writes each validation case's predictive entropy."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from medseg.data.phantoms import PhantomConfig, generate_dataset
from medseg.io import read_image
from medseg.pipeline import plan, preprocess
from medseg.pipeline.steps import validate_fold
from medseg.training.checkpoint import build_model, save_checkpoint


def test_validate_fold_writes_uncertainty_csv_for_its_cases(tmp_path: Path) -> None:
    config = PhantomConfig(fov_mm=(24.0, 24.0), spacing=(1.5, 1.5))
    data = generate_dataset(tmp_path / "data", spatial_dims=2, num_cases=5, seed=0, config=config)
    results = tmp_path / "results"
    plans = plan(data, results, progress=False, jobs=1)
    preprocess(results, configurations=["2d"], jobs=1, progress=False)
    torch.manual_seed(0)
    save_checkpoint(
        results / "2d" / "fold_0" / "checkpoint_best.pt",
        network_state=build_model(plans["2d"]).state_dict(),
        plan=plans["2d"].to_dict(),
        epoch=0,
        step=0,
        fold=0,
        configuration="2d",
    )
    summary = validate_fold(results, "2d", 0, device="cpu", progress=False)
    folder = results / "2d" / "fold_0" / "validation"
    with open(folder / "uncertainty.csv", newline="", encoding="utf-8") as f:
        rows = {row["case"]: row for row in csv.DictReader(f)}
    assert len(rows) == summary["n_cases"] >= 1
    for case, row in rows.items():
        label = read_image(folder / f"{case}.nii.gz").array
        assert int(row["foreground_voxels"]) == int((label != 0).sum())
        assert 0.0 <= float(row["mean_entropy"]) <= 1.0
    # only label maps in the folder: the cross-validation pooling copies every image file
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".nii.gz")) == [
        "uncertainty.csv"
    ]
