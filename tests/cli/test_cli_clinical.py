"""``medseg mesh``, ``medseg export`` and ``medseg explain`` from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from medseg.cli.clinical import register
from medseg.errors import ConfigError
from medseg.io import Image, read_image, write_image

from ..inference.conftest import make_plan, write_checkpoint

pytest.importorskip("trimesh")
pytest.importorskip("onnx")


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """medseg (clinical commands only)."""

    register(app)
    return app


@pytest.fixture
def results(tmp_path: Path) -> Path:
    write_checkpoint(tmp_path / "results", make_plan(), 0, seed=0)
    return tmp_path / "results"


def test_mesh_writes_one_named_file_per_label(app: typer.Typer, tmp_path: Path) -> None:
    label = np.zeros((6, 8, 8), np.uint8)
    label[1:3, 1:4, 1:4] = 1
    label[3:5, 4:7, 4:7] = 2
    write_image(Image(label, (2.0, 1.0, 1.0)), tmp_path / "pred.nii.gz")
    result = CliRunner().invoke(
        app,
        [
            "mesh",
            str(tmp_path / "pred.nii.gz"),
            "-o",
            str(tmp_path / "m.stl"),
            "--labels",
            "liver=1,tumour=2",
            "--smooth",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m_liver.stl").stat().st_size > 0
    assert (tmp_path / "m_tumour.stl").stat().st_size > 0


@pytest.mark.parametrize("labels", ["0", "liver=", "a,b", "1,,2"])
def test_mesh_rejects_bad_labels_at_parse_time(
    app: typer.Typer, tmp_path: Path, labels: str
) -> None:
    write_image(Image(np.ones((3, 3, 3), np.uint8), (1.0, 1.0, 1.0)), tmp_path / "p.nii.gz")
    result = CliRunner().invoke(
        app, ["mesh", str(tmp_path / "p.nii.gz"), "-o", str(tmp_path / "m.stl"), "--labels", labels]
    )
    assert result.exit_code == 2 and "--labels" in result.output


def test_export_writes_onnx_with_the_plan(app: typer.Typer, results: Path, tmp_path: Path) -> None:
    from medseg.inference.onnx_export import read_onnx_metadata

    result = CliRunner().invoke(app, ["export", str(results), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "3d_fullres fold 0" in result.output
    assert read_onnx_metadata(tmp_path / "m.onnx").plan == make_plan()


def test_explain_writes_maps_on_the_input_grid(
    app: typer.Typer, results: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    image = Image(
        rng.normal(size=(8, 16, 16)).astype(np.float32), (1.0, 1.0, 1.0), (5.0, 0.0, -3.0)
    )
    write_image(image, tmp_path / "case_7_0000.nii.gz")
    result = CliRunner().invoke(
        app,
        [
            "explain",
            str(results),
            str(tmp_path / "case_7_0000.nii.gz"),
            "--label",
            "organ",
            "-o",
            str(tmp_path / "out"),
            "--no-mirror",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    heat = read_image(tmp_path / "out" / "case_7_gradcam_organ.nii.gz")
    assert heat.same_grid(image)
    assert (tmp_path / "out" / "case_7_saliency_organ.png").is_file()


def test_explain_unknown_label_is_a_config_error(
    app: typer.Typer, results: Path, tmp_path: Path
) -> None:
    write_image(Image(np.ones((8, 16, 16), np.float32), (1.0, 1.0, 1.0)), tmp_path / "c.nii.gz")
    result = CliRunner().invoke(
        app,
        [
            "explain",
            str(results),
            str(tmp_path / "c.nii.gz"),
            "--label",
            "spleen",
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert isinstance(result.exception, ConfigError)
    assert "organ, lesion" in str(result.exception)
