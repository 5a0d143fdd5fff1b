"""Confusion-based metrics: hand-computed cases and the seed lecture's empty-mask table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.metrics import (
    ConfusionCounts,
    binary_metrics,
    confusion_counts,
    dice,
    mcc,
    overlap_metrics,
    volume_similarity,
)

# Two 4x4 masks: the reference has 4 pixels, the prediction 2 of them plus 1 outside.
REF = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]], bool)
PRED = np.array([[0, 0, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], bool)


def test_counts_of_two_4x4_masks_are_hand_counted() -> None:
    assert confusion_counts(PRED, REF) == ConfusionCounts(tp=2, fp=1, fn=2, tn=11)


def test_dice_of_two_4x4_masks_is_exactly_four_sevenths() -> None:
    # 2 TP / (2 TP + FP + FN) = 4 / 7
    assert dice(confusion_counts(PRED, REF)) == 4 / 7


def test_dice_is_exactly_two_thirds_for_one_missed_pixel_of_three() -> None:
    ref = np.zeros((4, 4), bool)
    ref[1, 1:4] = True
    pred = ref.copy()
    pred[1, 3] = False
    pred[2, 1] = True  # tp=2, fp=1, fn=1
    assert dice(confusion_counts(pred, ref)) == 2 / 3


def test_every_overlap_metric_matches_its_formula_on_hand_counts() -> None:
    m = overlap_metrics(ConfusionCounts(tp=2, fp=1, fn=2, tn=11))
    expected = {
        "dice": 4 / 7,
        "f1": 4 / 7,
        "iou": 2 / 5,
        "precision": 2 / 3,
        "recall": 2 / 4,
        "specificity": 11 / 12,
        "npv": 11 / 13,
        "accuracy": 13 / 16,
        "vs": 1 - 1 / 7,
        "mcc": (2 * 11 - 1 * 2) / math.sqrt(3 * 4 * 12 * 13),
    }
    assert m == pytest.approx(expected, rel=1e-12)


def test_volume_similarity_is_one_when_volumes_agree_but_positions_do_not() -> None:
    assert volume_similarity(ConfusionCounts(tp=0, fp=5, fn=5, tn=10)) == 1.0


def test_mcc_is_exactly_one_for_a_perfect_prediction_of_a_large_volume() -> None:
    assert mcc(ConfusionCounts(tp=123_457, fp=0, fn=0, tn=78_000_001)) == 1.0


def test_mcc_matches_scikit_learn_on_random_masks() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    pred, ref = rng.random(500) < 0.3, rng.random(500) < 0.4
    ours = mcc(confusion_counts(pred, ref))
    assert ours == pytest.approx(sklearn_metrics.matthews_corrcoef(ref, pred), abs=1e-12)


def test_counts_skip_voxels_outside_the_valid_mask() -> None:
    valid = np.ones((4, 4), bool)
    valid[1, 3] = False  # the false-positive pixel is ignored
    assert confusion_counts(PRED, REF, valid=valid) == ConfusionCounts(tp=2, fp=0, fn=2, tn=11)


def test_counts_refuse_masks_of_different_shapes() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_counts(np.zeros((2, 2)), np.zeros((2, 3)))


# ------------------------------------------------------------------ seed table: empty masks

SPACING = (1.0, 1.0)
FOUR = np.zeros((6, 6), bool)
FOUR[2:4, 2:4] = True
EMPTY = np.zeros((6, 6), bool)
DISTANCES = ("hd", "hd95", "assd", "masd")


def test_reference_empty_gives_zero_overlap_nan_recall_and_nan_distances() -> None:
    m = binary_metrics(FOUR, EMPTY, SPACING)
    assert (m["tp"], m["fn"], m["fp"]) == (0, 0, 4)
    assert m["dice"] == m["iou"] == m["precision"] == m["nsd"] == 0.0
    assert math.isnan(m["recall"])
    assert all(math.isnan(m[k]) for k in DISTANCES)


def test_prediction_empty_gives_zero_overlap_nan_precision_and_nan_distances() -> None:
    m = binary_metrics(EMPTY, FOUR, SPACING)
    assert (m["tp"], m["fn"], m["fp"]) == (0, 4, 0)
    assert m["dice"] == m["iou"] == m["recall"] == m["nsd"] == 0.0
    assert math.isnan(m["precision"])
    assert all(math.isnan(m[k]) for k in DISTANCES)


def test_both_empty_gives_nan_for_everything_but_specificity_accuracy_npv() -> None:
    m = binary_metrics(EMPTY, EMPTY, SPACING)
    undefined = ("dice", "iou", "recall", "precision", "f1", "vs", "mcc", "nsd", *DISTANCES)
    assert all(math.isnan(m[k]) for k in undefined)
    assert m["specificity"] == m["accuracy"] == m["npv"] == 1.0
    assert m["tn"] == 36
