"""Post-processing: largest component, hole filling, and choosing on cross-validation output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import ConfigError, DatasetError
from medseg.inference import (
    apply_postprocessing,
    choose_postprocessing,
    dice_score,
    fill_holes,
    keep_largest_component,
    load_postprocessing,
)
from medseg.io import Image, write_image


def _blob_volume() -> np.ndarray:
    label = np.zeros((10, 12, 12), np.uint8)
    label[2:8, 2:8, 2:8] = 1  # the organ
    label[4:6, 4:6, 4:6] = 2  # a lesion inside it
    return label


def test_largest_component_removes_a_small_island() -> None:
    label = _blob_volume()
    label[0, 10:12, 10:12] = 1  # island of label 1
    out = keep_largest_component(label, [1, 2])
    np.testing.assert_array_equal(out, _blob_volume())
    assert label[0, 10, 10] == 1  # input untouched


def test_largest_component_works_in_2d_and_leaves_other_labels() -> None:
    label = np.zeros((8, 8), np.uint8)
    label[0:3, 0:3] = 1
    label[6, 6] = 1
    label[6, 0] = 2
    label[7, 7] = 2  # label 2 not processed
    out = keep_largest_component(label, [1])
    assert out[6, 6] == 0 and out[0, 0] == 1 and out[6, 0] == 2 and out[7, 7] == 2


def test_connectivity_decides_what_touches() -> None:
    diagonal = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert keep_largest_component(diagonal, [1]).sum() == 2  # 8-connected: one object
    assert keep_largest_component(diagonal, [1], connectivity=4).sum() == 1


def test_fill_holes_fills_an_enclosed_hole() -> None:
    label = _blob_volume()
    label[4:6, 4:6, 4:6] = 0  # the lesion's place is now a hole in the organ
    out = fill_holes(label, [1])
    assert np.all(out[2:8, 2:8, 2:8] == 1)


def test_fill_holes_never_overwrites_another_label() -> None:
    label = _blob_volume()
    np.testing.assert_array_equal(fill_holes(label, [1]), label)


def test_fill_holes_leaves_open_regions() -> None:
    cup = np.array([[1, 0, 1], [1, 0, 1], [1, 1, 1]])
    np.testing.assert_array_equal(fill_holes(cup, [1]), cup)


def test_apply_postprocessing_runs_both_steps() -> None:
    label = _blob_volume()
    label[4:6, 4:6, 4:6] = 0
    label[0, 11, 11] = 1
    out = apply_postprocessing(label, {"keep_largest_component": [1], "fill_holes": [1]})
    assert out[0, 11, 11] == 0 and np.all(out[2:8, 2:8, 2:8] == 1)


def test_dice_of_hand_made_masks_and_nan_for_two_empty_masks() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :2] = True
    b[0, :1] = True
    assert dice_score(a, b) == pytest.approx(2 / 3)
    assert math.isnan(dice_score(np.zeros(3, bool), np.zeros(3, bool)))


def _write(folder: Path, name: str, array: np.ndarray) -> None:
    write_image(Image(array.astype(np.uint8), (1.0,) * array.ndim), folder / name)


def test_choose_postprocessing_picks_largest_component_when_it_helps(tmp_path: Path) -> None:
    for i in range(3):
        ref = _blob_volume()
        pred = ref.copy()
        pred[0, 10:12, 10:12] = 1  # a false-positive island: removing it helps
        _write(tmp_path / "ref", f"c{i}.nii.gz", ref)
        _write(tmp_path / "pred", f"c{i}.nii.gz", pred)
    out = tmp_path / "postprocessing.json"
    decision = choose_postprocessing(tmp_path / "pred", tmp_path / "ref", [1, 2], out_path=out)
    assert decision["keep_largest_component"] == [1, 2]  # 2: unchanged, so it does not hurt
    assert decision["dice"]["1"]["after"] > decision["dice"]["1"]["before"]
    assert json.loads(out.read_text(encoding="utf-8"))["keep_largest_component"] == [1, 2]
    assert load_postprocessing(tmp_path)["keep_largest_component"] == [1, 2]


def test_choose_postprocessing_skips_largest_component_when_it_hurts(tmp_path: Path) -> None:
    ref = _blob_volume()
    ref[0, 9:12, 9:12] = 1  # the organ really has a second part
    pred = ref.copy()  # a perfect prediction: removing the second part hurts
    _write(tmp_path / "ref", "c.nii.gz", ref)
    _write(tmp_path / "pred", "c.nii.gz", pred)
    decision = choose_postprocessing(tmp_path / "pred", tmp_path / "ref", [1])
    assert decision["keep_largest_component"] == []
    # label 1: 208 organ voxels (216 minus the lesion) + 9 in the second part
    assert decision["dice"]["1"] == {"before": 1.0, "after": pytest.approx(2 * 208 / (208 + 217))}


def test_choose_postprocessing_leaves_out_cases_without_the_label(tmp_path: Path) -> None:
    ref = _blob_volume()
    pred = ref.copy()
    pred[0, 10:12, 10:12] = 1  # a false-positive island of label 1
    _write(tmp_path / "ref", "a.nii.gz", ref)
    _write(tmp_path / "pred", "a.nii.gz", pred)
    for name in ("b.nii.gz", "c.nii.gz"):  # empty cases: no Dice for any label
        _write(tmp_path / "ref", name, np.zeros_like(ref))
        _write(tmp_path / "pred", name, np.zeros_like(ref))
    decision = choose_postprocessing(tmp_path / "pred", tmp_path / "ref", [1, 3], out_path=None)
    one = dice_score(pred == 1, ref == 1)
    assert decision["dice"]["1"] == {"before": pytest.approx(one), "after": 1.0}  # not diluted
    assert decision["keep_largest_component"] == [1]
    assert decision["dice"]["3"] == {"before": None, "after": None}  # absent everywhere


def test_choose_postprocessing_needs_matching_references(tmp_path: Path) -> None:
    _write(tmp_path / "pred", "c.nii.gz", _blob_volume())
    (tmp_path / "ref").mkdir()
    with pytest.raises(DatasetError, match="no reference"):
        choose_postprocessing(tmp_path / "pred", tmp_path / "ref", [1])


def test_no_postprocessing_file_means_none(tmp_path: Path) -> None:
    assert load_postprocessing(tmp_path) is None
    (tmp_path / "postprocessing.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="postprocessing.json"):
        load_postprocessing(tmp_path)


def test_choose_postprocessing_counts_no_unannotated_voxel(tmp_path: Path) -> None:
    ref = _blob_volume()
    pred = ref.copy()
    pred[0, 10:12, 10:12] = 1  # an island where the reference is unannotated (value 9)
    ref[0] = 9
    _write(tmp_path / "ref", "c.nii.gz", ref)
    _write(tmp_path / "pred", "c.nii.gz", pred)
    counted = choose_postprocessing(tmp_path / "pred", tmp_path / "ref", [1])
    ignored = choose_postprocessing(tmp_path / "pred", tmp_path / "ref", [1], ignore_label=9)
    assert counted["dice"]["1"]["before"] < 1.0  # the island counted as a false positive
    assert ignored["dice"]["1"] == {"before": 1.0, "after": 1.0}
