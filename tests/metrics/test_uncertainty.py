"""Predictive entropy of the ensemble's mean softmax, normalised to [0, 1]."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy

from medseg.errors import ConfigError
from medseg.metrics.uncertainty import (
    case_uncertainty,
    entropy_map,
    foreground_band,
    summarize_entropy,
    uncertainty_csv,
)


def test_entropy_is_exactly_zero_where_every_member_is_certain() -> None:
    probs = np.zeros((3, 4, 5))
    probs[1] = 1.0  # every mirror and fold gave class 1 probability 1: their mean too
    out = entropy_map(probs)
    assert out.dtype == np.float32 and out.shape == (4, 5)
    assert (out == 0.0).all()


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_a_uniform_voxel_has_entropy_one_after_dividing_by_log_k(classes: int) -> None:
    probs = np.full((classes, 1), 1.0 / classes)
    # hand value: -K * (1/K) log(1/K) = log K, divided by log K
    assert entropy_map(probs)[0] == pytest.approx(1.0, abs=1e-6)


def test_entropy_matches_scipy_divided_by_log_k() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=(6, 7)).transpose(2, 0, 1)  # (4, 6, 7)
    expected = scipy_entropy(probs, axis=0) / math.log(4)
    np.testing.assert_allclose(entropy_map(probs), expected, rtol=1e-5)


def test_two_class_hand_value() -> None:
    p = 0.25
    hand = -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)
    assert entropy_map(np.array([[p], [1 - p]]))[0] == pytest.approx(hand, rel=1e-6)


def test_the_foreground_band_is_the_foreground_and_its_face_neighbours() -> None:
    label = np.zeros((5, 5), int)
    label[2, 2] = 1
    band = foreground_band(label != 0)
    assert band.sum() == 5 and band[1, 2] and band[2, 1] and not band[1, 1]
    assert not foreground_band(np.zeros((3, 3), bool)).any()


def test_case_means_over_the_image_and_the_foreground_band() -> None:
    entropy = np.zeros((5, 5), np.float32)
    entropy[2, 2] = 1.0  # the foreground voxel
    entropy[2, 3] = 0.5  # a neighbour in the band
    entropy[0, 0] = 0.25  # far background: in the image mean only
    label = np.zeros((5, 5), int)
    label[2, 2] = 2
    row = summarize_entropy(entropy, label)
    assert row["mean_entropy"] == pytest.approx(1.75 / 25)
    assert row["foreground_entropy"] == pytest.approx(1.5 / 5)
    assert row["foreground_voxels"] == 1


def test_no_predicted_foreground_gives_nan_band_entropy() -> None:
    row = case_uncertainty(np.array([[1.0, 0.6], [0.0, 0.4]]), np.array([0, 0]))
    assert math.isnan(row["foreground_entropy"]) and row["foreground_voxels"] == 0
    assert row["mean_entropy"] > 0


def test_the_csv_has_a_header_and_one_row_per_case() -> None:
    text = uncertainty_csv(
        [
            {
                "case": "=a",
                "mean_entropy": 0.5,
                "foreground_entropy": math.nan,
                "foreground_voxels": 3,
            }
        ]
    )
    assert text.splitlines() == [
        "case,mean_entropy,foreground_entropy,foreground_voxels",
        "'=a,0.5,nan,3",
    ]


def test_bad_probabilities_are_refused() -> None:
    with pytest.raises(ConfigError, match="K >= 2"):
        entropy_map(np.ones((1, 3)))
    with pytest.raises(ConfigError, match="non-negative"):
        entropy_map(np.array([[1.5], [-0.5]]))
    with pytest.raises(ConfigError, match="shape"):
        summarize_entropy(np.zeros((2, 2)), np.zeros((3, 3)))
