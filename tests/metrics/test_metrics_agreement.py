"""Rater agreement, majority-vote consensus and annotation-noise sweeps."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import ConfigError, GeometryError
from medseg.metrics import (
    MASK_PERTURBATIONS,
    annotation_noise_sweep,
    majority_vote,
    rater_agreement,
    summarize_annotation_sweep,
)


def _square(shift: int = 0) -> np.ndarray:
    mask = np.zeros((10, 10), np.uint8)
    mask[2:6, 2 + shift : 6 + shift] = 1
    return mask


def test_majority_vote_of_binary_masks_is_the_strict_majority() -> None:
    votes = [np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0])]
    np.testing.assert_array_equal(majority_vote(votes), [1, 1, 0, 0])


def test_majority_vote_ties_go_to_the_smallest_label() -> None:
    np.testing.assert_array_equal(majority_vote([np.array([0, 2]), np.array([3, 1])]), [0, 1])


def test_majority_vote_of_label_maps_picks_the_plurality() -> None:
    votes = [np.array([1, 2]), np.array([2, 2]), np.array([2, 0]), np.array([3, 0])]
    np.testing.assert_array_equal(majority_vote(votes), [2, 0])


def test_pairwise_dice_of_three_raters_is_hand_computed() -> None:
    out = rater_agreement([_square(), _square(), _square(1)], (1.0, 1.0))
    dices = [row["dice"] for row in out["pairs"]]
    assert dices == [1.0, 0.75, 0.75]  # shift by one column: overlap 12 of 16 + 16
    assert out["pairwise"]["1"]["dice"]["mean"] == pytest.approx(2.5 / 3)
    assert out["pairwise"]["1"]["hd"]["median"] == 1.0


def test_consensus_of_two_equal_raters_and_an_outlier_is_the_majority() -> None:
    out = rater_agreement([_square(), _square(), _square(3)], (1.0, 1.0), names=["a", "b", "c"])
    np.testing.assert_array_equal(out["consensus"], _square())
    assert [row["dice"] for row in out["vs_consensus"]] == [1.0, 1.0, 0.25]


def test_agreement_needs_two_raters_of_equal_shape() -> None:
    with pytest.raises(ConfigError, match="at least 2"):
        rater_agreement([_square()], (1.0, 1.0))
    with pytest.raises(GeometryError, match="shape"):
        rater_agreement([_square(), np.zeros((3, 3))], (1.0, 1.0))


def test_dice_falls_as_boundary_noise_grows() -> None:
    ref = np.zeros((24, 24), bool)
    ref[4:20, 4:20] = True
    rows = annotation_noise_sweep(
        ref, (1.0, 1.0), [0.0, 0.2, 0.6], perturbation="boundary", repeats=3
    )
    means = [stats["mean"] for stats in summarize_annotation_sweep(rows, "dice").values()]
    assert means[0] == 1.0 and means[0] > means[1] > means[2]


def test_a_sweep_is_reproducible_from_its_seed() -> None:
    ref = np.zeros((16, 16), bool)
    ref[4:12, 4:12] = True
    first = annotation_noise_sweep(ref, (1.0, 1.0), [0.1], perturbation="flip", seed=3)
    assert first == annotation_noise_sweep(ref, (1.0, 1.0), [0.1], perturbation="flip", seed=3)


def test_dilating_by_one_step_gives_hd_of_one_voxel() -> None:
    ref = np.zeros((12, 12), bool)
    ref[4:8, 4:8] = True
    rows = annotation_noise_sweep(ref, (2.0, 2.0), [1], perturbation="dilate", repeats=1)
    assert rows[0]["hd"] == 2.0


def test_unknown_perturbation_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError, match="boundary"):
        annotation_noise_sweep(np.ones((3, 3), bool), (1.0, 1.0), [0.1], perturbation="blur")
    assert set(MASK_PERTURBATIONS.names()) == {"boundary", "dilate", "flip", "shift"}
