"""Text stays UTF-8 after DICOM I/O: GDCM can leave the process in the C locale, where Python
decodes every text file opened without an encoding as ASCII."""

from __future__ import annotations

import json
import locale
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.data.dataset import load_dataset
from medseg.io import read_image
from medseg.io.formats import locale_kept

TEXT = "mean±std, Läsion"


@pytest.fixture(autouse=True)
def _utf8_default() -> None:
    """These tests start from a UTF-8 default encoding (tests/conftest.py restores the locale
    after each test)."""
    if locale.getpreferredencoding(False).lower().replace("-", "") != "utf8":
        pytest.skip("the default text encoding is not UTF-8 here")


def _write_dicom_series(folder: Path) -> np.ndarray:
    """A 3-slice CT series, one file per slice (writing DICOM itself changes the locale)."""
    array = (np.arange(3 * 4 * 5) % 200).astype(np.int16).reshape(3, 4, 5)
    itk = sitk.GetImageFromArray(array)
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    with locale_kept():
        for k in range(array.shape[0]):
            slice_ = itk[:, :, k]
            for tag, value in {
                "0020|000e": "1.2.826.0.1.3680043.2.1125.7",
                "0020|0013": str(k + 1),
                "0020|0032": f"0\\0\\{k}",
                "0020|0037": "1\\0\\0\\0\\1\\0",
                "0008|0060": "CT",
            }.items():
                slice_.SetMetaData(tag, value)
            writer.SetFileName(str(folder / f"s{k:03d}.dcm"))
            writer.Execute(slice_)
    return array


def _non_ascii_dataset(make_dataset, root: Path) -> Path:
    make_dataset(root, num_cases=1, labels={"background": 0, "Läsion": 1, "Gefäß": 2})
    meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    text = json.dumps(meta, ensure_ascii=False)  # the names as UTF-8 bytes, not \\u escapes
    (root / "dataset.json").write_text(text, encoding="utf-8")
    return root


def test_locale_kept_restores_a_locale_changed_inside_the_block() -> None:
    before = locale.setlocale(locale.LC_ALL)
    with locale_kept():
        locale.setlocale(locale.LC_ALL, "C")
    assert locale.setlocale(locale.LC_ALL) == before


def test_locale_kept_restores_the_locale_when_the_block_raises() -> None:
    before = locale.setlocale(locale.LC_ALL)
    with pytest.raises(RuntimeError), locale_kept():
        locale.setlocale(locale.LC_ALL, "C")
        raise RuntimeError("GDCM failed")
    assert locale.setlocale(locale.LC_ALL) == before


def test_non_ascii_dataset_json_and_text_read_after_a_dicom_series(
    tmp_path: Path, make_dataset
) -> None:
    array = _write_dicom_series(tmp_path / "series")
    root = _non_ascii_dataset(make_dataset, tmp_path / "ds")
    (tmp_path / "notes.txt").write_text(TEXT, encoding="utf-8")
    before = locale.setlocale(locale.LC_ALL)

    np.testing.assert_array_equal(read_image(tmp_path / "series").array, array)

    assert locale.setlocale(locale.LC_ALL) == before
    assert set(load_dataset(root).labels) == {"background", "Läsion", "Gefäß"}
    assert (tmp_path / "notes.txt").read_text() == TEXT  # noqa: PLW1514  # the default is the point


def test_a_dicom_scan_that_switches_to_the_c_locale_is_undone(tmp_path: Path, monkeypatch) -> None:
    # what GDCM builds that call setlocale(LC_ALL, "C") while scanning do to the process
    scan = sitk.ImageSeriesReader.GetGDCMSeriesIDs  # a static method

    def scan_in_c_locale(*args):
        locale.setlocale(locale.LC_ALL, "C")
        return scan(*args)

    monkeypatch.setattr(sitk.ImageSeriesReader, "GetGDCMSeriesIDs", staticmethod(scan_in_c_locale))
    _write_dicom_series(tmp_path / "series")
    (tmp_path / "notes.txt").write_text(TEXT, encoding="utf-8")

    read_image(tmp_path / "series")

    assert locale.getpreferredencoding(False).lower().replace("-", "") == "utf8"
    assert (tmp_path / "notes.txt").read_text() == TEXT  # noqa: PLW1514  # the default is the point
