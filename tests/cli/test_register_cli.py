"""``medseg register train`` / ``apply`` end to end on a tiny 2D phantom, and their checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from medseg.cli.register import app
from medseg.data.phantoms_registration import generate_registration_dataset
from medseg.errors import OverwriteError
from medseg.io import read_image


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("register_cli")
    data = generate_registration_dataset(root / "ds", spatial_dims=2, num_cases=6)
    args = ["train", str(data), "-o", str(root / "run"), "--epochs", "1", "--steps-per-epoch", "2"]
    result = CliRunner().invoke(app, [*args, "--smooth", "0.5", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return data, root / "run"


def test_train_writes_a_run_with_its_config(trained: tuple[Path, Path]) -> None:
    _, run = trained
    assert (run / "checkpoint_best.pt").is_file() and (run / "log.csv").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["smooth"] == 0.5 and config["loss"] == "ncc" and config["spatial_dims"] == 2


def test_apply_writes_warped_image_labels_and_a_simpleitk_field(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    data, run = trained
    fixed = data / "imagesTr" / "pair_000_fixed_0000.nii.gz"
    moving = data / "imagesTr" / "pair_000_moving_0000.nii.gz"
    labels = data / "labelsTr" / "pair_000_moving.nii.gz"
    args = ["apply", "-m", str(run), "--fixed", str(fixed), "--moving", str(moving)]
    args += ["--labels", str(labels), "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    warped = read_image(tmp_path / "out" / "warped.nii.gz")
    warped_labels = read_image(tmp_path / "out" / "warped_labels.nii.gz")
    assert warped.same_grid(read_image(fixed))
    assert set(np.unique(warped_labels.array)) <= {0, 1, 2}
    field = sitk.ReadImage(str(tmp_path / "out" / "field.nii.gz"), sitk.sitkVectorFloat64)
    assert field.GetNumberOfComponentsPerPixel() == 2
    sitk.DisplacementFieldTransform(field)  # SimpleITK accepts it as a transform
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and isinstance(again.exception, OverwriteError)
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--loss", "ssd"], "--loss"),
        (["--smooth", "-1"], "--smooth"),
        (["--label-weight", "nan"], "--label-weight"),
        (["--epochs", "0"], "--epochs"),
        (["--time-budget", "soon"], "--time-budget"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_train_options_are_usage_errors(args: list[str], option: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", str(tmp_path), "-o", str(tmp_path / "run"), *args], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2
    assert option in result.output


def test_a_missing_moving_image_is_a_usage_error(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    data, run = trained
    fixed = str(data / "imagesTr" / "pair_000_fixed_0000.nii.gz")
    args = ["apply", "-m", str(run), "--fixed", fixed, "--moving", str(tmp_path / "nope.nii.gz")]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "o")], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "--moving" in result.output


def test_train_refuses_an_existing_run_without_overwrite(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    data, _ = trained
    run = tmp_path / "run"
    args = ["train", str(data), "-o", str(run), "--epochs", "1", "--steps-per-epoch", "1"]
    assert CliRunner().invoke(app, args).exit_code == 0
    (run / "notes.txt").write_text("mine", encoding="utf-8")
    again = CliRunner().invoke(app, args)
    assert isinstance(again.exception, OverwriteError)
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert (run / "notes.txt").read_text(encoding="utf-8") == "mine"  # only the run's files go
