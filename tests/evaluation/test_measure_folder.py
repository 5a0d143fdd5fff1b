"""``measure_folder`` and ``medseg measure``: a folder of masks to volumes and components."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.errors import DatasetError, GeometryError, OverwriteError
from medseg.evaluation import measure_folder
from medseg.io import Image, write_image

SPACING = (2.0, 1.0, 0.5)  # 1 mm^3 voxels
ORIGIN = (-5.0, 3.0, 100.0)


def _mask(case: int) -> np.ndarray:
    """Label 1: a 2x3x4 block (24 voxels) and, for case 1, a lone voxel far away; label 2
    only in case 0."""
    mask = np.zeros((6, 8, 10), np.uint8)
    mask[1:3, 2:5, 3:7] = 1
    if case == 1:
        mask[5, 7, 9] = 1
    if case == 0:
        mask[4, 0, 0] = 2
    return mask


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def masks(tmp_path: Path) -> Path:
    folder = tmp_path / "labels"
    for case in range(2):
        image = Image(_mask(case), SPACING, ORIGIN)
        write_image(image, folder / f"case_{case}.nii.gz")
    return folder


def test_cli_writes_measures_and_components_end_to_end(masks, tmp_path) -> None:
    out, components = tmp_path / "measures.csv", tmp_path / "components.csv"
    result = CliRunner().invoke(
        app, ["measure", str(masks), "-o", str(out), "--components", str(components), "-j", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "measured 2 case(s)" in result.output and "volumes in mL" in result.output
    rows = _read_csv(out)
    assert list(rows[0]) == [
        "case",
        "label",
        "name",
        "voxels",
        "volume_ml",
        "surface_mm2",
        "n_components",
        "largest_component_ml",
    ]
    table = {(r["case"], r["label"]): r for r in rows}
    assert sorted(table) == [("case_0", "1"), ("case_0", "2"), ("case_1", "1"), ("case_1", "2")]
    assert float(table["case_0", "1"]["volume_ml"]) == pytest.approx(0.024)
    assert table["case_1", "1"]["n_components"] == "2"
    assert float(table["case_1", "1"]["largest_component_ml"]) == pytest.approx(0.024)
    assert table["case_1", "2"]["voxels"] == "0"  # absent label: zeros, not a missing row
    parts = _read_csv(components)
    assert len(parts) == 4  # case_0: block + label 2; case_1: block + lone voxel
    block = parts[0]
    # centroid index (1.5, 3, 4.5) in array order (z, y, x); identity direction
    assert float(block["centroid_x_mm"]) == pytest.approx(ORIGIN[0] + 4.5 * 0.5)
    assert float(block["centroid_y_mm"]) == pytest.approx(ORIGIN[1] + 3.0 * 1.0)
    assert float(block["centroid_z_mm"]) == pytest.approx(ORIGIN[2] + 1.5 * 2.0)
    assert (block["bbox_min_2"], block["bbox_max_2"]) == ("3", "6")


def test_geometry_mismatch_with_the_image_is_refused_naming_both_files(masks, tmp_path) -> None:
    images = tmp_path / "images"
    write_image(Image(np.zeros((6, 8, 10)), SPACING, ORIGIN), images / "case_0_0000.nii.gz")
    shifted = (ORIGIN[0] + 4.0, ORIGIN[1], ORIGIN[2])
    write_image(Image(np.zeros((6, 8, 10)), SPACING, shifted), images / "case_1_0000.nii.gz")
    with pytest.raises(GeometryError) as info:
        measure_folder(masks, tmp_path / "m.csv", images=images, jobs=1)
    message = str(info.value)
    assert "case_1.nii.gz" in message and "case_1_0000.nii.gz" in message
    assert "origin" in message
    assert not (tmp_path / "m.csv").exists()


def test_matching_images_are_accepted_and_a_missing_image_is_named(masks, tmp_path) -> None:
    images = tmp_path / "images"
    for case in range(2):
        write_image(Image(np.zeros((6, 8, 10)), SPACING, ORIGIN), images / f"case_{case}_0000.nrrd")
    result = measure_folder(masks, tmp_path / "m.csv", images=images, jobs=1)
    assert result["n_cases"] == 2 and result["labels"] == ["1", "2"]
    (images / "case_1_0000.nrrd").unlink()
    with pytest.raises(DatasetError, match="case_1_0000"):
        measure_folder(masks, tmp_path / "m.csv", images=images, jobs=1, overwrite=True)


def test_label_names_come_from_the_dataset_json_of_the_parent(masks, tmp_path) -> None:
    meta = {"labels": {"background": 0, "anterior": 1, "posterior": 2}}
    (tmp_path / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    measure_folder(masks, tmp_path / "m.csv", jobs=1, labels=[1, (1, 2)])
    rows = _read_csv(tmp_path / "m.csv")
    assert [(r["label"], r["name"]) for r in rows[:2]] == [
        ("1", "anterior"),
        ("1+2", "anterior+posterior"),
    ]
    assert rows[1]["voxels"] == "25"


def test_2d_masks_give_areas_and_mixing_2d_with_3d_is_refused(tmp_path) -> None:
    folder = tmp_path / "two_d"
    flat = np.zeros((5, 6), np.uint8)
    flat[1:3, 1:4] = 1
    write_image(Image(flat, (0.5, 2.0)), folder / "a.nii.gz")
    measure_folder(folder, tmp_path / "m.csv", jobs=1)
    (row,) = _read_csv(tmp_path / "m.csv")
    assert float(row["area_mm2"]) == 6.0 and "perimeter_mm" in row
    write_image(Image(_mask(0), SPACING), folder / "b.nii.gz")
    with pytest.raises(DatasetError, match="mix 2D and 3D"):
        measure_folder(folder, tmp_path / "m.csv", jobs=1, overwrite=True)


def test_existing_outputs_are_not_overwritten(masks, tmp_path) -> None:
    (tmp_path / "m.csv").write_text("keep", encoding="utf-8")
    with pytest.raises(OverwriteError):
        measure_folder(masks, tmp_path / "m.csv", jobs=1)
    assert (tmp_path / "m.csv").read_text(encoding="utf-8") == "keep"
    result = CliRunner().invoke(app, ["measure", str(masks), "-o", str(tmp_path / "m.csv")])
    assert result.exit_code != 0


def test_an_empty_mask_gets_rows_of_zeros(masks, tmp_path) -> None:
    write_image(Image(np.zeros((6, 8, 10), np.uint8), SPACING, ORIGIN), masks / "empty.nii.gz")
    measure_folder(masks, tmp_path / "m.csv", jobs=1)
    rows = [r for r in _read_csv(tmp_path / "m.csv") if r["case"] == "empty"]
    assert [(r["label"], r["voxels"], r["n_components"]) for r in rows] == [
        ("1", "0", "0"),
        ("2", "0", "0"),
    ]


@pytest.mark.slow  # spawning two workers that import medseg takes seconds
def test_two_workers_give_the_same_file_as_one(masks, tmp_path) -> None:
    measure_folder(masks, tmp_path / "one.csv", jobs=1)
    measure_folder(masks, tmp_path / "two.csv", jobs=2)
    one = (tmp_path / "one.csv").read_text(encoding="utf-8")
    assert one == (tmp_path / "two.csv").read_text(encoding="utf-8")
