"""The classical-baseline benchmark: oracle seeds from a reference, the split, and a run of
Otsu and region growing on tiny phantoms that writes predictions, evaluations and the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medseg.data.phantom_config import PhantomConfig
from medseg.data.phantoms import generate_dataset
from medseg.errors import ConfigError, OverwriteError
from medseg.evaluation import evaluate_folders
from medseg.io import Image, read_image
from medseg.pipeline.classic import (
    classic_benchmark,
    format_table,
    mean_label_dice,
    split_cases,
)
from medseg.pipeline.classic_seeds import oracle_seeds


def test_oracle_seeds_sit_inside_each_component_and_background_seeds_keep_their_distance() -> None:
    label = np.zeros((40, 50), dtype=np.uint8)
    label[5:15, 5:15] = 1  # two components of label 1
    label[25:35, 5:15] = 1
    label[10:30, 30:45] = 2
    spacing = (2.0, 1.0)
    seeds = oracle_seeds(label, spacing=spacing, background_margin_mm=4.0, max_background=30)
    assert len(seeds.foreground) == 3
    eroded = ndimage.binary_erosion(label == 1) | ndimage.binary_erosion(label == 2)
    assert all(eroded[s] for s in seeds.foreground)
    # the square's centre voxel is the nearest eroded voxel to its centroid (9.5, 9.5) -> tie
    assert seeds.foreground[0] in {(9, 9), (9, 10), (10, 9), (10, 10)}
    # independent distance: brute force over the foreground voxels, in mm
    fg = np.argwhere(label > 0) * np.asarray(spacing)
    assert len(seeds.background) == 30
    for bg in seeds.background:
        assert label[bg] == 0
        assert np.sqrt(((fg - np.asarray(bg) * np.asarray(spacing)) ** 2).sum(1)).min() >= 4.0
    rows, cols = np.nonzero(seeds.box)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 34, 5, 44)
    assert seeds.box.sum() == 30 * 40


def test_oracle_seeds_of_an_empty_label_and_a_full_label() -> None:
    empty = oracle_seeds(np.zeros((6, 6), dtype=np.uint8), max_background=5)
    assert empty.foreground == [] and len(empty.background) == 5 and not empty.box.any()
    full = oracle_seeds(np.ones((6, 6), dtype=np.uint8))
    assert full.background == [] and len(full.foreground) == 1 and full.box.all()


def test_split_keeps_the_first_80_percent_for_training(tiny_dataset: Path) -> None:
    from medseg.data.dataset import load_dataset

    dataset = load_dataset(tiny_dataset)  # 3 cases
    assert split_cases(dataset) == (["case_000", "case_001"], ["case_002"])
    with pytest.raises(ConfigError, match="train_fraction"):
        split_cases(dataset, train_fraction=1.0)


def test_mean_label_dice_against_hand_counts() -> None:
    ref = Image(np.array([[1, 1, 0, 2]]), (1.0, 1.0))
    pred = Image(np.array([[1, 0, 0, 2]]), (1.0, 1.0))
    assert mean_label_dice(pred, ref) == pytest.approx((2 * 1 / 3 + 1.0) / 2)


@pytest.fixture
def phantoms_2d(tmp_path: Path) -> Path:
    config = PhantomConfig(fov_mm=(48.0, 48.0))
    return generate_dataset(tmp_path / "ph", spatial_dims=2, num_cases=5, seed=3, config=config)


def test_benchmark_runs_otsu_and_region_growing_and_writes_the_table(
    phantoms_2d: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    table = classic_benchmark(phantoms_2d, out, methods=["otsu", "region_grow"])
    assert table["train_cases"] == ["phantom_000", "phantom_001", "phantom_002", "phantom_003"]
    assert table["evaluated_cases"] == ["phantom_004"]
    rows = {row["method"]: row for row in table["rows"]}
    assert set(rows) == {"otsu", "region_grow"}
    assert rows["region_grow"]["oracle_seeds"] and not rows["otsu"]["oracle_seeds"]
    prediction = out / "otsu" / "predictions" / "phantom_004.nii.gz"
    assert prediction.is_file()
    # the row's Dice is the evaluator's, and equals a hand count on the written files
    summary = json.loads((out / "otsu" / "evaluation" / "summary.json").read_text("utf-8"))
    assert rows["otsu"]["dice"] == pytest.approx(summary["per_label"]["foreground"]["dice"]["mean"])
    pred = read_image(prediction).array > 0
    ref = read_image(phantoms_2d / "labelsTr" / "phantom_004.nii.gz").array > 0
    assert rows["otsu"]["dice"] == pytest.approx(2 * (pred & ref).sum() / (pred.sum() + ref.sum()))
    for row in rows.values():
        assert 0 <= row["dice"] <= 1 and row["seconds_per_case"] >= 0
    saved = json.loads((out / "classic_benchmark.json").read_text("utf-8"))
    assert [r["method"] for r in saved["rows"]] == ["otsu", "region_grow"]
    markdown = (out / "classic_benchmark.md").read_text("utf-8")
    assert "| region_grow * | foreground |" in markdown and "oracle" in markdown
    with pytest.raises(OverwriteError, match="--overwrite"):
        classic_benchmark(phantoms_2d, out, methods=["otsu"])


def test_benchmark_refuses_an_unknown_method_before_any_work(
    phantoms_2d: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="otsu"):
        classic_benchmark(phantoms_2d, tmp_path / "b", methods=["otsu", "watershed"])
    assert not (tmp_path / "b" / "otsu").exists()


def test_format_table_marks_oracle_rows_and_reports_the_median_single_atlas() -> None:
    rows = [
        {
            "method": "multi_atlas",
            "scope": "labels",
            "dice": 0.8,
            "hd95_mm": 2.5,
            "seconds_per_case": 1.0,
            "oracle_seeds": False,
            "median_single_atlas_dice": 0.7,
        }
    ]
    text = format_table({"dataset_name": "d", "rows": rows, "n_train": 4, "evaluated_cases": ["a"]})
    assert "| multi_atlas | labels | 0.8000 | 2.50 | 1.000 | 0.7000 |" in text


def test_evaluator_agrees_with_the_row_for_the_foreground_union(tmp_path: Path) -> None:
    """Evaluating the same folders again gives the row's numbers (no hidden re-scoring)."""
    config = PhantomConfig(fov_mm=(40.0, 40.0))
    data = generate_dataset(tmp_path / "p", spatial_dims=2, num_cases=2, seed=1, config=config)
    table = classic_benchmark(data, tmp_path / "b", methods=["otsu"])
    again = evaluate_folders(
        tmp_path / "b" / "otsu" / "predictions",
        data / "labelsTr",
        tmp_path / "again",
        cases=table["evaluated_cases"],
        labels={"foreground": (1, 2, 3)},
        jobs=1,
    )
    assert table["rows"][0]["hd95_mm"] == pytest.approx(
        again["per_label"]["foreground"]["hd95"]["mean"]
    )
