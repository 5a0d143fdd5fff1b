"""``predict --save-uncertainty``: entropy maps in the input's geometry, the per-case CSV, and
an interrupted run that resumes with them."""

from __future__ import annotations

import csv
import logging
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.inference import predict
from medseg.inference.predict import uncertainty_path
from medseg.io import read_image
from medseg.metrics.uncertainty import entropy_map, summarize_entropy

from .conftest import predict_cli_args

FAST = {"configurations": ["3d_fullres"], "mirror": False, "device": "cpu"}


def _rows(path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["case"]: row for row in csv.DictReader(f)}


def test_uncertainty_maps_have_the_input_geometry_and_equal_the_probabilities_entropy(
    phantom_results, tmp_path
) -> None:
    images, results, out = phantom_results["images"], phantom_results["results"], tmp_path / "o"
    written = predict(
        images, out, results, folds=[0, 1], save_probabilities=True, save_uncertainty=True, **FAST
    )
    rows = _rows(out / "uncertainty.csv")
    assert sorted(rows) == ["phantom_000", "phantom_001", "phantom_002"]
    for target in written:
        case = target.name.split(".")[0]
        source = read_image(images / f"{case}_0000.nii.gz")
        path = uncertainty_path(target, case)
        assert path == out / "uncertainty" / f"{case}.nii.gz"
        entropy = read_image(path)
        assert entropy.array.dtype == np.float32
        assert entropy.array.shape == source.array.shape
        assert entropy.spacing == pytest.approx(source.spacing)
        assert entropy.origin == pytest.approx(source.origin)
        assert entropy.direction == pytest.approx(source.direction)
        assert 0.0 <= entropy.array.min() and entropy.array.max() <= 1.0
        # the map is the normalised entropy of the ensemble's mean probabilities
        probs = np.load(out / f"{case}.npz", allow_pickle=False)["probabilities"]
        np.testing.assert_allclose(entropy.array, entropy_map(probs), atol=1e-6)
        expected = summarize_entropy(entropy.array, read_image(target).array)
        assert float(rows[case]["mean_entropy"]) == pytest.approx(expected["mean_entropy"])
        assert int(rows[case]["foreground_voxels"]) == expected["foreground_voxels"]
        band = float(rows[case]["foreground_entropy"])
        assert (math.isnan(band) and math.isnan(expected["foreground_entropy"])) or (
            band == pytest.approx(expected["foreground_entropy"])
        )


def test_a_resumed_run_keeps_the_maps_and_redoes_a_missing_one(
    phantom_results, tmp_path, caplog
) -> None:
    images, results, out = phantom_results["images"], phantom_results["results"], tmp_path / "o"
    predict(images, out, results, folds=[0], save_uncertainty=True, **FAST)
    before = _rows(out / "uncertainty.csv")
    kept = (out / "uncertainty" / "phantom_000.nii.gz").stat().st_mtime_ns
    # an interrupted run: case 2's map not written yet, and the CSV (written last) missing
    (out / "uncertainty" / "phantom_002.nii.gz").unlink()
    (out / "uncertainty.csv").unlink()
    with caplog.at_level(logging.INFO, logger="medseg.inference.predict"):
        predict(images, out, results, folds=[0], save_uncertainty=True, **FAST)
    assert "uncertainty/phantom_002.nii.gz is missing" in caplog.text
    assert "2 of 3 case(s) were already predicted" in caplog.text
    assert (out / "uncertainty" / "phantom_000.nii.gz").stat().st_mtime_ns == kept
    assert (out / "uncertainty" / "phantom_002.nii.gz").is_file()
    after = _rows(out / "uncertainty.csv")
    assert sorted(after) == sorted(before)
    for case, row in before.items():
        assert float(after[case]["mean_entropy"]) == pytest.approx(float(row["mean_entropy"]))


def test_a_case_whose_label_map_is_missing_but_map_exists_is_predicted_again(
    phantom_results, tmp_path
) -> None:
    images, results, out = phantom_results["images"], phantom_results["results"], tmp_path / "o"
    predict(images, out, results, folds=[0], save_uncertainty=True, **FAST)
    (out / "phantom_001.nii.gz").unlink()  # the map of this run stays: it is replaced
    predict(images, out, results, folds=[0], save_uncertainty=True, **FAST)
    assert (out / "phantom_001.nii.gz").is_file()
    assert len(_rows(out / "uncertainty.csv")) == 3


def test_asking_for_maps_after_a_run_without_them_predicts_them(phantom_results, tmp_path) -> None:
    images, results, out = phantom_results["images"], phantom_results["results"], tmp_path / "o"
    predict(images, out, results, folds=[0], **FAST)
    assert not (out / "uncertainty.csv").exists()
    predict(images, out, results, folds=[0], save_uncertainty=True, **FAST)
    assert len(list((out / "uncertainty").glob("*.nii.gz"))) == 3
    assert len(_rows(out / "uncertainty.csv")) == 3


def test_the_cli_option_writes_the_maps(phantom_results, tmp_path) -> None:
    out = tmp_path / "o"
    args = predict_cli_args(
        phantom_results["images"], out, phantom_results["results"], "--save-uncertainty"
    )
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "uncertainty.csv" in result.output
    assert len(list((out / "uncertainty").glob("*.nii.gz"))) == 3
