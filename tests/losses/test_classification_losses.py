"""Classifier losses in the loss registry equal torch's functions exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.losses import LOSSES, build_loss, list_losses, loss_options, margin_loss

OUTPUTS = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [-0.5, 1.5, 0.0], [1.0, 1.0, 1.0]])
LABELS = torch.tensor([0, 2, 1, 1])


def test_classifier_losses_are_registered_by_task_apart_from_segmentation() -> None:
    assert list_losses("classification") == ["classification_ce", "margin"]
    assert list_losses("regression") == ["l1", "mse"]
    assert "ce" in list_losses("segmentation") and "mse" not in list_losses("segmentation")
    assert all(LOSSES.description(name) for name in list_losses())


def test_classification_ce_equals_torch_cross_entropy_with_and_without_weights() -> None:
    weights = torch.tensor([0.2, 1.0, 3.0])
    plain = build_loss("classification_ce")(OUTPUTS, LABELS)
    weighted = build_loss("classification_ce", weight=weights)(OUTPUTS.half(), LABELS)
    assert torch.equal(plain, F.cross_entropy(OUTPUTS, LABELS))
    assert torch.equal(weighted, F.cross_entropy(OUTPUTS.half().float(), LABELS, weight=weights))
    assert loss_options("classification_ce") == ["weight"]


def test_classification_ce_keeps_weights_in_a_float_buffer_out_of_checkpoints() -> None:
    loss = build_loss("classification_ce", weight=[1.0, 2.0, 3.0])
    assert loss.weight is not None and loss.weight.dtype == torch.float32
    assert "weight" not in loss.state_dict()  # not saved in checkpoints


def test_regression_losses_equal_torch_mse_and_l1() -> None:
    targets = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(build_loss("mse")(OUTPUTS, targets), F.mse_loss(OUTPUTS, targets))
    assert torch.equal(build_loss("l1")(OUTPUTS, targets), F.l1_loss(OUTPUTS, targets))


def test_margin_loss_is_registered_with_its_options() -> None:
    lengths = OUTPUTS.sigmoid()
    assert torch.equal(build_loss("margin")(lengths, LABELS), margin_loss(lengths, LABELS))
    assert loss_options("margin") == ["lam", "m_minus", "m_plus"]


def test_regression_losses_refuse_options() -> None:
    with pytest.raises(ConfigError, match=r"loss 'mse' has no option\(s\) \['weight'\]"):
        build_loss("mse", weight=[1.0])
