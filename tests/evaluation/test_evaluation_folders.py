"""evaluate_folders: case matching, outputs, geometry checks, overwrite rule."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import DatasetError, GeometryError, ImageIOError, OverwriteError
from medseg.evaluation import CSV_COLUMNS, evaluate_folders, match_cases, parse_labels
from medseg.evaluation.cases import present_labels
from medseg.io import Image, write_image

SPACING = (3.0, 1.0, 1.0)


def _reference(shift: int = 0) -> np.ndarray:
    label = np.zeros((5, 12, 12), np.uint8)
    label[1:4, 2:8, 2:8] = 1
    label[2:3, 8:10, 3:6] = 2
    return np.roll(label, shift, axis=2)


def _write(folder: Path, case: str, array: np.ndarray, spacing=SPACING, ending=".nii.gz") -> Path:
    return write_image(Image(array, spacing), folder / f"{case}{ending}", overwrite=True)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    for i in range(3):
        _write(ref, f"case_{i:03d}", _reference())
        _write(pred, f"case_{i:03d}", _reference(shift=i))
    return pred, ref


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_per_case_csv_has_exactly_the_documented_columns(folders, tmp_path) -> None:
    evaluate_folders(*folders, tmp_path / "out", jobs=1)
    header = (tmp_path / "out" / "per_case.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == (
        "case,label,tp,fp,fn,tn,dice,iou,precision,recall,specificity,npv,accuracy,f1,mcc,"
        "vs,hd,hd95,assd,masd,nsd,vol_pred_ml,vol_ref_ml,vol_diff_ml,vol_rel_err,"
        "area_pred_mm2,area_ref_mm2,area_diff_mm2,area_rel_err"
    )
    assert tuple(header.split(",")) == CSV_COLUMNS


def test_one_row_per_case_and_reference_label_with_perfect_first_case(folders, tmp_path) -> None:
    evaluate_folders(*folders, tmp_path / "out", jobs=1)
    rows = _read_csv(tmp_path / "out" / "per_case.csv")
    assert [(r["case"], r["label"]) for r in rows] == [
        (f"case_{i:03d}", lab) for i in range(3) for lab in "12"
    ]
    assert rows[0]["dice"] == "1.0" and rows[0]["hd"] == "0.0" and rows[0]["tp"] == "108"


def test_summary_has_mean_std_median_and_nan_count_per_label_and_overall(folders, tmp_path) -> None:
    summary = evaluate_folders(*folders, tmp_path / "out", jobs=1)
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert on_disk["n_cases"] == summary["n_cases"] == 3
    assert set(on_disk["per_label"]["1"]["dice"]) == {"mean", "std", "median", "n", "nan_count"}
    assert on_disk["overall"]["hd"]["mean"] == pytest.approx(summary["overall"]["hd"]["mean"])
    assert (
        on_disk["options"]["hd95_mode"] == "max_directed"
        and on_disk["options"]["tolerance_mm"] == 2.0
    )


def test_nan_is_written_as_nan_in_csv_and_null_in_json(folders, tmp_path) -> None:
    pred, ref = folders
    _write(ref, "case_empty", np.zeros((5, 12, 12), np.uint8))
    _write(pred, "case_empty", np.zeros((5, 12, 12), np.uint8))
    evaluate_folders(pred, ref, tmp_path / "out", jobs=1)
    rows = [r for r in _read_csv(tmp_path / "out" / "per_case.csv") if r["case"] == "case_empty"]
    assert len(rows) == 2 and all(r["dice"] == "nan" and r["hd95"] == "nan" for r in rows)
    assert rows[0]["tn"] == str(5 * 12 * 12)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["per_label"]["1"]["dice"]["nan_count"] == 1


def test_regions_and_named_labels_from_the_option_text(folders, tmp_path) -> None:
    summary = evaluate_folders(*folders, tmp_path / "out", labels=parse_labels("2,all=1+2"), jobs=1)
    assert summary["labels"] == ["2", "all"]
    assert summary["options"]["labels"] == {"2": [2], "all": [1, 2]}


def test_two_worker_processes_give_the_same_rows_as_one(folders, tmp_path) -> None:
    evaluate_folders(*folders, tmp_path / "one", jobs=1)
    evaluate_folders(*folders, tmp_path / "two", jobs=2)
    assert (tmp_path / "one" / "per_case.csv").read_text(encoding="utf-8") == (
        tmp_path / "two" / "per_case.csv"
    ).read_text(encoding="utf-8")


def test_existing_outputs_are_not_overwritten_without_overwrite(folders, tmp_path) -> None:
    evaluate_folders(*folders, tmp_path / "out", jobs=1)
    before = (tmp_path / "out" / "per_case.csv").read_text(encoding="utf-8")
    with pytest.raises(OverwriteError, match="--overwrite"):
        evaluate_folders(*folders, tmp_path / "out", jobs=1)
    assert (tmp_path / "out" / "per_case.csv").read_text(encoding="utf-8") == before
    evaluate_folders(*folders, tmp_path / "out", jobs=1, overwrite=True)


def test_a_shape_mismatch_names_the_case(folders, tmp_path) -> None:
    pred, _ = folders
    _write(pred, "case_001", np.zeros((5, 12, 11), np.uint8))
    with pytest.raises(GeometryError, match="case_001.*shape"):
        evaluate_folders(*folders, tmp_path / "out", jobs=1)
    assert not (tmp_path / "out" / "per_case.csv").exists()


def test_a_spacing_mismatch_names_the_case(folders, tmp_path) -> None:
    pred, _ = folders
    (pred / "case_002.nii.gz").unlink()
    _write(pred, "case_002", _reference(), spacing=(2.0, 1.0, 1.0))
    with pytest.raises(GeometryError, match="case_002.*spacing"):
        evaluate_folders(*folders, tmp_path / "out", jobs=1)


def test_a_missing_prediction_is_an_error_listing_the_case(folders, tmp_path) -> None:
    pred, _ = folders
    (pred / "case_001.nii.gz").unlink()
    with pytest.raises(DatasetError, match="case_001"):
        evaluate_folders(*folders, tmp_path / "out", jobs=1)


def test_cases_match_by_name_minus_extension_across_formats(tmp_path) -> None:
    _write(tmp_path / "ref", "a.b", _reference(), ending=".nii.gz")
    _write(tmp_path / "pred", "a.b", _reference(), ending=".nrrd")
    _write(tmp_path / "pred", "extra", _reference())
    (tmp_path / "pred" / "notes.txt").write_text("not an image", encoding="utf-8")
    pairs = match_cases(tmp_path / "pred", tmp_path / "ref")
    assert [(p.case, p.pred_path.name, p.ref_path.name) for p in pairs] == [
        ("a.b", "a.b.nrrd", "a.b.nii.gz")
    ]


def test_two_files_with_one_case_id_are_refused(tmp_path) -> None:
    _write(tmp_path / "ref", "a", _reference(), ending=".nii.gz")
    _write(tmp_path / "ref", "a", _reference(), ending=".nii")
    with pytest.raises(DatasetError, match="two files"):
        match_cases(tmp_path / "ref", tmp_path / "ref")


def test_a_missing_folder_is_an_image_io_error(tmp_path) -> None:
    with pytest.raises(ImageIOError, match="no such folder"):
        match_cases(tmp_path / "nope", tmp_path / "nope")


def test_default_labels_come_from_the_references_only(folders, tmp_path) -> None:
    pred, _ = folders
    noisy = _reference()
    noisy[0, 0, 0] = 5  # a label that no reference has
    (pred / "case_000.nii.gz").unlink()
    _write(pred, "case_000", noisy)
    summary = evaluate_folders(*folders, tmp_path / "out", jobs=1)
    assert summary["labels"] == ["1", "2"]


def test_2d_png_label_maps_are_evaluated_in_2d(tmp_path) -> None:
    label = np.zeros((16, 16), np.uint8)
    label[4:10, 4:10] = 1
    write_image(Image(label, (1.0, 1.0)), tmp_path / "ref" / "x.png")
    write_image(Image(np.roll(label, 1, axis=0), (1.0, 1.0)), tmp_path / "pred" / "x.png")
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", jobs=1)
    assert summary["per_label"]["1"]["hd"]["mean"] == 1.0


def test_present_labels_counts_without_sorting_the_volume() -> None:
    array = np.zeros((4, 5, 6), np.uint16)
    array[0, 0, :3] = [3, 700, 9]
    assert present_labels(array) == [3, 9, 700]
    assert present_labels(array, ignore_label=9) == [3, 700]
    assert present_labels(np.array([[-1, 0, 2]])) == [-1, 2]


def test_nan_statistics_are_nan_in_the_returned_summary(tmp_path) -> None:
    _write(tmp_path / "ref", "e", np.zeros((3, 4, 4), np.uint8))
    _write(tmp_path / "pred", "e", np.zeros((3, 4, 4), np.uint8))
    summary = evaluate_folders(
        tmp_path / "pred", tmp_path / "ref", tmp_path / "out", labels=[1], jobs=1
    )
    assert math.isnan(summary["per_label"]["1"]["dice"]["mean"])
    assert (
        json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))["per_label"][
            "1"
        ]["dice"]["mean"]
        is None
    )


def test_case_ids_and_label_names_a_spreadsheet_would_run_are_quoted(tmp_path) -> None:
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    for case in ("@x", "-1.5"):
        _write(ref, case, _reference())
        _write(pred, case, _reference())
    evaluate_folders(
        pred, ref, tmp_path / "out", labels={'=HYPERLINK("http://e.vil","x")': 1}, jobs=1
    )
    rows = _read_csv(tmp_path / "out" / "per_case.csv")
    assert [(r["case"], r["label"]) for r in rows] == [
        ("-1.5", '\'=HYPERLINK("http://e.vil","x")'),  # a number stays a number
        ("'@x", '\'=HYPERLINK("http://e.vil","x")'),
    ]
    assert rows[0]["dice"] == "1.0"
