"""Capsule margin loss and reconstruction term against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from medseg.losses.margin import MarginLoss, capsule_loss, margin_loss

LENGTHS = torch.tensor([[0.8, 0.3, 0.05], [0.95, 0.5, 0.2]])
TARGET = torch.tensor([0, 1])
# sample 0, true class 0: (0.9 - 0.8)^2 = 0.01; class 1: 0.5 (0.3 - 0.1)^2 = 0.02;
#   class 2: 0.05 < 0.1 -> 0                                         total 0.03
# sample 1, true class 1: (0.9 - 0.5)^2 = 0.16; class 0: 0.5 (0.95 - 0.1)^2 = 0.36125;
#   class 2: 0.5 (0.2 - 0.1)^2 = 0.005                               total 0.52625
EXPECTED = (0.03 + 0.52625) / 2  # 0.278125


def test_margin_loss_hand_value() -> None:
    assert MarginLoss()(LENGTHS, TARGET).item() == pytest.approx(EXPECTED, abs=1e-6)
    assert margin_loss(LENGTHS, TARGET[:, None]).item() == pytest.approx(EXPECTED, abs=1e-6)


def test_margin_loss_options() -> None:
    # m+ = 1, m- = 0, lambda = 1: sample 0: 0.04 + 0.09 + 0.0025; sample 1: 0.25 + 0.9025 + 0.04
    loss = MarginLoss(m_plus=1.0, m_minus=0.0, lam=1.0)(LENGTHS, TARGET)
    assert loss.item() == pytest.approx((0.1325 + 1.1925) / 2, abs=1e-6)


def test_satisfied_margins_give_zero_loss_and_gradient() -> None:
    lengths = torch.tensor([[0.95, 0.02], [0.1, 0.91]], requires_grad=True)
    loss = margin_loss(lengths, torch.tensor([0, 1]))
    loss.backward()
    assert loss.item() == 0.0 and lengths.grad.abs().sum() == 0


def test_capsule_loss_adds_weighted_sum_squared_error() -> None:
    reconstruction = torch.zeros(2, 1, 2, 2)
    image = torch.full((2, 1, 2, 2), 0.5)  # 4 * 0.25 = 1 per sample, mean 1
    loss = capsule_loss(LENGTHS, TARGET, reconstruction, image)
    assert loss.item() == pytest.approx(EXPECTED + 0.0005 * 1.0, abs=1e-6)
    loss = capsule_loss(LENGTHS, TARGET, reconstruction, image, reconstruction_weight=0.1)
    assert loss.item() == pytest.approx(EXPECTED + 0.1, abs=1e-6)
    assert capsule_loss(LENGTHS, TARGET).item() == pytest.approx(EXPECTED, abs=1e-6)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="one class index per sample"):
        margin_loss(LENGTHS, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        margin_loss(LENGTHS[0], TARGET)
    with pytest.raises(ValueError, match="both"):
        capsule_loss(LENGTHS, TARGET, torch.zeros(2, 1, 2, 2))
    with pytest.raises(ValueError, match="differs"):
        capsule_loss(LENGTHS, TARGET, torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 3))
