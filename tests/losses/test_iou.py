"""The ``iou`` (soft Jaccard) loss against hand values and MONAI's ``DiceLoss(jaccard=True)``."""

from __future__ import annotations

import pytest
import torch

from medseg.losses import JaccardLoss, build_loss, list_losses, soft_jaccard

# Foreground probabilities p against targets g over 4 voxels (a (1, 1, 1, 4) image).
P = torch.tensor([0.8, 0.6, 0.2, 0.6])
G = torch.tensor([1, 1, 0, 0])


def two_class_logits(p: torch.Tensor) -> torch.Tensor:
    """Logits ``(1, 2, 1, N)`` whose softmax foreground probability is ``p``."""
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))])[None, :, None, :]


def test_iou_is_registered_for_segmentation() -> None:
    assert "iou" in list_losses("segmentation")
    assert isinstance(build_loss("iou"), JaccardLoss)


def test_iou_hand_value_foreground() -> None:
    # sum p g = 0.8 + 0.6 = 1.4; sum p = 2.2; sum g = 2; union = 2.2 + 2 - 1.4 = 2.8
    loss = build_loss("iou", smooth=0.0)(two_class_logits(P), G.view(1, 1, 1, -1))
    assert loss.item() == pytest.approx(1 - 1.4 / 2.8, abs=1e-6)


def test_iou_hand_value_with_background() -> None:
    # background q = 1 - p = (0.2, 0.4, 0.8, 0.4) against (0, 0, 1, 1):
    # sum q g = 1.2; sum q = 1.8; sum g = 2; union = 2.6 -> J_bg = 1.2 / 2.6
    loss = JaccardLoss(include_background=True, smooth=0.0)(
        two_class_logits(P), G.view(1, 1, 1, -1)
    )
    expected = 1 - (1.4 / 2.8 + 1.2 / 2.6) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_iou_of_a_hard_prediction_is_dice_over_two_minus_dice() -> None:
    g = torch.tensor([[[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]])
    p = torch.tensor([[[1.0, 1.0, 0.0, 1.0, 0.0, 0.0]]])
    dice = 2 * 2 / (3 + 3)
    assert soft_jaccard(p, g, smooth=0.0).item() == pytest.approx(dice / (2 - dice))


def test_iou_ignores_the_ignore_index() -> None:
    target = torch.tensor([1, 1, 0, -1]).view(1, 1, 1, -1)
    loss = JaccardLoss(smooth=0.0, ignore_index=-1)(two_class_logits(P), target)
    # voxel 3 left out: sum p g = 1.4, sum p = 1.6, sum g = 2 -> J = 1.4 / 2.2
    assert loss.item() == pytest.approx(1 - 1.4 / 2.2, abs=1e-6)


def test_iou_matches_monai_jaccard() -> None:
    monai_losses = pytest.importorskip("monai.losses")
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=generator)
    target = torch.randint(0, 3, (2, 1, 8, 8), generator=generator)
    ours = JaccardLoss(include_background=True, smooth=0.0)(logits, target)
    peer = monai_losses.DiceLoss(
        jaccard=True, softmax=True, to_onehot_y=True, smooth_nr=0.0, smooth_dr=1e-12
    )(logits, target)
    assert ours.item() == pytest.approx(peer.item(), abs=1e-5)
