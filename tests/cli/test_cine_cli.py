"""``medseg data frame | cine-phantoms | cine-to-frames`` (mounted here on a bare app)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel
import numpy as np
import typer
from typer.testing import CliRunner

from medseg.cli import cine
from medseg.errors import ImageIOError
from medseg.io import read_image
from medseg.io.time_axis import read_time_series

app = typer.Typer()
cine.register(app)
RUN = CliRunner()


def test_phantoms_then_frame_then_per_frame_dataset(tmp_path: Path) -> None:
    out = tmp_path / "cine"
    result = RUN.invoke(
        app,
        [
            "cine-phantoms",
            str(out),
            "--dims",
            "2",
            "--cases",
            "2",
            "--frames",
            "5",
            "--labelled-frames",
            "ed_es",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 2D+t series of 5 frames" in result.output
    series = read_time_series(out / "imagesTr" / "cine_001_0000.nii.gz")
    frame_path = tmp_path / "f3.nii.gz"
    result = RUN.invoke(
        app,
        [
            "frame",
            str(out / "imagesTr" / "cine_001_0000.nii.gz"),
            "--t",
            "3",
            "-o",
            str(frame_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "frame 3 of 5 (0.12 s)" in result.output
    np.testing.assert_array_equal(read_image(frame_path).array, series.array[3])
    result = RUN.invoke(app, ["cine-to-frames", str(out), "-o", str(tmp_path / "fr"), "-k", "2"])
    assert result.exit_code == 0, result.output
    assert "4 labelled frame(s) as cases with 5 channel(s)" in result.output
    meta = json.loads((tmp_path / "fr" / "dataset.json").read_text())
    assert meta["temporal_context"] == 2


def test_frame_of_a_file_without_interval_needs_the_option(tmp_path: Path) -> None:
    path = tmp_path / "x.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.ones((4, 3, 2, 5), np.float32), np.eye(4)), str(path))
    result = RUN.invoke(app, ["frame", str(path), "--t", "1", "-o", str(tmp_path / "o.nii.gz")])
    assert isinstance(result.exception, ImageIOError)
    assert "--frame-interval" in str(result.exception)
    result = RUN.invoke(
        app,
        [
            "frame",
            str(path),
            "--t",
            "1",
            "-o",
            str(tmp_path / "o.nii.gz"),
            "--frame-interval",
            "0.05",
        ],
    )
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "o.nii.gz").array.shape == (2, 3, 4)


def test_bad_values_stop_at_parse_time(tmp_path: Path) -> None:
    for args, flag in [
        (["cine-phantoms", str(tmp_path / "o"), "--frames", "3"], "--frames"),
        (["cine-phantoms", str(tmp_path / "o"), "--labelled-frames", "es"], "--labelled-frames"),
        (["cine-phantoms", str(tmp_path / "o"), "--noise-std", "nan"], "--noise-std"),
        (["frame", str(tmp_path), "--t", "-1", "-o", "x.nii.gz"], "--t"),
        (["cine-to-frames", str(tmp_path), "-o", "o", "--frame-interval", "0"], "--frame-interval"),
    ]:
        result = RUN.invoke(app, args)
        assert result.exit_code == 2 and flag in result.output, (args, result.output)
