"""evaluate_case (labels, regions, ignore label) and aggregate (NaN-aware summaries)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.errors import ConfigError, GeometryError
from medseg.metrics import (
    METRIC_COLUMNS,
    aggregate,
    case_rows,
    describe,
    evaluate_case,
    label_regions,
)

REF = np.array(
    [
        [0, 1, 1, 2, 2, 0],
        [0, 1, 1, 2, 2, 0],
        [0, 3, 3, 0, 0, 0],
    ]
)
PRED = np.array(
    [
        [0, 1, 1, 1, 2, 0],
        [0, 1, 1, 2, 2, 0],
        [0, 0, 3, 0, 0, 0],
    ]
)


def test_default_labels_are_the_non_zero_reference_values() -> None:
    result = evaluate_case(PRED, REF, (1.0, 1.0))
    assert list(result) == ["1", "2", "3"]
    assert all(list(metrics) == list(METRIC_COLUMNS) for metrics in result.values())


def test_per_label_dice_is_hand_computed() -> None:
    result = evaluate_case(PRED, REF, (1.0, 1.0))
    assert result["1"]["dice"] == pytest.approx(2 * 4 / (5 + 4))
    assert result["2"]["dice"] == pytest.approx(2 * 3 / (3 + 4))
    assert result["3"]["dice"] == pytest.approx(2 * 1 / (1 + 2))


def test_a_region_is_the_union_of_its_labels() -> None:
    result = evaluate_case(PRED, REF, (1.0, 1.0), labels={"whole": [1, 2, 3]})
    assert result["whole"]["tp"] == 9 and result["whole"]["fn"] == 1 and result["whole"]["fp"] == 0


def test_ignored_reference_voxels_count_nowhere() -> None:
    ref = REF.copy()
    ref[2, 1] = 9  # the missed label-3 voxel becomes "ignore"
    result = evaluate_case(PRED, ref, (1.0, 1.0), labels=[3], ignore_label=9)
    assert result["3"]["dice"] == 1.0
    assert result["3"]["tp"] + result["3"]["tn"] == REF.size - 1


def test_a_label_absent_from_both_maps_gets_the_both_empty_row() -> None:
    result = evaluate_case(PRED, REF, (1.0, 1.0), labels=[7])
    assert math.isnan(result["7"]["dice"]) and result["7"]["specificity"] == 1.0


def test_label_regions_names_ints_and_unions() -> None:
    assert label_regions([1, (2, 3)]) == {"1": (1,), "2+3": (2, 3)}


@pytest.mark.parametrize("bad", [[], ["a"], [1.5], [()], [1, 1]])
def test_bad_label_specifications_are_refused(bad) -> None:
    with pytest.raises(ConfigError):
        label_regions(bad)


def test_maps_of_different_shapes_raise_geometry_error() -> None:
    with pytest.raises(GeometryError):
        evaluate_case(PRED[:, :5], REF, (1.0, 1.0))


def test_evaluate_case_runs_on_3d_label_maps_with_anisotropic_spacing() -> None:
    ref = np.zeros((4, 6, 6), int)
    ref[1:3, 1:5, 1:5] = 1
    pred = np.roll(ref, 1, axis=0)
    result = evaluate_case(pred, ref, (5.0, 1.0, 1.0))
    assert result["1"]["hd"] == 5.0 and result["1"]["dice"] == 0.5


def test_describe_skips_nans_and_counts_them() -> None:
    assert describe([1.0, math.nan, 3.0, math.nan]) == {
        "mean": 2.0,
        "std": 1.0,
        "median": 2.0,
        "n": 2,
        "nan_count": 2,
    }


def test_describe_of_only_nans_is_nan_with_the_count() -> None:
    stats = describe([math.nan])
    assert math.isnan(stats["mean"]) and stats["nan_count"] == 1 and stats["n"] == 0


def test_aggregate_reports_per_label_and_pooled_overall_statistics() -> None:
    rows = case_rows("a", {"1": {"dice": 0.5}, "2": {"dice": math.nan}})
    rows += case_rows("b", {"1": {"dice": 1.0}, "2": {"dice": 0.0}})
    summary = aggregate(rows, metrics=["dice"])
    assert summary["n_cases"] == 2 and summary["labels"] == ["1", "2"]
    assert summary["per_label"]["1"]["dice"]["mean"] == 0.75
    assert summary["per_label"]["2"]["dice"]["nan_count"] == 1
    assert summary["overall"]["dice"]["mean"] == pytest.approx(0.5)
    assert summary["overall"]["dice"]["nan_count"] == 1
