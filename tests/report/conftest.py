"""A fake results folder: a tiny planned 3D dataset, one trained fold's log, predictions and
their evaluation, so the report has every section to draw."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medseg.evaluation import evaluate_folders
from medseg.io import Image, read_image, write_image
from medseg.planning.steps import plan

CONFIG = "3d_fullres"
SPACING = (3.0, 1.0, 1.0)


def _write_log(path: Path, epochs: int = 4) -> None:
    columns = [
        "epoch",
        "step",
        "train_loss",
        "val_dice",
        "val_dice_ema",
        "lr",
        "grad_norm",
        "epoch_seconds",
        "data_wait_share",
        "val_dice_1",
        "val_dice_2",
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for e in range(1, epochs + 1):
            writer.writerow(
                [
                    e,
                    10 * e,
                    1.0 / e,
                    0.2 * e,
                    0.15 * e,
                    0.01,
                    2.0 / e,
                    3.5,
                    0.1,
                    0.2 * e,
                    "nan" if e == 1 else 0.18 * e,
                ]
            )


def _predictions(dataset: Path, out: Path) -> None:
    """case_000 perfect, case_001 loses the lesion, case_002 is shifted (worst)."""
    out.mkdir(parents=True)
    for i in range(3):
        ref = read_image(dataset / "labelsTr" / f"case_{i:03d}.nii.gz")
        pred = ref.array.copy()
        if i == 1:
            pred[pred == 2] = 1
        if i == 2:
            pred = np.roll(pred, 3, axis=2)
        write_image(Image(pred, ref.spacing), out / f"case_{i:03d}.nii.gz")


def make_dataset(root: Path) -> Path:
    """An nnU-Net v2 dataset "tiny" of 3 cases (6x12x12, 3x1x1 mm): organ 1 with a lesion 2."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    label = np.zeros((6, 12, 12), np.uint8)
    label[1:5, 2:10, 2:10] = 1
    label[2:4, 3:6, 3:6] = 2
    for i in range(3):
        image = rng.normal(100, 10, label.shape).astype(np.float32) + 50 * label
        write_image(Image(image, SPACING), root / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
        write_image(Image(label, SPACING), root / "labelsTr" / f"case_{i:03d}.nii.gz")
    meta = {
        "name": "tiny",
        "channel_names": {"0": "MRI"},
        "file_ending": ".nii.gz",
        "labels": {"background": 0, "organ": 1, "lesion": 2},
        "numTraining": 3,
    }
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def make_planned(root: Path) -> tuple[Path, Path]:
    """``(dataset, results)`` with only plans.json, dataset.json and fingerprint.json."""
    dataset = make_dataset(root / "ds")
    plan(dataset, root / "results", jobs=1, progress=False)
    return dataset, root / "results"


def build_results(root: Path) -> tuple[Path, Path]:
    """``(dataset, results)``: planned, fold_0 trained (log + predictions), evaluated."""
    dataset, results = make_planned(root)
    fold = results / CONFIG / "fold_0"
    fold.mkdir(parents=True)
    _write_log(fold / "log.csv")
    _predictions(dataset, fold / "validation")
    evaluate_folders(
        fold / "validation", dataset / "labelsTr", results / "evaluation" / CONFIG, jobs=1
    )
    return dataset, results


@pytest.fixture
def dataset_and_results(tmp_path: Path) -> tuple[Path, Path]:
    """A fresh folder per test, for tests that change it."""
    return build_results(tmp_path)


@pytest.fixture
def dataset(dataset_and_results: tuple[Path, Path]) -> Path:
    return dataset_and_results[0]


@pytest.fixture
def results(dataset_and_results: tuple[Path, Path]) -> Path:
    return dataset_and_results[1]


@pytest.fixture(scope="module")
def shared_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per test module, for tests that only read it (do not modify it)."""
    return build_results(tmp_path_factory.mktemp("shared"))[1]


@pytest.fixture
def planned(tmp_path: Path) -> Path:
    """A results folder with plans.json, dataset.json and fingerprint.json only."""
    return make_planned(tmp_path)[1]
