"""CenterNet's focal loss against hand-computed values, and the Gaussian targets against a
direct evaluation of the formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.losses.heatmap import draw_gaussian, gaussian_sigma, heatmap_focal_loss, size_l1_loss


def test_focal_loss_equals_the_hand_computed_value() -> None:
    # p = 0.5, 0.75, 0.75; targets 1 (centre), 0.5 (near a centre), 1 (centre): two objects
    logits = torch.tensor([[[0.0, math.log(3.0), math.log(3.0)]]])
    target = torch.tensor([[[1.0, 0.5, 1.0]]])
    pos = 0.5**2 * math.log(0.5) + 0.25**2 * math.log(0.75)  # (1-p)^2 log p at the centres
    neg = (1 - 0.5) ** 4 * 0.75**2 * math.log(0.25)  # (1-y)^4 p^2 log(1-p) elsewhere
    expected = -(pos + neg) / 2  # two objects
    assert float(heatmap_focal_loss(logits, target)) == pytest.approx(expected, rel=1e-6)


def test_focal_loss_without_objects_is_not_divided_by_zero() -> None:
    logits = torch.full((1, 2, 3, 3), -1.0)
    p = 1 / (1 + math.e)
    expected = -18 * p**2 * math.log(1 - p)  # 18 negatives, N clamped to 1
    assert float(heatmap_focal_loss(logits, torch.zeros(1, 2, 3, 3))) == pytest.approx(expected)


def test_focal_loss_is_near_zero_for_a_confident_perfect_prediction() -> None:
    target = torch.tensor([[[0.0, 1.0, 0.0]]])
    logits = torch.tensor([[[-20.0, 20.0, -20.0]]])
    assert float(heatmap_focal_loss(logits, target)) < 1e-8
    assert float(heatmap_focal_loss(-logits, target)) > 10


def test_size_loss_reads_only_the_centres() -> None:
    size = torch.zeros(1, 2, 4)
    target = torch.tensor([[[3.0, 100.0, 1.0, 100.0], [1.0, 100.0, 5.0, 100.0]]])
    mask = torch.tensor([[[True, False, True, False]]])
    assert float(size_l1_loss(size, target, mask)) == pytest.approx((3 + 1 + 1 + 5) / 2)


@pytest.mark.parametrize(
    "shape,centre,sigma", [((9, 11), (4, 2), (1.5, 2.0)), ((7, 8, 9), (3, 0, 8), (1.0, 0.7, 2.2))]
)
def test_gaussian_equals_the_formula_within_three_sigma(shape, centre, sigma) -> None:
    heatmap = np.zeros(shape)
    draw_gaussian(heatmap, centre, sigma)
    grid = np.indices(shape)
    expected = np.exp(
        -sum((g - c) ** 2 / (2 * s * s) for g, c, s in zip(grid, centre, sigma, strict=True))
    )
    inside = np.all(
        [np.abs(g - c) <= np.ceil(3 * s) for g, c, s in zip(grid, centre, sigma, strict=True)],
        axis=0,
    )
    np.testing.assert_allclose(heatmap[inside], expected[inside], rtol=1e-12)
    assert np.all(heatmap[~inside] == 0)
    assert heatmap[centre] == 1.0 and np.sum(heatmap == 1.0) == 1


def test_gaussians_merge_by_maximum_and_sigma_follows_the_extent() -> None:
    heatmap = np.zeros((1, 9))
    draw_gaussian(heatmap, (0, 2), (1.0, 1.0))
    draw_gaussian(heatmap, (0, 5), (1.0, 1.0))
    assert heatmap[0, 2] == heatmap[0, 5] == 1.0
    assert heatmap[0, 3] == pytest.approx(math.exp(-0.5))  # max(exp(-1/2), exp(-4/2))
    assert gaussian_sigma((60, 1)) == pytest.approx((0.54 * 10, 1 / 3))
