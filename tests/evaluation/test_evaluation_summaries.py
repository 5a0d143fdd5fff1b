"""Volumes in per_case.csv and the dataset-level summaries: pooled, per image, Bland-Altman,
size strata."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.evaluation import evaluate_folders
from medseg.io import Image, write_image
from medseg.metrics import bland_altman, per_image_summary, pooled_overlap, stratify_by_size

SPACING = (2.0, 1.0, 0.5)  # 1 mm^3 voxels: 1000 voxels = 1 mL


def _write(folder: Path, case: str, array: np.ndarray, spacing=SPACING) -> None:
    write_image(Image(array, spacing), folder / f"{case}.nii.gz", overwrite=True)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Three cases: reference 1000 / 2000 / 0 voxels of label 1; predictions of 1200 / 1500
    / 100 voxels (TP 1000 / 1500 / 0)."""
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    shape = (10, 20, 20)
    sizes = [(1000, 1200), (2000, 1500), (0, 100)]
    for i, (n_ref, n_pred) in enumerate(sizes):
        r, p = np.zeros(shape, np.uint8).reshape(-1), np.zeros(shape, np.uint8).reshape(-1)
        r[:n_ref], p[:n_pred] = 1, 1
        r[-1] = 2  # label 2: one voxel in every reference, missed by every prediction
        _write(ref, f"c{i}", r.reshape(shape))
        _write(pred, f"c{i}", p.reshape(shape))
    return pred, ref


def test_per_case_csv_has_volumes_in_ml_from_the_counts(folders, tmp_path) -> None:
    evaluate_folders(*folders, tmp_path / "out", jobs=1, labels=[1])
    rows = _read_csv(tmp_path / "out" / "per_case.csv")
    got = [(float(r["vol_pred_ml"]), float(r["vol_ref_ml"]), float(r["vol_diff_ml"])) for r in rows]
    assert got == [
        pytest.approx((1.2, 1.0, 0.2)),
        pytest.approx((1.5, 2.0, -0.5)),
        pytest.approx((0.1, 0.0, 0.1)),
    ]
    assert [float(r["vol_rel_err"]) for r in rows[:2]] == pytest.approx([0.2, -0.25])
    assert rows[2]["vol_rel_err"] == "nan"  # empty reference
    assert all(r["area_pred_mm2"] == "nan" for r in rows)  # 3D: no areas


def test_summary_has_pooled_per_image_bland_altman_and_strata(folders, tmp_path) -> None:
    summary = evaluate_folders(*folders, tmp_path / "out", jobs=1)
    # pooled Dice of label 1 by hand: TP 2500, FP 200 + 0 + 100, FN 0 + 500 + 0
    pooled = summary["pooled"]["per_label"]["1"]
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (2500, 300, 500)
    assert pooled["dice"] == pytest.approx(5000 / 5800)
    assert pooled["iou"] == pytest.approx(2500 / 3300)
    # overall adds label 2: TP 0, FP 0, FN 3
    assert summary["pooled"]["overall"]["dice"] == pytest.approx(5000 / 5803)
    # Bland-Altman in mL by hand: differences 0.2, -0.5, 0.1
    ba = summary["bland_altman"]["1"]
    diffs = np.array([0.2, -0.5, 0.1])
    assert ba["unit"] == "mL" and ba["n"] == 3
    assert ba["bias"] == pytest.approx(diffs.mean())
    assert ba["sd"] == pytest.approx(math.sqrt(((diffs - diffs.mean()) ** 2).sum() / 2))
    assert ba["loa_upper"] == pytest.approx(diffs.mean() + 1.96 * ba["sd"])
    # per image: Dice of label 2 is 0 everywhere; label 1 is 2000/2200, 3000/3500, 0
    per_case_mean = [(2000 / 2200 + 0) / 2, (3000 / 3500 + 0) / 2, 0.0]
    assert summary["per_image"]["dice"]["mean"] == pytest.approx(np.mean(per_case_mean))
    # the existing keys are still there
    assert summary["per_label"]["1"]["dice"]["n"] == 3 and "overall" in summary
    assert summary["size_unit"] == "mL"
    written = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert written["bland_altman"]["1"]["n"] == 3
    assert written["stratified"]["bins"] == "tertiles"


def test_user_size_bins_put_cases_in_the_expected_strata(folders, tmp_path) -> None:
    summary = evaluate_folders(*folders, tmp_path / "out", jobs=1, labels=[1], size_bins_ml=[1.5])
    strata = summary["stratified"]["per_label"]["1"]
    assert [(s["name"], s["n"]) for s in strata] == [
        ("(0, 1.5]", 1),
        ("(1.5, inf)", 1),
        ("empty reference", 1),
    ]
    assert strata[0]["mean"]["dice"] == pytest.approx(2000 / 2200)
    assert strata[1]["mean"]["dice"] == pytest.approx(3000 / 3500)
    assert strata[2]["mean"]["dice"] == 0.0
    assert summary["options"]["size_bins_ml"] == [1.5]


