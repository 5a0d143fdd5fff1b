"""Each loss against a value computed by hand on a tiny tensor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medseg.losses import (
    BoundaryLoss,
    CrossEntropyLoss,
    DiceCELoss,
    DiceLoss,
    FocalLoss,
    GeneralizedDiceLoss,
    TverskyLoss,
    WeightedCrossEntropyLoss,
    build_loss,
    signed_distance_map,
)

# Foreground probabilities p against targets g over 4 voxels (a (1, 1, 1, 4) image).
P = torch.tensor([0.8, 0.6, 0.2, 0.6])
G = torch.tensor([1, 1, 0, 0])


def logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p / (1 - p))


def two_class_logits(p: torch.Tensor) -> torch.Tensor:
    """Logits ``(1, 2, 1, N)`` whose softmax foreground probability is ``p``."""
    return torch.stack([torch.zeros_like(p), logit(p)])[None, :, None, :]


def labels(g: torch.Tensor) -> torch.Tensor:
    return g.view(1, 1, 1, -1)


def test_cross_entropy_hand_value_and_torch() -> None:
    # voxel 0: p = (1/2, 1/2), class 1 -> ln 2; voxel 1: p = (3/4, 1/4), class 0 -> ln 4/3
    logits = torch.tensor([[[[0.0, math.log(3.0)]], [[0.0, 0.0]]]])
    target = torch.tensor([[[[1, 0]]]])
    expected = (math.log(2) + math.log(4 / 3)) / 2
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx(expected)
    weighted = (3 * math.log(2) + 1 * math.log(4 / 3)) / 4
    assert CrossEntropyLoss(class_weights=[1.0, 3.0])(logits, target).item() == pytest.approx(
        weighted
    )
    torch_ce = F.cross_entropy(logits, target[:, 0], weight=torch.tensor([1.0, 3.0]))
    assert CrossEntropyLoss(class_weights=[1.0, 3.0])(logits, target).item() == pytest.approx(
        torch_ce.item()
    )


def test_cross_entropy_ignores_the_ignore_label() -> None:
    logits = torch.tensor([[[[0.0, 5.0]], [[0.0, -5.0]]]])
    target = torch.tensor([[[[1, 255]]]])
    assert CrossEntropyLoss(ignore_index=255)(logits, target).item() == pytest.approx(math.log(2))


def test_weighted_cross_entropy_scales_voxels_by_the_map() -> None:
    logits = torch.tensor([[[[0.0, math.log(3.0)]], [[0.0, 0.0]]]])
    target = torch.tensor([[[[1, 0]]]])
    weight_map = torch.tensor([[[[2.0, 1.0]]]])
    expected = (2 * math.log(2) + math.log(4 / 3)) / 2
    loss = WeightedCrossEntropyLoss()(logits, target, weight_map)
    assert loss.item() == pytest.approx(expected)


def test_weighted_cross_entropy_computes_the_map_from_the_target() -> None:
    target = torch.zeros(1, 1, 1, 7, dtype=torch.long)
    target[..., :3] = 1
    target[..., 4:] = 1  # two components, one-voxel gap at 3
    logits = torch.zeros(1, 2, 1, 7)
    loss = WeightedCrossEntropyLoss(w0=10, sigma=5)(logits, target)
    # balanced w_c: 6 foreground voxels -> 7/12, 1 background -> 7/2; gap border 10 exp(-4/50)
    expected = math.log(2) * (6 * 7 / 12 + 7 / 2 + 10 * math.exp(-4 / 50)) / 7
    assert loss.item() == pytest.approx(expected)


def test_soft_dice_hand_value() -> None:
    # sum p g = 1.4, sum p = 2.2, sum g = 2 -> D = 2.8 / 4.2
    loss = DiceLoss(smooth=0.0, activation="sigmoid")(logit(P).view(1, 1, 1, 4), labels(G))
    assert loss.item() == pytest.approx(1 - 2.8 / 4.2)
    softmax = DiceLoss(smooth=0.0)(two_class_logits(P), labels(G))
    assert softmax.item() == pytest.approx(1 - 2.8 / 4.2, abs=1e-6)


def test_soft_dice_with_background_averages_both_classes() -> None:
    # background: sum (1-p)(1-g) = 0.8 + 0.4 = 1.2, sum (1-p) = 1.8, sum (1-g) = 2
    loss = DiceLoss(smooth=0.0, include_background=True)(two_class_logits(P), labels(G))
    assert loss.item() == pytest.approx(1 - (2.8 / 4.2 + 2.4 / 3.8) / 2, abs=1e-6)


def test_smooth_terms_are_added_to_numerator_and_denominator() -> None:
    loss = DiceLoss(smooth=1.0)(two_class_logits(P), labels(G))
    assert loss.item() == pytest.approx(1 - 3.8 / 5.2, abs=1e-6)


def test_milletari_dice_hand_value() -> None:
    # sum p^2 = 0.64 + 0.36 + 0.04 + 0.36 = 1.4, sum g^2 = 2 -> D = 2.8 / 3.4
    loss = build_loss("milletari_dice", smooth=0.0)(two_class_logits(P), labels(G))
    assert loss.item() == pytest.approx(1 - 2.8 / 3.4, abs=1e-6)


def test_generalized_dice_hand_value() -> None:
    g = torch.tensor([1, 0, 0, 0])  # r_fg = 1 -> w = 1; r_bg = 3 -> w = 1/9
    # intersections: fg 0.8, bg 0.4 + 0.8 + 0.4 = 1.6; sums: fg 2.2 + 1, bg 1.8 + 3
    expected = 1 - 2 * (0.8 + 1.6 / 9) / (3.2 + 4.8 / 9)
    loss = GeneralizedDiceLoss(smooth=0.0, include_background=True)(two_class_logits(P), labels(g))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_focal_loss_hand_value() -> None:
    # voxel 0: class 1, p_t = 1/2; voxel 1: class 0, p_t = 3/4; alpha 0.25 -> (0.75, 0.25)
    logits = torch.tensor([[[[0.0, math.log(3.0)]], [[0.0, 0.0]]]])
    target = torch.tensor([[[[1, 0]]]])
    plain = (0.25 * math.log(2) + (1 / 16) * math.log(4 / 3)) / 2
    assert FocalLoss(gamma=2.0)(logits, target).item() == pytest.approx(plain)
    weighted = (0.25 * 0.25 * math.log(2) + 0.75 * (1 / 16) * math.log(4 / 3)) / 2
    assert FocalLoss(gamma=2.0, alpha=0.25)(logits, target).item() == pytest.approx(weighted)


def test_sigmoid_focal_loss_hand_value() -> None:
    logits = torch.tensor([[[[0.0, math.log(3.0)]]]])  # p = 1/2, 3/4
    target = torch.tensor([[[[1, 0]]]])  # voxel 1 is a negative: p_t = 1/4
    expected = (0.25 * math.log(2) + (9 / 16) * math.log(4)) / 2
    assert FocalLoss(gamma=2.0, activation="sigmoid")(logits, target).item() == pytest.approx(
        expected
    )


def test_tversky_hand_value() -> None:
    # TP = 1.4, FP = 0.2 + 0.6 = 0.8, FN = 0.2 + 0.4 = 0.6 -> TI = 1.4 / (1.4 + 0.24 + 0.42)
    loss = TverskyLoss(alpha=0.3, beta=0.7, smooth=0.0)(two_class_logits(P), labels(G))
    assert loss.item() == pytest.approx(1 - 1.4 / 2.06, abs=1e-6)
    dice_like = TverskyLoss(alpha=0.5, beta=0.5, smooth=0.0)(two_class_logits(P), labels(G))
    assert dice_like.item() == pytest.approx(1 - 2.8 / 4.2, abs=1e-6)


def test_signed_distance_map_is_negative_inside_positive_outside() -> None:
    mask = np.zeros((1, 1, 1, 6))
    mask[..., 1:4] = 1
    np.testing.assert_array_equal(signed_distance_map(mask)[0, 0, 0], [1, 0, -1, 0, 1, 2])
    assert signed_distance_map(np.zeros((1, 2, 3, 3))).sum() == 0  # empty: zeros
    as_tensor = signed_distance_map(torch.from_numpy(mask))
    assert isinstance(as_tensor, torch.Tensor) and as_tensor[0, 0, 0, 2] == -1


def test_signed_distance_map_uses_spacing() -> None:
    mask = np.zeros((1, 1, 1, 6))
    mask[..., 1:4] = 1
    np.testing.assert_allclose(signed_distance_map(mask, spacing=(1.0, 2.0))[0, 0, 0, 5], 4.0)


def test_boundary_loss_hand_value() -> None:
    g = torch.tensor([0, 1, 1, 1, 0, 0])  # phi = (1, 0, -1, 0, 1, 2)
    p = torch.tensor([0.1, 0.9, 0.9, 0.9, 0.1, 0.1])
    expected = (0.1 * 1 - 0.9 * 1 + 0.1 * 1 + 0.1 * 2) / 6
    loss = BoundaryLoss()(two_class_logits(p), labels(g))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_dice_ce_is_the_weighted_sum_of_its_terms() -> None:
    logits, target = two_class_logits(P), labels(G)
    dice = DiceLoss()(logits, target)
    ce = CrossEntropyLoss()(logits, target)
    loss = DiceCELoss(dice_weight=2.0, ce_weight=0.5)(logits, target)
    assert loss.item() == pytest.approx(2.0 * dice.item() + 0.5 * ce.item())
