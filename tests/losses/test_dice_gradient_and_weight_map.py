"""Milletari's closed-form Dice gradient, and the U-Net border weight map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.losses import soft_dice, unet_weight_map


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_milletari_dice_gradient_matches_the_closed_form(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    p = torch.rand(1, 1, 5, 6, generator=gen, dtype=torch.float64).requires_grad_()
    g = (torch.rand(1, 1, 5, 6, generator=gen) > 0.5).double()
    dice = soft_dice(p, g, smooth=0.0, squared=True).sum()
    (grad,) = torch.autograd.grad(dice, p)
    sum_sq = (p * p).sum() + (g * g).sum()
    intersection = (p * g).sum()
    closed_form = 2 * (g * sum_sq - 2 * p * intersection) / sum_sq**2
    torch.testing.assert_close(grad, closed_form.detach())


def touching_squares() -> np.ndarray:
    mask = np.zeros((20, 30), dtype=int)
    mask[5:15, 3:13] = 1
    mask[5:15, 14:24] = 2  # one background column (13) between them
    return mask


def test_weight_map_peaks_between_two_touching_objects() -> None:
    w = unet_weight_map(touching_squares(), w0=10, sigma=5)
    peak = np.unravel_index(np.argmax(w), w.shape)
    assert peak[1] == 13 and 5 <= peak[0] < 15
    gap, far = w[10, 13], w[10, 28]
    assert gap > 5 * far


def test_weight_map_border_term_formula() -> None:
    w = unet_weight_map(touching_squares(), w0=10, sigma=5, balance_classes=False)
    # in the gap d1 = d2 = 1: 1 + 10 exp(-(2)^2 / 50); inside objects only w_c = 1
    assert w[10, 13] == pytest.approx(1 + 10 * np.exp(-4 / 50))
    assert w[10, 8] == 1.0


def test_weight_map_without_two_objects_is_class_balance_only() -> None:
    mask = np.zeros((4, 4), dtype=int)
    mask[:1] = 1  # 4 of 16 voxels foreground
    w = unet_weight_map(mask)
    assert set(np.unique(w)) == {16 / 8, 16 / 24}
    assert w[mask > 0].sum() == pytest.approx(w[mask == 0].sum())  # each class half the weight


def test_weight_map_is_n_dimensional_and_accepts_labelled_components() -> None:
    volume = np.zeros((6, 8, 8), dtype=bool)
    volume[1:5, 1:4, 1:7] = True
    volume[1:5, 5:8, 1:7] = True
    w = unet_weight_map(ndimage.label(volume)[0], spacing=(2.0, 1.0, 1.0))
    assert w.shape == volume.shape and w[2, 4, 3] == w.max()
