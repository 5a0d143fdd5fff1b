"""``predict_dicom_series``: a DICOM series in, a DICOM SEG of the ensemble's prediction out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.errors import DatasetError, OverwriteError
from medseg.inference import predict_case
from medseg.inference.checkpoints import find_checkpoints
from medseg.inference.dicom import predict_dicom_series
from medseg.io import read_image
from medseg.io.dicom import read_dicom_series
from medseg.training import model_from_checkpoint

from ..io.test_dicom_seg import write_series
from .conftest import predict_cli_args

hd = pytest.importorskip("highdicom")


def test_predict_dicom_series_writes_the_ensemble_label_as_seg(
    phantom_results: dict[str, Path], tmp_path: Path
) -> None:
    phantom = read_image(sorted(phantom_results["images"].iterdir())[0])
    intensities = np.round(phantom.array * 100).astype(np.int16)  # DICOM stores integers
    uids = write_series(
        tmp_path / "ct", array=intensities, spacing_xyz=tuple(phantom.spacing[::-1])
    )
    out = predict_dicom_series(
        tmp_path / "ct",
        tmp_path / "seg.dcm",
        phantom_results["results"],
        configurations=["3d_fullres"],
        folds=[0],
        mirror=False,
        device="cpu",
    )
    seg = hd.seg.segread(out)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["organ", "lesion", "vessel"]
    # the same models on the same image (read back from the DICOM files), without the SEG
    image, _ = read_dicom_series(tmp_path / "ct")
    models = [
        model_from_checkpoint(p)
        for p in find_checkpoints(
            phantom_results["results"], configurations=["3d_fullres"], folds=[0]
        )
    ]
    _, label = predict_case(models, image, mirror=False, device="cpu")
    assert len(np.unique(label.array)) > 1  # the untrained models predict some foreground
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1, 2, 3]
    )
    for k, value in enumerate([1, 2, 3]):
        np.testing.assert_array_equal(pixels[..., k], label.array == value)


def test_predict_dicom_series_refuses_a_nifti_folder(
    phantom_results: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(DatasetError, match="holds no DICOM series"):
        predict_dicom_series(
            phantom_results["images"], tmp_path / "seg.dcm", phantom_results["results"]
        )


def test_cli_output_format_dicom_seg(phantom_results: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medseg.cli.main import app

    phantom = read_image(sorted(phantom_results["images"].iterdir())[0])
    uids = write_series(
        tmp_path / "ct",
        array=np.round(phantom.array * 100).astype(np.int16),
        spacing_xyz=tuple(phantom.spacing[::-1]),
    )
    results, dicom = phantom_results["results"], ("--output-format", "dicom-seg")
    args = predict_cli_args(tmp_path / "ct", tmp_path / "out", results, *dicom)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    seg = hd.seg.segread(tmp_path / "out" / "ct_seg.dcm")
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced == set(uids)
    again = CliRunner().invoke(app, args)  # never replaces a file without --overwrite
    assert isinstance(again.exception, OverwriteError) and "ct_seg.dcm" in str(again.exception)
    nifti = args.copy()
    nifti[2] = str(phantom_results["images"])
    refused = CliRunner().invoke(app, nifti)
    assert isinstance(refused.exception, DatasetError)
    assert "holds no DICOM series" in str(refused.exception)
