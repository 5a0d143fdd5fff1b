"""DICOM series in, DICOM SEG out: frame order, references, several series, non-DICOM input."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.errors import ConfigError, DatasetError, GeometryError, OverwriteError
from medseg.io import Image
from medseg.io.dicom import find_dicom_series, read_dicom_series, write_dicom_seg

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

SHAPE = (8, 32, 32)  # (z, y, x): 8 slices of 32 x 32
SPACING_XYZ = (0.8, 0.9, 2.5)
ORIGIN = (-10.0, 5.0, 30.0)
SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}


def write_series(
    folder: Path,
    *,
    description: str = "phantom CT",
    seed: int = 0,
    modality: str = "CT",
    array: np.ndarray | None = None,
    spacing_xyz: tuple[float, float, float] = SPACING_XYZ,
) -> list[str]:
    """Write a DICOM series with SimpleITK, one file per slice (files named in the reverse of
    their slice order, so name order is not position order): ``array`` ``(z, y, x)`` (default
    8 slices of 32 x 32 random values). Returns the SOP Instance UIDs in slice order
    (increasing z)."""
    folder.mkdir(parents=True, exist_ok=True)
    if array is None:
        array = np.random.default_rng(seed).integers(0, 1000, SHAPE)
    volume = sitk.GetImageFromArray(np.asarray(array).astype(np.int16))
    volume.SetSpacing(spacing_xyz)
    volume.SetOrigin(ORIGIN)
    study = pydicom.uid.generate_uid()
    series = pydicom.uid.generate_uid()
    frame_of_reference = pydicom.uid.generate_uid()
    d = volume.GetDirection()
    orientation = "\\".join(str(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uids = []
    slices = volume.GetSize()[2]
    for k in range(slices):
        uid = pydicom.uid.generate_uid()
        uids.append(uid)
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0016": SOP_CLASS[modality],
            "0008|0018": uid,
            "0008|0021": "20240101",
            "0008|0031": "120000",
            "0008|0060": modality,
            "0008|103e": description,
            "0010|0010": "Phantom^Test",
            "0010|0020": "P0001",
            "0018|0050": str(spacing_xyz[2]),
            "0020|000d": study,
            "0020|000e": series,
            "0020|0011": "3",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(str(v) for v in position),
            "0020|0037": orientation,
            "0020|0052": frame_of_reference,
        }
        slice_image = volume[:, :, k]
        for key, value in tags.items():
            slice_image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"IM{slices - k:04d}.dcm"))
        writer.Execute(slice_image)
    return uids


def known_mask() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[1:4, 10:20, 5:15] = 1  # organ on slices 1-3
    mask[6, 2:5, 20:30] = 3  # a label value that is not consecutive, on slice 6 only
    return mask


def test_read_series_sorts_files_by_position_and_keeps_geometry(tmp_path: Path) -> None:
    uids = write_series(tmp_path / "ct")
    image, files = read_dicom_series(tmp_path / "ct")
    assert image.spatial_shape == SHAPE
    np.testing.assert_allclose(image.spacing, SPACING_XYZ[::-1])
    np.testing.assert_allclose(image.origin, ORIGIN)
    assert [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files] == uids


def test_seg_round_trips_mask_in_frame_order_and_references_sources(tmp_path: Path) -> None:
    uids = write_series(tmp_path / "ct")
    image, files = read_dicom_series(tmp_path / "ct")
    mask = known_mask()
    out = write_dicom_seg(
        image.with_array(mask),
        files,
        tmp_path / "seg.dcm",
        segments={1: "organ", 2: "lesion", 3: "cyst"},
    )
    seg = hd.seg.segread(out)
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert labels == ["organ", "lesion", "cyst"]  # declared 2 kept (empty), numbered by value
    assert {str(s.SegmentAlgorithmType) for s in seg.SegmentSequence} == {"AUTOMATIC"}
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        segment_numbers=[1, 2, 3],
        assert_missing_frames_are_empty=True,
    )
    assert pixels.shape == (*SHAPE, 3)
    np.testing.assert_array_equal(pixels[..., 0], mask == 1)
    np.testing.assert_array_equal(pixels[..., 1], np.zeros(SHAPE, bool))
    np.testing.assert_array_equal(pixels[..., 2], mask == 3)
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced == set(uids)


def test_empty_prediction_writes_seg_with_empty_segments(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uids = write_series(tmp_path / "ct")
    image, files = read_dicom_series(tmp_path / "ct")
    with caplog.at_level(logging.WARNING, logger="medseg.io.dicom"):
        out = write_dicom_seg(
            image.with_array(np.zeros(SHAPE, np.uint8)),
            files,
            tmp_path / "seg.dcm",
            segments={1: "organ"},
        )
    assert "empty" in caplog.text
    seg = hd.seg.segread(out)
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])
    assert pixels.shape == (*SHAPE, 1) and not pixels.any()


def test_seg_refuses_label_not_on_series_grid_and_existing_output(tmp_path: Path) -> None:
    write_series(tmp_path / "ct")
    image, files = read_dicom_series(tmp_path / "ct")
    with pytest.raises(GeometryError, match="does not match the source series"):
        write_dicom_seg(
            Image(np.ones((7, 32, 32)), (1, 1, 1)), files, tmp_path / "a.dcm", segments={}
        )
    (tmp_path / "b.dcm").write_bytes(b"x")
    with pytest.raises(OverwriteError):
        write_dicom_seg(image.with_array(known_mask()), files, tmp_path / "b.dcm", segments={})


def test_folder_with_two_series_names_both(tmp_path: Path) -> None:
    write_series(tmp_path / "mixed", description="arterial")
    write_series(tmp_path / "other", description="venous", seed=1)
    for path in (tmp_path / "other").iterdir():
        path.rename(tmp_path / "mixed" / f"v_{path.name}")
    with pytest.raises(DatasetError, match="2 DICOM series") as err:
        find_dicom_series(tmp_path / "mixed")
    assert "'arterial', 8 files" in str(err.value) and "'venous', 8 files" in str(err.value)
    assert "series_uid" in str(err.value)
    uid = pydicom.dcmread(next((tmp_path / "mixed").glob("v_*")), stop_before_pixels=True)
    image, files = read_dicom_series(tmp_path / "mixed", series_uid=uid.SeriesInstanceUID)
    assert image.spatial_shape == SHAPE and all(f.name.startswith("v_") for f in files)


def test_folder_without_dicom_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "nifti").mkdir()
    (tmp_path / "nifti" / "case_0000.nii.gz").write_bytes(b"not dicom")
    with pytest.raises(DatasetError, match="holds no DICOM series"):
        read_dicom_series(tmp_path / "nifti")


def test_missing_dicom_extra_names_the_pip_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import highdicom now fails
    with pytest.raises(ConfigError, match=r'highdicom is missing.*pip install "medseg\[dicom\]"'):
        write_dicom_seg(
            Image(np.ones((1, 2, 2)), (1.0, 1.0, 1.0)), ["x.dcm"], tmp_path / "s.dcm", segments={}
        )
