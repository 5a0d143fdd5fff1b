"""Input a careless or hostile user hands in: ``medseg data check`` names it (one line per
file), ``plan`` refuses it with those lines, and ``preprocess`` refuses what slipped in after
planning with the same message, so nothing reaches training as a traceback or a wrong store."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import nibabel
import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli.data import app as data_app
from medseg.data import check_dataset, load_dataset, read_case
from medseg.errors import DatasetError, ImageIOError
from medseg.io import Image, read_image, write_image
from medseg.planning.preprocessing import preprocess
from medseg.planning.steps import plan


def _messages(root: Path) -> list[str]:
    return [str(p) for p in check_dataset(load_dataset(root), jobs=1, progress=False)]


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def _msd(
    root: Path,
    entries: list[tuple[str, str]],
    *,
    modality: dict | None = None,
    image_shape: tuple[int, ...] = (4, 5, 6),
) -> Path:
    """An MSD-layout dataset with one image/label pair per ``(image, label)`` entry."""
    rng = np.random.default_rng(0)
    for image, label in entries:
        mask = np.zeros((4, 5, 6), np.uint8)
        mask[1:3, 1:3, 1:3] = 1
        voxels = rng.normal(size=image_shape).astype(np.float32)
        if voxels.ndim == 4:  # a 4D NIfTI, as the Decathlon ships multi-modal cases
            (root / image).parent.mkdir(parents=True, exist_ok=True)
            nibabel.save(
                nibabel.Nifti1Image(voxels.T, np.diag([-1.0, -1, 1, 1])), str(root / image)
            )  # LPS identity
        else:
            write_image(Image(voxels, (1, 1, 1)), root / image, overwrite=True)
        write_image(Image(mask, (1, 1, 1)), root / label, overwrite=True)
    meta = {
        "name": "msd",
        "modality": modality or {"0": "MRI"},
        "labels": {"0": "background", "1": "a"},
        "numTraining": len(entries),
        "training": [{"image": i, "label": m} for i, m in entries],
    }
    _write_json(root / "dataset.json", meta)
    return root


# ------------------------------------------------------------------ dimensionality, channels


def test_a_4d_image_is_named_by_check_and_refused_by_plan(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", num_cases=3)
    four_d = root / "imagesTr" / "case_001_0000.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.ones((10, 8, 6, 2), np.float32), np.eye(4)), str(four_d))
    lines = _messages(root)
    assert [line for line in lines if "4D" in line] == [
        f"{four_d}: image is 4D (array shape (2, 6, 8, 10)); medseg reads 2D and 3D images, "
        "one file per channel (_0000, _0001, ...)"
    ]
    with pytest.raises(
        DatasetError, match=r"1 problem\(s\) found.*case_001_0000.nii.gz: image is 4D"
    ):
        plan(root, tmp_path / "results", progress=False)
    assert not (tmp_path / "results" / "plans.json").exists()


def test_a_dataset_mixing_2d_and_3d_cases_names_the_odd_case(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", num_cases=3)
    flat = np.zeros((8, 10), np.uint8)
    flat[2:5, 2:5] = 1
    write_image(
        Image(flat * 50.0 + 1.0, (1.0, 1.0)),
        root / "imagesTr" / "case_002_0000.nii.gz",
        overwrite=True,
    )
    write_image(Image(flat, (1.0, 1.0)), root / "labelsTr" / "case_002.nii.gz", overwrite=True)
    assert _messages(root) == [
        f"{root / 'imagesTr' / 'case_002_0000.nii.gz'}: image is 2D but 2 of 3 cases are "
        "3D; a dataset must be all 2D or all 3D"
    ]
    with pytest.raises(DatasetError, match="image is 2D but 2 of 3 cases are 3D"):
        plan(root, tmp_path / "results", progress=False)


def test_a_missing_channel_file_is_named(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", num_cases=2, num_channels=2)
    missing = root / "imagesTr" / "case_001_0001.nii.gz"
    missing.unlink()
    assert _messages(root) == [
        f"{missing}: channel file missing: case 'case_001' has 1 channel(s), "
        "dataset.json declares 2"
    ]
    case = load_dataset(root).case("case_001")
    with pytest.raises(DatasetError, match="case_001_0001.nii.gz: channel file missing"):
        read_case(case, num_channels=2)


def test_a_channel_count_differing_between_2d_pictures_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "cells"
    mask = np.zeros((12, 14), np.uint8)
    mask[3:8, 4:9] = 1
    write_image(Image(np.full((3, 12, 14), 9, np.uint8) * mask, (1, 1)), root / "images" / "a.png")
    write_image(Image(np.full((12, 14), 9, np.uint8) * mask, (1, 1)), root / "images" / "b.png")
    for name in ("a", "b"):
        write_image(Image(mask, (1, 1)), root / "masks" / f"{name}.png")
    assert _messages(root) == [
        f"{root / 'images' / 'b.png'}: case 'b' has 1 channel(s), the first image has 3"
    ]


def test_an_msd_multimodal_4d_volume_reads_as_channels(tmp_path: Path) -> None:
    root = _msd(
        tmp_path / "msd",
        [("imagesTr/x.nii.gz", "labelsTr/x.nii.gz")],
        modality={"0": "T1", "1": "T2"},
        image_shape=(2, 4, 5, 6),
    )
    written = read_image(root / "imagesTr" / "x.nii.gz")
    assert written.spatial_dims == 4  # what the file holds: channels come first in the array
    assert _messages(root) == []
    image, label = read_case(load_dataset(root).cases[0], num_channels=2)
    assert image.array.shape == (2, 4, 5, 6) and image.spacing == (1.0, 1.0, 1.0)
    assert label.array.shape == (4, 5, 6)


# ------------------------------------------------------------------ MSD paths and names


def test_msd_entries_with_one_file_name_are_a_problem_and_preprocess_refuses_them(
    tmp_path: Path,
) -> None:
    root = _msd(tmp_path / "msd", [("imagesTr/a/x.nii.gz", "labelsTr/x.nii.gz")])
    results = tmp_path / "results"
    plan(root, results, progress=False)
    _msd(
        root,
        [
            ("imagesTr/a/x.nii.gz", "labelsTr/x.nii.gz"),
            ("imagesTr/b/x.nii.gz", "labelsTr/x.nii.gz"),
        ],
    )
    first, second = root / "imagesTr/a/x.nii.gz", root / "imagesTr/b/x.nii.gz"
    expected = (
        f"{second}: case name 'x' is also used by {first}; "
        "case names must be unique, rename one of the files"
    )
    assert expected in _messages(root)
    with pytest.raises(DatasetError) as err:
        preprocess(results, jobs=1, progress=False)
    assert str(err.value) == expected
    assert not list((results / "preprocessed").rglob("*.npy"))


@pytest.mark.parametrize(
    "outside", ["../outside/y.nii.gz", "imagesTr/../../outside/y.nii.gz", "ABSOLUTE"]
)
def test_msd_paths_leading_outside_the_dataset_are_a_problem_and_never_read(
    tmp_path: Path, outside: str
) -> None:
    root = _msd(tmp_path / "msd", [("imagesTr/x.nii.gz", "labelsTr/x.nii.gz")])
    secret = tmp_path / "outside" / "y.nii.gz"
    secret.parent.mkdir()
    secret.write_bytes(b"not an image: reading it would be reported as 'cannot read'")
    outside = str(secret) if outside == "ABSOLUTE" else outside
    meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    meta["training"].append({"image": outside, "label": "labelsTr/x.nii.gz"})
    meta["numTraining"] = 1
    _write_json(root / "dataset.json", meta)
    ds = load_dataset(root)
    assert [c.case_id for c in ds.cases] == ["x"]
    lines = _messages(root)
    assert len(lines) == 1 and "points outside the dataset folder" in lines[0]
    assert "cannot read" not in lines[0]


# ------------------------------------------------------------------ labels


def test_negative_and_undeclared_label_values_are_named_with_their_file(
    make_dataset, tmp_path: Path
) -> None:
    root = make_dataset(tmp_path / "ds", num_cases=2)
    for name, value in (("case_000", -1), ("case_001", 10)):
        label = read_image(root / "labelsTr" / f"{name}.nii.gz")
        array = label.array.astype(np.int16)
        array[0, 0, 0] = value
        write_image(label.with_array(array), root / "labelsTr" / f"{name}.nii.gz", overwrite=True)
    lines = _messages(root)
    assert f"{root / 'labelsTr' / 'case_000.nii.gz'}: negative label values [-1]" in "\n".join(
        lines
    )
    assert (
        f"{root / 'labelsTr' / 'case_001.nii.gz'}: label values [10] are not in dataset.json"
        in "\n".join(lines)
    )
    with pytest.raises(DatasetError, match="negative label values"):
        plan(root, tmp_path / "results", progress=False)


def test_instance_label_maps_accept_any_id_but_still_refuse_negative_values(
    make_dataset, tmp_path: Path
) -> None:
    # "instance_labels": true (detection data): one id per object, not declared one by one
    root = make_dataset(tmp_path / "ds", num_cases=2)
    meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    meta["instance_labels"] = True
    _write_json(root / "dataset.json", meta)
    for name, value in (("case_000", -1), ("case_001", 10)):
        label = read_image(root / "labelsTr" / f"{name}.nii.gz")
        array = label.array.astype(np.int16)
        array[0, 0, 0] = value
        write_image(label.with_array(array), root / "labelsTr" / f"{name}.nii.gz", overwrite=True)
    lines = _messages(root)
    assert len(lines) == 1
    assert lines[0].startswith(f"{root / 'labelsTr' / 'case_000.nii.gz'}: negative label values")


def test_dataset_json_with_negative_shared_or_no_background_values_is_a_problem(
    make_dataset, tmp_path: Path
) -> None:
    root = make_dataset(
        tmp_path / "ds", num_cases=1, labels={"organ": 1, "lesion": 2, "also": 2, "ignore": -1}
    )
    text = "\n".join(_messages(root))
    assert "dataset.json: label 'ignore' has negative value(s) [-1]" in text
    assert "dataset.json: labels ['lesion', 'also'] share the value 2" in text
    assert "dataset.json: 'labels' declares no background with value 0" in text


def test_preprocess_refuses_an_undeclared_label_value_with_the_check_message(
    make_dataset, tmp_path: Path
) -> None:
    root = make_dataset(tmp_path / "ds", num_cases=2)
    results = tmp_path / "results"
    plan(root, results, progress=False)
    path = root / "labelsTr" / "case_001.nii.gz"
    label = read_image(path)
    array = label.array.copy()
    array[0, 0, 0] = 7
    write_image(label.with_array(array), path, overwrite=True)  # changed after planning
    [problem] = _messages(root)
    with pytest.raises(DatasetError) as err:
        preprocess(results, jobs=1, progress=False)
    assert str(err.value) == problem


# ------------------------------------------------------------------ voxels and headers


def test_preprocess_refuses_nan_voxels_naming_the_file_and_count(
    make_dataset, tmp_path: Path
) -> None:
    root = make_dataset(tmp_path / "ds", num_cases=2)
    results = tmp_path / "results"
    plan(root, results, progress=False)
    path = root / "imagesTr" / "case_001_0000.nii.gz"
    image = read_image(path)
    array = image.array.copy()
    array[0] = np.nan  # one slice of 8 x 10 voxels
    write_image(image.with_array(array), path, overwrite=True)
    with pytest.raises(DatasetError, match=rf"^{path}: 80 NaN/inf voxel\(s\); replace them"):
        preprocess(results, jobs=1, progress=False)


def test_check_plan_and_preprocess_refuse_a_zero_spacing(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", num_cases=2)
    results = tmp_path / "results"
    plan(root, results, progress=False)
    path = root / "imagesTr" / "case_001_0000.nii.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[88:92] = struct.pack("<f", 0.0)  # pixdim[3], the z spacing; ITK alone would read 1.0 mm
    path.write_bytes(gzip.compress(bytes(raw)))
    assert any(
        line.startswith(f"{path}: spacing (0, 1, 1) mm is not positive") for line in _messages(root)
    )
    with pytest.raises(ImageIOError, match=rf"^{path}: spacing"):
        preprocess(results, jobs=1, progress=False)
    with pytest.raises(DatasetError, match="case_001_0000.nii.gz: spacing"):
        plan(root, results, overwrite=True, progress=False)


def test_cli_data_check_names_each_image_over_a_tiny_budget(
    make_dataset, tmp_path: Path, monkeypatch
) -> None:
    root = make_dataset(tmp_path / "ds", num_cases=2)
    monkeypatch.setenv("MEDSEG_MAX_IMAGE_GB", "0.0000001")  # 107 bytes
    result = CliRunner().invoke(data_app, ["check", str(root), "-j", "1"])
    assert result.exit_code == 1
    lines = [line.strip() for line in result.output.splitlines() if "budget" in line]
    assert len(lines) == 4  # two images and two labels, one line each
    assert all(": header declares" in line and "MEDSEG_MAX_IMAGE_GB" in line for line in lines)
    assert any(line.startswith(f"{root / 'labelsTr' / 'case_001.nii.gz'}: ") for line in lines)
