"""``medseg detect train`` / ``predict``: a run folder, label maps of the input's geometry and
a CSV of boxes; bad values are usage errors; nothing is overwritten without --overwrite."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medseg.cli.detect import app
from medseg.data.phantoms_instances import generate_instances_dataset
from medseg.errors import ConfigError, OverwriteError
from medseg.io import read_image


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("detect_cli")
    data = generate_instances_dataset(root / "cells", num_cases=3, seed=2)
    args = ["train", str(data), "-o", str(root / "run"), "--head", "centernet"]
    args += ["--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "2", "--patch-size", "32"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "best validation AP50" in result.output
    return data, root / "run"


def test_train_writes_a_run_folder_and_refuses_to_overwrite_it(trained, tmp_path) -> None:
    data, run = trained
    for name in ("checkpoint_best.pt", "checkpoint_latest.pt", "config.json", "split.json"):
        assert (run / name).is_file()
    args = ["train", str(data), "-o", str(run), "--epochs", "1", "--steps-per-epoch", "1"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and isinstance(again.exception, ConfigError)
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "checkpoint_latest.pt").write_bytes((run / "checkpoint_latest.pt").read_bytes())
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(data),
            "-o",
            str(copy),
            "--epochs",
            "1",
            "--steps-per-epoch",
            "1",
            "--head",
            "watershed",
            "--overwrite",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "best validation PQ" in result.output


def test_predict_writes_label_maps_and_the_csv(trained, tmp_path) -> None:
    data, run = trained
    out = tmp_path / "pred"
    result = CliRunner().invoke(
        app, ["predict", str(data / "imagesTr"), "-m", str(run), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    with open(out / "detections.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["case", "instance", "class", "score", "lo_0", "lo_1", "hi_0", "hi_1"]
    image = read_image(data / "imagesTr/cells_000_0000.nii.gz")
    labels = read_image(out / "cells_000.nii.gz")
    assert labels.array.shape == image.array.shape[-2:] and labels.spacing == image.spacing
    for row in rows[1:]:
        lo, hi = np.array(row[4:6], int), np.array(row[6:8], int)
        assert (lo >= 0).all() and (hi >= lo).all() and (hi < 96).all()
        assert 0.0 <= float(row[3]) <= 1.0
    assert {r[0] for r in rows[1:]} <= {"cells_000", "cells_001", "cells_002"}
    again = CliRunner().invoke(
        app, ["predict", str(data / "imagesTr"), "-m", str(run), "-o", str(out)]
    )
    assert isinstance(again.exception, OverwriteError)
    single = CliRunner().invoke(
        app,
        [
            "predict",
            str(data / "imagesTr/cells_001_0000.nii.gz"),
            "-m",
            str(run),
            "-o",
            str(out),
            "--overwrite",
        ],
    )
    assert single.exit_code == 0, single.output
    assert (out / "cells_001.nii.gz").is_file()


@pytest.mark.parametrize(
    "args,option",
    [
        (["--head", "yolo"], "--head"),
        (["--instances", "blobs"], "--instances"),
        (["--labels", "a,b"], "--labels"),
        (["--epochs", "0"], "--epochs"),
        (["--time-budget", "soon"], "--time-budget"),
        (["--patch-size", "2"], "--patch-size"),
    ],
)
def test_bad_values_are_usage_errors(args: list[str], option: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", str(tmp_path), "-o", str(tmp_path / "r"), *args])
    assert result.exit_code == 2
    assert option in result.output
