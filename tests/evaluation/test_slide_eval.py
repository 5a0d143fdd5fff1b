"""Slide masks evaluated tile by tile equal the metrics of the whole arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medseg.data.slide_array import ArraySlide
from medseg.errors import ConfigError, DatasetError
from medseg.evaluation.slide import evaluate_slide, labels_from_dataset_json, region_counts
from medseg.io.slide_writer import write_pyramidal_tiff


def masks(seed: int = 0, shape=(300, 220)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = np.zeros(shape, np.uint8)
    ref[40:200, 30:150] = 1
    ref[100:160, 60:120] = 2
    pred = ref.copy()
    flip = rng.random(shape) < 0.1
    pred[flip] = rng.integers(0, 3, flip.sum())
    return pred, ref


def dice_iou(pred: np.ndarray, ref: np.ndarray, values: tuple[int, ...]) -> tuple[float, float]:
    p, r = np.isin(pred, values), np.isin(ref, values)
    inter, total, union = (p & r).sum(), p.sum() + r.sum(), (p | r).sum()
    return 2 * inter / total, inter / union


def test_tile_by_tile_equals_whole_array_metrics(tmp_path):
    pred, ref = masks()
    for name, array in (("p.ome.tif", pred), ("r.ome.tif", ref)):
        write_pyramidal_tiff(
            tmp_path / name, array.shape, np.uint8, [((0, 0), array)], channels=1, tile=512, mpp=0.5
        )
    result = evaluate_slide(
        tmp_path / "p.ome.tif", tmp_path / "r.ome.tif", {"tumour": 2, "tissue": (1, 2)}, tile=64
    )
    for name, values in (("tumour", (2,)), ("tissue", (1, 2))):
        dice, iou = dice_iou(pred, ref, values)
        got = result["labels"][name]
        assert got["dice"] == pytest.approx(dice, abs=1e-12)
        assert got["iou"] == pytest.approx(iou, abs=1e-12)
        assert got["pixels_ref"] == np.isin(ref, values).sum()
        # 0.5 um pixels: 0.25 um^2 = 2.5e-7 mm^2 each
        assert got["area_pred_mm2"] == pytest.approx(np.isin(pred, values).sum() * 2.5e-7)
    assert result["shape"] == [300, 220] and result["mpp"] == pytest.approx(0.5)


def test_labels_default_to_every_value_found_and_uint16_is_counted():
    pred, ref = masks(seed=1, shape=(90, 70))
    pred16, ref16 = pred.astype(np.uint16) * 300, ref.astype(np.uint16) * 300
    result = evaluate_slide(ArraySlide(pred16, mpp=None), ArraySlide(ref16, mpp=None), tile=32)
    assert sorted(result["labels"]) == ["300", "600"]
    assert result["labels"]["600"]["dice"] == pytest.approx(dice_iou(pred, ref, (2,))[0])
    assert math.isnan(result["labels"]["300"]["area_ref_mm2"])


def test_label_absent_from_both_gives_nan_dice():
    pred, ref = masks(shape=(64, 64))
    result = evaluate_slide(ArraySlide(pred), ArraySlide(ref), [7])
    assert math.isnan(result["labels"]["7"]["dice"])
    assert result["labels"]["7"]["tn"] == 64 * 64


def test_region_counts_by_hand():
    counts = region_counts({(0, 0): 5, (1, 1): 3, (1, 2): 2, (2, 1): 1, (0, 2): 4}, (2,))
    assert (counts.tp, counts.fp, counts.fn, counts.tn) == (0, 6, 1, 8)


def test_sizes_that_differ_are_one_line_naming_both():
    with pytest.raises(DatasetError, match=r"is 10 x 12 pixels .* is 10 x 13") as err:
        evaluate_slide(
            ArraySlide(np.zeros((10, 12), np.uint8)), ArraySlide(np.zeros((10, 13), np.uint8))
        )
    assert "\n" not in str(err.value)


def test_labels_from_dataset_json(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": {"background": 0, "tumour": 1, "stroma": 2}}))
    assert labels_from_dataset_json(path) == {"tumour": (1,), "stroma": (2,)}
    path.write_text("{}")
    with pytest.raises(ConfigError, match="labels"):
        labels_from_dataset_json(path)


def test_folder_summary_is_written_once_without_overwrite(tmp_path):
    from medseg.errors import OverwriteError
    from medseg.evaluation.slide import evaluate_slide_to_folder, slide_result_lines

    pred, ref = masks(seed=2, shape=(40, 40))
    result = evaluate_slide_to_folder(ArraySlide(pred), ArraySlide(ref), tmp_path / "out", [1])
    saved = json.loads((tmp_path / "out" / "slide_summary.json").read_text())
    assert saved["labels"]["1"]["dice"] == pytest.approx(dice_iou(pred, ref, (1,))[0])
    assert slide_result_lines(result)[0].startswith("1: Dice ")
    with pytest.raises(OverwriteError):
        evaluate_slide_to_folder(ArraySlide(pred), ArraySlide(ref), tmp_path / "out", [1])


def test_a_coarser_prediction_is_scored_against_the_reference_level_of_its_size():
    pred, ref = masks(seed=3, shape=(240, 200))
    reference = ArraySlide(ref, mpp=0.5, downsamples=(1, 2, 4), is_label=True)
    coarse = pred[1::2, 1::2]  # predicted at 1.0 um/px, where the training tiles were
    result = evaluate_slide(ArraySlide(coarse, mpp=1.0, is_label=True), reference, [1, 2])
    expected = dice_iou(coarse, ref[1::2, 1::2], (1,))  # ArraySlide's level 1 of the labels
    assert result["labels"]["1"]["dice"] == pytest.approx(expected[0], abs=1e-12)
    assert result["mpp"] == pytest.approx(1.0) and tuple(result["shape"]) == coarse.shape
    with pytest.raises(DatasetError, match="no level of its pyramid has the prediction's size"):
        evaluate_slide(ArraySlide(pred[:, :150], mpp=0.5, is_label=True), reference, [1])
