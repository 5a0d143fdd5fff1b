"""Dataset layouts (nnU-Net v2, MSD, 2D folder), check_dataset problems, fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.data import Fingerprint, check_dataset, compute_fingerprint, load_dataset, read_case
from medseg.errors import ConfigError, DatasetError
from medseg.io import Image, write_image


def _messages(root: Path) -> list[str]:
    return [str(p) for p in check_dataset(load_dataset(root), jobs=1, progress=False)]


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


def test_nnunet_v2_layout_resolves_cases_channels_and_labels(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", num_cases=2, num_channels=2)
    ds = load_dataset(root)
    assert ds.layout == "nnunet_v2"
    assert [c.case_id for c in ds.cases] == ["case_000", "case_001"]
    assert [p.name for p in ds.cases[0].image_paths] == [
        "case_000_0000.nii.gz",
        "case_000_0001.nii.gz",
    ]
    assert ds.labels == {"background": 0, "organ": 1, "lesion": 2}
    image, label = read_case(ds.cases[0], num_channels=2)
    assert image.array.shape == (2, 6, 8, 10) and label.array.shape == (6, 8, 10)
    assert image.spacing == (3.0, 1.0, 1.0)


def test_clean_dataset_has_no_problems_and_is_not_modified(tiny_dataset: Path) -> None:
    before = _snapshot(tiny_dataset)
    assert _messages(tiny_dataset) == []
    compute_fingerprint(load_dataset(tiny_dataset), jobs=1, progress=False)
    assert _snapshot(tiny_dataset) == before


def test_msd_layout_with_training_list_and_value_to_name_labels(tmp_path: Path) -> None:
    root = tmp_path / "Task04"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    label = np.zeros((4, 5, 6), np.uint8)
    label[1:3, 1:3, 1:3] = 1
    write_image(
        Image(np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32), (1, 1, 1)),
        root / "imagesTr" / "hip_001.nii.gz",
    )
    write_image(Image(label, (1, 1, 1)), root / "labelsTr" / "hip_001.nii.gz")
    meta = {
        "name": "Hip",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "Anterior"},
        "numTraining": 1,
        "training": [{"image": "./imagesTr/hip_001.nii.gz", "label": "./labelsTr/hip_001.nii.gz"}],
    }
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    ds = load_dataset(root)
    assert ds.layout == "msd" and ds.labels == {"background": 0, "Anterior": 1}
    assert [c.case_id for c in ds.cases] == ["hip_001"]
    assert _messages(root) == []


def test_plain_2d_folder_of_png_images_and_masks(tmp_path: Path) -> None:
    root = tmp_path / "cells"
    for i in range(2):
        mask = np.zeros((12, 14), np.uint8)
        mask[3:8, 4:9] = 1
        write_image(
            Image(np.random.default_rng(i).integers(0, 255, (3, 12, 14)).astype(np.uint8), (1, 1)),
            root / "images" / f"img{i}.png",
        )
        write_image(Image(mask, (1, 1)), root / "masks" / f"img{i}.png")
    ds = load_dataset(root)
    assert ds.layout == "folder2d" and ds.num_channels == 3
    assert ds.labels == {"background": 0, "label_1": 1}
    assert _messages(root) == []
    image, label = read_case(ds.cases[0])
    assert image.array.shape == (3, 12, 14) and label.array.shape == (12, 14)


# ------------------------------------------------------------------ bad input


def test_missing_folder_and_empty_folder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no dataset.json"):
        load_dataset(tmp_path / "empty")


def test_invalid_dataset_json_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DatasetError, match="dataset.json: not valid JSON"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(
        json.dumps({"channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}), encoding="utf-8"
    )
    with pytest.raises(DatasetError, match="missing required key"):
        load_dataset(tmp_path)


def test_check_reports_every_problem_not_just_the_first(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "bad", num_cases=6)
    images, labels = root / "imagesTr", root / "labelsTr"
    # 0: corrupt image; 1: label with another shape; 2: label with another spacing;
    # 3: undeclared label value; 4: NaN voxels; 5: label file missing
    (images / "case_000_0000.nii.gz").write_bytes(b"garbage")
    write_image(
        Image(np.zeros((6, 8, 9), np.uint8), (3.0, 1.0, 1.0)),
        labels / "case_001.nii.gz",
        overwrite=True,
    )
    write_image(
        Image(np.zeros((6, 8, 10), np.uint8), (2.0, 1.0, 1.0)),
        labels / "case_002.nii.gz",
        overwrite=True,
    )
    bad_values = np.zeros((6, 8, 10), np.uint8)
    bad_values[0, 0, 0] = 7
    write_image(Image(bad_values, (3.0, 1.0, 1.0)), labels / "case_003.nii.gz", overwrite=True)
    nan_image = np.ones((6, 8, 10), np.float32)
    nan_image[0, 0, :3] = np.nan
    write_image(Image(nan_image, (3.0, 1.0, 1.0)), images / "case_004_0000.nii.gz", overwrite=True)
    (labels / "case_005.nii.gz").unlink()
    text = "\n".join(_messages(root))
    assert "case_000_0000.nii.gz: cannot read" in text
    assert "case_001.nii.gz: label does not match its image" in text and "shape" in text
    assert "case_002.nii.gz" in text and "spacing (2, 1, 1) vs (3, 1, 1)" in text
    assert "case_003.nii.gz: label values [7] are not in dataset.json" in text
    assert "case_004_0000.nii.gz: 3 NaN/inf voxel(s)" in text
    assert "case_005.nii.gz: label file missing" in text
    assert "numTraining is 6 but 5 labelled case(s)" in text


def test_check_reports_wrong_channel_count(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ch", num_cases=1)
    meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    meta["channel_names"] = {"0": "T1", "1": "T2"}
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    assert any("1 channel(s), dataset.json declares 2" in m for m in _messages(root))


def test_check_reports_constant_image_and_orphan_label(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "c", num_cases=1)
    write_image(
        Image(np.zeros((6, 8, 10), np.float32), (3.0, 1.0, 1.0)),
        root / "imagesTr" / "case_000_0000.nii.gz",
        overwrite=True,
    )
    write_image(
        Image(np.zeros((6, 8, 10), np.uint8), (3.0, 1.0, 1.0)), root / "labelsTr" / "stray.nii.gz"
    )
    text = "\n".join(_messages(root))
    assert "image is empty: every voxel is 0.0" in text
    assert "stray.nii.gz: label file has no matching image" in text


def test_check_reports_interpolated_non_integer_labels(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "f", num_cases=1)
    write_image(
        Image(np.full((6, 8, 10), 0.5, np.float32), (3.0, 1.0, 1.0)),
        root / "labelsTr" / "case_000.nii.gz",
        overwrite=True,
    )
    assert any("non-integer" in m for m in _messages(root))


def test_read_case_refuses_a_channel_count_mismatch(tiny_dataset: Path) -> None:
    ds = load_dataset(tiny_dataset)
    with pytest.raises(DatasetError, match="has 1 channel"):
        read_case(ds.cases[0], num_channels=2)


# ------------------------------------------------------------------ fingerprint


def test_fingerprint_statistics_match_hand_computed_values(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "fp", num_cases=3, shape=(6, 8, 10), spacing=(3.0, 1.0, 1.0))
    fp = compute_fingerprint(load_dataset(root), jobs=1, progress=False)
    assert fp.median_spacing == [3.0, 1.0, 1.0] and fp.median_shape == [6.0, 8.0, 10.0]
    assert fp.anisotropy == pytest.approx(3.0) and fp.is_anisotropic
    label = np.zeros((6, 8, 10), np.uint8)
    label[1:5, 1:7, 1:9] = 1
    label[2:4, 2:4, 2:4] = 2
    expected = np.bincount(label.ravel(), minlength=3) / label.size
    assert fp.class_fractions["organ"] == pytest.approx(expected[1])
    assert fp.class_fractions["lesion"] == pytest.approx(expected[2])
    # foreground intensities: N(100, 10) + 50 * label, i.e. 150 on organ and 200 on lesion voxels
    offsets = 100 + 50 * label[label > 0].astype(float)
    assert fp.intensity["0"]["mean"] == pytest.approx(offsets.mean(), abs=2)
    assert fp.intensity["0"]["std"] == pytest.approx(np.sqrt(100 + offsets.var()), abs=1.5)
    assert fp.intensity["0"]["percentile_00_5"] < fp.intensity["0"]["percentile_99_5"]
    assert fp.cases["case_000"]["shape"] == [6, 8, 10]


def test_fingerprint_json_round_trip_and_unknown_keys(tiny_dataset: Path, tmp_path: Path) -> None:
    fp = compute_fingerprint(load_dataset(tiny_dataset), jobs=1, progress=False)
    fp.to_json(tmp_path / "fp.json")
    assert Fingerprint.from_json(tmp_path / "fp.json") == fp
    data = json.loads((tmp_path / "fp.json").read_text(encoding="utf-8"))
    for key in (
        "cases",
        "median_spacing",
        "median_shape",
        "spacing_percentiles",
        "intensity",
        "class_fractions",
        "anisotropy",
    ):
        assert key in data
    data["bogus"] = 1
    (tmp_path / "bad.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="bogus"):
        Fingerprint.from_json(tmp_path / "bad.json")


def test_fingerprint_with_two_processes_equals_one_process(tiny_dataset: Path) -> None:
    ds = load_dataset(tiny_dataset)
    assert compute_fingerprint(ds, jobs=2, progress=False) == compute_fingerprint(
        ds, jobs=1, progress=False
    )
