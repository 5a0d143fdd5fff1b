"""Case ranking, slice choice and the overlay figure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.io import Image
from medseg.report.figures import case_overlay, overlay_slice, to_data_uri
from medseg.report.results import pick_cases, rank_cases


def test_cases_rank_by_mean_dice_over_labels_skipping_nan() -> None:
    rows = [
        {"case": "a", "label": "1", "dice": 0.9},
        {"case": "a", "label": "2", "dice": math.nan},
        {"case": "b", "label": "1", "dice": 0.5},
        {"case": "b", "label": "2", "dice": 0.7},
        {"case": "c", "label": "1", "dice": math.nan},
        {"case": "c", "label": "2", "dice": math.nan},
    ]
    assert rank_cases(rows) == [("a", 0.9), ("b", pytest.approx(0.6))]


def test_best_median_worst_are_distinct_cases_when_there_are_three() -> None:
    ranked = [("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.1)]
    assert [(roles, case) for roles, case, _ in pick_cases(ranked)] == [
        ("best", "a"),
        ("median", "c"),
        ("worst", "d"),
    ]


def test_a_single_case_holds_every_role_once() -> None:
    assert pick_cases([("a", 0.5)]) == [("best, median, worst", "a", 0.5)]
    assert pick_cases([]) == []


def test_overlay_slice_is_the_axial_slice_with_most_reference_foreground() -> None:
    ref = np.zeros((5, 4, 4), np.uint8)
    ref[1, 0, 0] = 1
    ref[3, :2, :2] = 2
    image = np.arange(ref.size, dtype=float).reshape(ref.shape)
    ref2d, pred2d, image2d, z = overlay_slice(ref, ref, image[None])  # channels first
    assert z == 3
    assert np.array_equal(ref2d, ref[3]) and np.array_equal(image2d, image[3])


def test_overlay_slice_of_2d_is_the_image_and_mismatched_image_is_dropped() -> None:
    ref = np.zeros((4, 6), np.uint8)
    *_, image2d, z = overlay_slice(ref, ref, np.zeros((5, 5)))
    assert z is None and image2d is None
    with pytest.raises(ValueError, match="differ in shape"):
        overlay_slice(ref, np.zeros((4, 5)))


@pytest.mark.parametrize("channels", [None, 3])
def test_2d_overlay_renders_grey_and_rgb_pictures(channels: int | None) -> None:
    ref = np.zeros((16, 16), np.uint8)
    ref[4:12, 4:12] = 1
    pred = np.roll(ref, 2, axis=1)
    shape = (16, 16) if channels is None else (channels, 16, 16)
    picture = Image(np.random.default_rng(0).uniform(0, 255, shape), (1.0, 1.0))
    figure, notes = case_overlay(
        Image(ref, (1.0, 1.0)), Image(pred, (1.0, 1.0)), {"1": [1]}, image=picture, title="case"
    )
    assert notes == []
    assert to_data_uri(figure).startswith("data:image/png;base64,")


def test_overlay_notes_an_image_on_another_grid() -> None:
    ref = np.zeros((3, 8, 8), np.uint8)
    ref[1, 2:6, 2:6] = 1
    figure, notes = case_overlay(
        Image(ref, (2.0, 1.0, 1.0)),
        Image(ref, (2.0, 1.0, 1.0)),
        {"1": [1]},
        image=Image(np.zeros((3, 9, 9)), (2.0, 1.0, 1.0)),
        title="case",
    )
    assert figure is not None
    assert notes and "does not match" in notes[0]