def test_stratify_tertiles_and_edges_close_on_the_right() -> None:
    rows = [{"label": "a", "vol_ref_ml": float(v), "dice": v / 10} for v in range(1, 10)]
    tertiles = stratify_by_size(rows, metrics=["dice"])["per_label"]["a"]
    assert [(s["n"], s["range"]) for s in tertiles] == [(3, [1, 3]), (3, [4, 6]), (3, [7, 9])]
    assert tertiles[0]["mean"]["dice"] == pytest.approx(0.2)
    edges = stratify_by_size(rows, metrics=["dice"], bins=[2, 5])["per_label"]["a"]
    # a size equal to an edge goes to the lower stratum: (0, 2] = {1, 2}, (2, 5] = {3, 4, 5}
    assert [s["n"] for s in edges] == [2, 3, 4]
    assert edges[2]["range"] == [5, math.inf]
    with pytest.raises(ValueError, match="increasing"):
        stratify_by_size(rows, metrics=["dice"], bins=[5, 2])


def test_pooled_overlap_and_per_image_by_hand() -> None:
    rows = [
        {"case": "a", "label": "1", "tp": 8, "fp": 2, "fn": 0, "iou": 0.8},
        {"case": "a", "label": "2", "tp": 0, "fp": 0, "fn": 0, "iou": math.nan},
        {"case": "b", "label": "1", "tp": 1, "fp": 0, "fn": 9, "iou": 0.1},
        {"case": "b", "label": "2", "tp": 3, "fp": 1, "fn": 0, "iou": 0.75},
    ]
    pooled = pooled_overlap(rows)
    assert pooled["per_label"]["1"]["dice"] == pytest.approx(18 / (18 + 2 + 9))
    assert math.isnan(pooled_overlap(rows[1:2])["overall"]["dice"])  # nothing anywhere
    assert pooled["overall"]["iou"] == pytest.approx(12 / (12 + 3 + 9))
    # case a: 0.8 (label 2 NaN skipped); case b: (0.1 + 0.75) / 2
    assert per_image_summary(rows, metrics=["iou"])["iou"]["mean"] == pytest.approx(
        (0.8 + 0.425) / 2
    )


def test_bland_altman_by_hand_and_with_nan_pairs() -> None:
    stats = bland_altman([10.0, 12.0, math.nan, 7.0], [9.0, 12.0, 3.0, 8.0])
    # differences 1, 0, -1: bias 0, sample sd 1
    assert stats == {"bias": 0.0, "sd": 1.0, "loa_lower": -1.96, "loa_upper": 1.96, "n": 3}
    one = bland_altman([2.0], [1.0])
    assert one["bias"] == 1.0 and math.isnan(one["sd"]) and one["n"] == 1


def test_2d_images_fill_area_columns_and_refuse_size_bins_in_ml(tmp_path) -> None:
    ref = np.zeros((10, 10), np.uint8)
    ref[2:6, 2:6] = 1
    pred = np.zeros((10, 10), np.uint8)
    pred[2:6, 2:8] = 1
    _write(tmp_path / "ref", "a", ref, spacing=(0.5, 2.0))
    _write(tmp_path / "pred", "a", pred, spacing=(0.5, 2.0))
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", jobs=1)
    (row,) = _read_csv(tmp_path / "out" / "per_case.csv")
    assert float(row["area_ref_mm2"]) == 16.0 and float(row["area_pred_mm2"]) == 24.0
    assert float(row["area_rel_err"]) == 0.5 and row["vol_ref_ml"] == "nan"
    assert summary["size_unit"] == "mm2" and summary["bland_altman"]["1"]["unit"] == "mm2"
    with pytest.raises(ConfigError, match="2D"):
        evaluate_folders(
            tmp_path / "pred", tmp_path / "ref", tmp_path / "o2", jobs=1, size_bins_ml=[1.0]
        )


def test_ignored_voxels_do_not_count_in_the_volumes(tmp_path) -> None:
    ref = np.zeros((4, 10, 10), np.uint8)
    ref[1:3, 2:7, 2:7] = 1  # 50 voxels
    ref[0] = 9  # ignore label: a whole slice
    pred = np.zeros_like(ref)
    pred[0:3, 2:7, 2:7] = 1  # 75 voxels, 25 of them in the ignored slice
    _write(tmp_path / "ref", "a", ref, spacing=(1.0, 1.0, 1.0))
    _write(tmp_path / "pred", "a", pred, spacing=(1.0, 1.0, 1.0))
    evaluate_folders(
        tmp_path / "pred", tmp_path / "ref", tmp_path / "out", jobs=1, ignore_label=9, labels=[1]
    )
    (row,) = _read_csv(tmp_path / "out" / "per_case.csv")
    assert float(row["vol_pred_ml"]) == pytest.approx(0.05)
    assert float(row["vol_ref_ml"]) == pytest.approx(0.05)


def test_bad_size_bins_are_refused_before_any_work(folders, tmp_path) -> None:
    with pytest.raises(ConfigError, match="increasing"):
        evaluate_folders(*folders, tmp_path / "out", jobs=1, size_bins_ml=[2.0, 1.0])
    assert not (tmp_path / "out").exists()


def test_cli_size_bins_reach_the_summary_and_bad_text_is_refused(folders, tmp_path) -> None:
    from typer.testing import CliRunner

    from medseg.cli.main import app

    pred, ref = folders
    args = ["evaluate", "--pred", str(pred), "--ref", str(ref), "-j", "1", "--labels", "1"]
    done = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "a"), "--size-bins", "1.5"])
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "a" / "summary.json").read_text(encoding="utf-8"))
    assert summary["stratified"]["bins"] == [1.5]
    bad = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "b"), "--size-bins", "1,x"])
    assert bad.exit_code != 0 and "--size-bins" in bad.output
