"""``medseg data phantoms --slide``: a phantom slide, its labels and glands from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.io.slide import open_slide

pytest.importorskip("zarr", reason="slide reading needs zarr (pip install medseg[pathology])")

SLIDE = ["data", "phantoms", "--slide"]

try:
    import openslide  # noqa: F401

    HAS_OPENSLIDE = True
except (ImportError, OSError):  # the Python package, or its C library, is missing
    HAS_OPENSLIDE = False


def test_slide_option_writes_slide_labels_and_geojson(tmp_path: Path) -> None:
    out = tmp_path / "s.ome.tif"
    args = [*SLIDE, str(out), "--slide-size", "1024", "--mpp", "1.0", "--stain", "7"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "wrote phantom slide" in result.output
    with open_slide(out) as slide, open_slide(tmp_path / "s_labels.ome.tif") as labels:
        assert slide.levels[0].shape == labels.levels[0].shape == (1024, 1024)
        assert slide.mpp == pytest.approx(1.0)
    glands = json.loads((tmp_path / "s_glands.geojson").read_text())
    assert glands["type"] == "FeatureCollection"
    assert set(np.unique(tifffile.imread(tmp_path / "s_labels.ome.tif"))) <= {0, 1, 2, 3}
    again = CliRunner().invoke(app, args)  # exists: a one-line error, exit code 1
    assert again.exit_code == 1 and "--overwrite" in str(again.exception or again.output)
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.skipif(not HAS_OPENSLIDE, reason="openslide not installed")
def test_pages_layout_gives_openslide_every_level(tmp_path: Path) -> None:
    out = tmp_path / "p.tif"
    args = [*SLIDE, str(out), "--slide-size", "1024", "--slide-layout", "pages"]
    assert CliRunner().invoke(app, args).exit_code == 0
    with open_slide(out, backend="openslide") as slide:
        assert [lv.shape for lv in slide.levels] == [(1024, 1024), (512, 512)]


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["--stain", "purple"], "--stain"),
        (["--stain", "-3"], "--stain"),
        (["--slide-size", "10"], "--slide-size"),
        (["--mpp", "0"], "--mpp"),
        (["--slide-layout", "zarr"], "--slide-layout"),
    ],
)
def test_bad_slide_values_are_usage_errors(tmp_path: Path, extra: list[str], option: str) -> None:
    result = CliRunner().invoke(
        app, [*SLIDE, str(tmp_path / "x.tif"), *extra], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 2 and option in result.output
    assert not (tmp_path / "x.tif").exists()


def test_neither_dataset_nor_slide_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["data", "phantoms"], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and "--slide" in result.output


def test_slide_into_a_folder_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [*SLIDE, str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and "is a folder" in result.output
