"""``predict`` checks its input like ``medseg data check`` does: NaN/inf voxels (refused, or set
to 0 with ``--nan-to-num``), unusable spacings, headers over the memory budget, and a missing
channel file are one line naming the file, never an all-background prediction or a crash."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from medseg.cli.predict import register
from medseg.data.dataset import Case
from medseg.errors import DatasetError, ImageIOError
from medseg.inference import predict
from medseg.inference.predict import checked_input
from medseg.io import Image, read_image, write_image


def _input_with_nan(phantom_results: dict[str, Path], folder: Path) -> Path:
    """One phantom case whose two first slices are NaN (2 x 16 x 16 = 512 voxels)."""
    source = read_image(phantom_results["images"] / "phantom_000_0000.nii.gz")
    array = source.array.astype(np.float32)
    array[:2] = np.nan
    return write_image(source.with_array(array), folder / "nan_0000.nii.gz")


def _run(phantom_results: dict[str, Path], images: Path, out: Path, **kwargs) -> list[Path]:
    return predict(
        images,
        out,
        phantom_results["results"],
        configurations=["3d_fullres"],
        folds=[0],
        mirror=False,
        device="cpu",
        **kwargs,
    )


def test_predict_refuses_nan_voxels_naming_the_file_and_count(
    phantom_results, tmp_path: Path
) -> None:
    path = _input_with_nan(phantom_results, tmp_path / "images")
    with pytest.raises(DatasetError, match=rf"{path}: 512 NaN/inf voxel\(s\); .*--nan-to-num"):
        _run(phantom_results, tmp_path / "images", tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.nii.gz"))


def test_nan_to_num_predicts_as_if_the_voxels_were_zero_with_a_warning(
    phantom_results, tmp_path, caplog
) -> None:
    path = _input_with_nan(phantom_results, tmp_path / "images")
    zeros = read_image(path)
    write_image(
        zeros.with_array(np.nan_to_num(zeros.array)), tmp_path / "zeros" / "nan_0000.nii.gz"
    )
    with caplog.at_level(logging.WARNING, logger="medseg.inference.predict"):
        [written] = _run(phantom_results, tmp_path / "images", tmp_path / "out", nan_to_num=True)
    assert f"{path}: 512 NaN/inf voxel(s); set to 0" in caplog.text
    [expected] = _run(phantom_results, tmp_path / "zeros", tmp_path / "out_zeros")
    np.testing.assert_array_equal(read_image(written).array, read_image(expected).array)


def test_cli_predict_has_a_nan_to_num_option(phantom_results, tmp_path: Path) -> None:
    _input_with_nan(phantom_results, tmp_path / "images")
    app = typer.Typer()
    register(app)
    app.callback()(lambda: None)  # keep "predict" a subcommand
    args = [
        "predict",
        "-i",
        str(tmp_path / "images"),
        "-o",
        str(tmp_path / "out"),
        "-m",
        str(phantom_results["results"]),
        "--config",
        "3d_fullres",
        "--folds",
        "0",
        "--no-mirror",
        "--device",
        "cpu",
    ]
    refused = CliRunner().invoke(app, args)
    assert isinstance(refused.exception, DatasetError) and "512 NaN/inf voxel(s)" in str(
        refused.exception
    )
    result = CliRunner().invoke(app, [*args, "--nan-to-num"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "nan.nii.gz").exists()


@pytest.mark.parametrize("spacing", [0.0, float("nan"), 1e6])
def test_predict_refuses_an_unusable_spacing_naming_the_file(
    phantom_results, tmp_path: Path, spacing
) -> None:
    import nibabel

    source = nibabel.load(str(phantom_results["images"] / "phantom_000_0000.nii.gz"))
    header = source.header.copy()
    header["pixdim"][1] = spacing
    path = tmp_path / "images" / "bad_0000.nii"
    path.parent.mkdir()
    header.set_data_dtype(np.float32)
    with open(path, "wb") as f:  # raw header bytes: nibabel's own writer would "fix" the pixdim
        f.write(header.binaryblock + b"\0" * (int(header["vox_offset"]) - 348))
        f.write(np.asarray(source.dataobj, np.float32).tobytes(order="F"))
    with pytest.raises(
        ImageIOError, match=rf"{path}: spacing .* mm (is not positive|exceeds 100 mm)"
    ):
        _run(phantom_results, path.parent, tmp_path / "out")


def test_predict_refuses_an_image_over_the_memory_budget(
    phantom_results, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MEDSEG_MAX_IMAGE_GB", "0.000001")  # about 1 KiB; the phantom has 16 KiB
    with pytest.raises(ImageIOError, match="phantom_000_0000.nii.gz: header declares .* budget"):
        _run(phantom_results, phantom_results["images"], tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.nii.gz"))


def test_a_missing_channel_file_is_named(tmp_path: Path) -> None:
    case = Case("scan", (tmp_path / "scan_0000.nii.gz",))
    image = Image(np.ones((4, 4, 4), np.float32), (1.0, 1.0, 1.0))
    with pytest.raises(
        DatasetError,
        match=r"scan_0001.nii.gz: channel file missing: case scan has 1 "
        r"channel\(s\), the model expects 2",
    ):
        checked_input(case, image, 2)
    assert checked_input(case, image, 1) is image
