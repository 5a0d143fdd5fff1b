"""``medseg enhance phantoms | train | apply`` end to end, and the parse-time checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli.enhance import app
from medseg.errors import MedsegError, OverwriteError
from medseg.io import read_image


def _run(args: list[str]):
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def test_phantoms_train_apply_end_to_end(tmp_path: Path) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    result = _run(["phantoms", str(data), "--cases", "4", "--noise", "gaussian:0.05"])
    assert result.exit_code == 0, result.output
    assert json.loads((data / "denoise.json").read_text())["noise"] == "gaussian:0.05"
    args = ["train", str(data), "-o", str(run), "--mode", "n2n", "--loss", "l1", "--noise"]
    args.append("gaussian:0.05")
    result = _run(
        [*args, "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "best validation PSNR" in result.output
    config = json.loads((run / "config.json").read_text())
    assert (config["mode"], config["loss"], config["noise"]) == ("n2n", "l1", "gaussian:0.05")
    noisy = data / "noisy1" / "denoise_000.nii.gz"
    out = tmp_path / "out.nii.gz"
    result = _run(["apply", str(noisy), "-m", str(run), "-o", str(out), "--mirror"])
    assert result.exit_code == 0, result.output
    denoised, source = read_image(out), read_image(noisy)
    assert denoised.array.shape == source.array.shape and denoised.spacing == source.spacing
    assert np.isfinite(denoised.array).all()
    # an existing output is kept without --overwrite
    result = _run(["apply", str(noisy), "-m", str(run), "-o", str(out)])
    assert isinstance(result.exception, OverwriteError)
    assert _run(["apply", str(noisy), "-m", str(run), "-o", str(out), "--overwrite"]).exit_code == 0


@pytest.mark.parametrize(
    ("args", "option", "accepted"),
    [
        (["train", "d", "-o", "r", "--noise", "pink:0.1"], "--noise", "rician"),
        (["train", "d", "-o", "r", "--noise", "rician:2"], "--noise", "[0, 1]"),
        (["train", "d", "-o", "r", "--mode", "n2v"], "--mode", "n2n"),
        (["train", "d", "-o", "r", "--loss", "dice"], "--loss", "ssim"),
        (["train", "d", "-o", "r", "--epochs", "0"], "--epochs", "1"),
        (["train", "d", "-o", "r", "--seed", "-1"], "--seed", "0"),
        (["train", "d", "-o", "r", "--time-budget", "soon"], "--time-budget", "20m"),
        (["phantoms", "o", "--dims", "4"], "--dims", "3"),
    ],
)
def test_bad_values_are_usage_errors(args: list[str], option: str, accepted: str) -> None:
    result = _run(args)
    message = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2, message
    assert f"Invalid value for '{option}'" in message and accepted in message


def test_a_missing_run_is_a_medseg_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert _run(["phantoms", str(data), "--cases", "1"]).exit_code == 0
    noisy = data / "noisy1" / "denoise_000.nii.gz"
    result = _run(
        ["apply", str(noisy), "-m", str(tmp_path / "none"), "-o", str(tmp_path / "o.nii.gz")]
    )
    assert isinstance(result.exception, MedsegError) and "not found" in str(result.exception)
