"""Lesion-wise evaluation of label maps: regions, the ignore label, lesions.csv rows and the
dataset summary, on hand-built 2D cases."""

from __future__ import annotations

import csv
import doctest
import io
import logging
import math

import numpy as np
import pytest

import medseg.evaluation.lesions as lesions_eval
from medseg.evaluation.lesions import (
    LESION_CSV_COLUMNS,
    evaluate_lesions,
    format_lesions_csv,
    lesion_rows,
    summarize_lesions,
)
from medseg.metrics.lesions import lesion_wise

OPTIONS = {"dilation_mm": 1.0, "min_volume_mm3": 0.0}
IGNORE = 9


def _case():
    """10 x 14: label 1 two 3x3 squares (one missed), label 2 one 2x2 square (found, plus a
    spurious voxel), an ignored strip in column 13."""
    ref = np.zeros((10, 14), np.uint8)
    ref[1:4, 1:4] = 1
    ref[7:10, 1:4] = 1
    ref[1:3, 8:10] = 2
    ref[:, 13] = IGNORE
    pred = np.zeros_like(ref)
    pred[1:4, 1:4] = 1
    pred[1:3, 8:10] = 2
    pred[8, 8] = 2  # spurious
    pred[5, 13] = 1  # inside the ignored strip: no false positive
    return pred, ref


def test_evaluate_lesions_scores_each_region_and_skips_ignored_voxels():
    pred, ref = _case()
    regions = {"1": (1,), "2": (2,), "both": (1, 2)}
    res = evaluate_lesions(pred, ref, (1.0, 1.0), regions, ignore_label=IGNORE, **OPTIONS)
    assert list(res) == ["1", "2", "both"]
    one, two, both = res["1"], res["2"], res["both"]
    assert (one.tp, one.fp, one.fn) == (1, 0, 1)  # the voxel in the ignored strip is gone
    assert (one.lesion_dice, one.lesion_hd95) == (0.5, 187.0)  # (1 + 0) / 2, (0 + 374) / 2
    assert (two.tp, two.fp, two.fn) == (1, 1, 0)
    assert (two.lesion_dice, two.lesion_hd95) == (0.5, 187.0)
    # the union: 3 lesions (2 found), 1 spurious voxel: Dice (1 + 1 + 0) / 4
    assert (both.n_ref, both.tp, both.fp, both.fn) == (3, 2, 1, 1)
    assert both.lesion_dice == 0.5 and both.lesion_hd95 == 187.0  # (0 + 0 + 374 + 374) / 4
    without_ignore = evaluate_lesions(pred, ref, (1.0, 1.0), {"1": (1,)}, **OPTIONS)
    assert without_ignore["1"].fp == 1


def test_single_component_label_is_logged(caplog):
    ref = np.zeros((6, 6), np.uint8)
    ref[1:4, 1:4] = 1
    pred = np.roll(ref, 1, axis=1)
    with caplog.at_level(logging.DEBUG, logger="medseg.evaluation.lesions"):
        res = evaluate_lesions(pred, ref, (1.0, 1.0), {"tumour": (1,)}, case="c7", **OPTIONS)
    assert res["tumour"].single_component
    assert "label tumour of case c7 has one component" in caplog.text
    caplog.clear()
    pred[5, 5] = 1  # a second predicted component: lesion-wise scores now differ
    with caplog.at_level(logging.DEBUG, logger="medseg.evaluation.lesions"):
        evaluate_lesions(pred, ref, (1.0, 1.0), {"tumour": (1,)}, case="c7", **OPTIONS)
    assert "one component" not in caplog.text


def test_lesion_rows_and_csv_hold_one_line_per_lesion():
    pred, ref = _case()
    res = evaluate_lesions(pred, ref, (1.0, 2.0), {"2": (2,)}, ignore_label=IGNORE, **OPTIONS)
    rows = lesion_rows("=case", "2", res["2"])
    assert [row["kind"] for row in rows] == ["tp", "fp"]
    assert rows[0]["ref_volume_mm3"] == 8.0  # 4 voxels of 2 mm^2
    assert rows[0]["centroid"] == "1.5 8.5" and rows[1]["pred_ids"] == "2"
    rows.append({**rows[0], "dice": math.nan, "label": "@x"})
    text = format_lesions_csv(rows)
    parsed = list(csv.reader(io.StringIO(text)))
    assert tuple(parsed[0]) == LESION_CSV_COLUMNS
    assert len(parsed) == 4
    assert parsed[1][:4] == ["'=case", "2", "tp", "1"]  # formula-like case id made safe
    assert parsed[2][LESION_CSV_COLUMNS.index("hd95")] == "374.0"
    assert parsed[3][LESION_CSV_COLUMNS.index("dice")] == "nan"
    assert parsed[3][LESION_CSV_COLUMNS.index("label")] == "'@x"


def test_summary_sums_counts_and_averages_case_scores():
    a = np.zeros((8, 12), bool)
    a[1:4, 1:4] = True
    b = np.zeros_like(a)
    b[1:4, 8:11] = True
    spurious = np.zeros_like(a)
    spurious[6, 6] = True
    per_case = {
        # case 1: both lesions found: Dice 1, HD95 0
        "c1": {"1": lesion_wise(a | b, a | b, (1.0, 1.0), **OPTIONS)},
        # case 2: one lesion missed, one spurious voxel: Dice 1/3, HD95 (0 + 2 * 374) / 3
        "c2": {"1": lesion_wise(a | spurious, a | b, (1.0, 1.0), **OPTIONS)},
    }
    summary = summarize_lesions(per_case, options={"dilation_mm": 1.0})
    stats = summary["per_label"]["1"]
    assert summary["options"] == {"dilation_mm": 1.0}
    assert (stats["n_cases"], stats["n_ref"], stats["tp"], stats["fp"], stats["fn"]) == (
        2,
        4,
        3,
        1,
        1,
    )
    assert stats["precision"] == 0.75 and stats["recall"] == 0.75  # 3 / 4 each
    assert stats["f1"] == 0.75  # 2 * 3 / (2 * 3 + 1 + 1)
    assert stats["lesion_dice"]["mean"] == pytest.approx((1 + 1 / 3) / 2)
    assert stats["lesion_hd95"]["mean"] == pytest.approx((0 + 748 / 3) / 2)
    assert stats["lesion_dice"]["n"] == 2


def test_summary_counts_a_missing_label_as_both_empty():
    a = np.zeros((6, 6), bool)
    a[1:4, 1:4] = True
    spurious = lesion_wise(a, np.zeros_like(a), (1.0, 1.0), **OPTIONS)  # Dice 0, HD95 374
    summary = summarize_lesions({"c1": {"1": spurious}, "c2": {}}, labels=["1", "2"])
    one, two = summary["per_label"]["1"], summary["per_label"]["2"]
    assert one["n_cases"] == 2 and one["fp"] == 1
    assert one["lesion_dice"]["mean"] == 0.5  # (0 + 1) / 2: c2 has neither lesion nor FP
    assert one["lesion_hd95"]["mean"] == 187.0  # (374 + 0) / 2
    assert two["lesion_dice"]["mean"] == 1.0 and math.isnan(two["f1"])


def test_summary_of_nothing_is_empty():
    assert summarize_lesions({}) == {"per_label": {}, "options": {}}


def test_docstring_examples_hold():
    result = doctest.testmod(lesions_eval, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0
