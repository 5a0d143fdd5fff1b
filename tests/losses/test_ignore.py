"""Sparse annotations: every segmentation loss with ``ignore_index`` leaves the voxels labelled
-1 (the case store's ignore index) out of its value and its gradient, also under deep
supervision."""

from __future__ import annotations

import math

import pytest
import torch

from medseg.losses import (
    DeepSupervisionLoss,
    build_loss,
    cross_entropy,
    downsample_target,
    list_losses,
    loss_options,
)

IGNORE = -1
IGNORING = [n for n in list_losses("segmentation") if "ignore_index" in loss_options(n)]


def test_every_registered_segmentation_loss_takes_ignore_index() -> None:
    assert IGNORING == list_losses("segmentation")
    assert {"dice", "dice_ce", "ce", "focal", "tversky", "generalized_dice"} <= set(IGNORING)
    assert {"milletari_dice", "boundary", "weighted_ce"} <= set(IGNORING)


def _sparse_target(spatial: tuple[int, ...], num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(2, 1, *spatial)`` labels with every second slice along the first axis and a few
    scattered voxels set to -1, and the ``(2, 1, *spatial)`` mask of those ignored voxels."""
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, num_classes, (2, 1, *spatial), generator=generator)
    ignored = torch.zeros_like(target, dtype=torch.bool)
    ignored[:, :, 1::2] = True
    ignored[0, 0, (0,) * len(spatial)] = True
    target[ignored] = IGNORE
    return target, ignored


def _loss_and_grad(
    loss_fn: torch.nn.Module, logits: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = logits.clone().requires_grad_(True)
    loss = loss_fn(leaf, target)
    loss.backward()
    return loss.detach(), leaf.grad


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
@pytest.mark.parametrize("spatial", [(6, 5), (4, 5, 3)], ids=["2d", "3d"])
@pytest.mark.parametrize("name", IGNORING)
def test_predictions_at_ignored_voxels_change_neither_loss_nor_gradient(
    name: str, spatial: tuple[int, ...], activation: str
) -> None:
    target, ignored = _sparse_target(spatial, 3)
    loss_fn = build_loss(name, ignore_index=IGNORE, activation=activation)
    logits = torch.randn(2, 3, *spatial, generator=torch.Generator().manual_seed(1))
    changed = logits.clone()
    where = ignored.expand_as(logits)
    changed[where] = 20 * torch.randn(int(where.sum()), generator=torch.Generator().manual_seed(2))

    loss, grad = _loss_and_grad(loss_fn, logits, target)
    loss_changed, grad_changed = _loss_and_grad(loss_fn, changed, target)

    assert torch.isfinite(loss)
    torch.testing.assert_close(loss_changed, loss)
    torch.testing.assert_close(grad_changed[~where], grad[~where])
    assert torch.count_nonzero(grad[where]) == 0 and torch.count_nonzero(grad_changed[where]) == 0
    assert torch.count_nonzero(grad[~where]) > 0  # the annotated voxels do train


@pytest.mark.parametrize("name", IGNORING)
def test_a_batch_without_annotated_voxels_gives_a_finite_loss_and_no_gradient(name: str) -> None:
    target = torch.full((2, 1, 4, 4), IGNORE)
    loss, grad = _loss_and_grad(
        build_loss(name, ignore_index=IGNORE), torch.randn(2, 3, 4, 4), target
    )
    assert math.isfinite(loss.item())
    assert torch.count_nonzero(grad) == 0


def test_hand_values_with_ignored_voxels() -> None:
    # voxels: class 1, class 1, ignored, ignored; p(class 1) = 1, 0, 1, 1 (confident logits)
    target = torch.tensor([[[1, 1, IGNORE, IGNORE]]])
    logits = torch.tensor([[[-30.0, 30.0, -30.0, -30.0], [30.0, -30.0, 30.0, 30.0]]])
    dice = build_loss("dice", ignore_index=IGNORE, smooth=0.0)(logits, target)
    # foreground Dice over the two annotated voxels: 2 * 1 / (1 + 2) = 2/3
    assert dice.item() == pytest.approx(1 / 3, abs=1e-6)
    # CE: voxel 0 costs ~0, voxel 1 costs 60 (log-softmax of a 60 margin); mean over the 2
    ce = cross_entropy(logits, target, ignore_index=IGNORE)
    assert ce.item() == pytest.approx(30.0, rel=1e-6)
    zeros = torch.zeros(1, 2, 4)
    assert cross_entropy(zeros, target, ignore_index=IGNORE).item() == pytest.approx(math.log(2))


def test_nearest_downsampling_keeps_the_ignore_index() -> None:
    target = torch.tensor([[[[1, 1, 0, 0], [1, 1, 0, 0], [-1, -1, 2, 2], [-1, -1, 2, 2]]]])
    small = downsample_target(target, (2, 2))
    assert small.dtype == target.dtype
    assert small[0, 0].tolist() == [[1, 0], [-1, 2]]


def test_deep_supervision_ignores_the_ignored_voxels_at_every_resolution() -> None:
    target, ignored = _sparse_target((8, 8), 3)
    loss_fn = DeepSupervisionLoss(build_loss("dice_ce", ignore_index=IGNORE))
    generator = torch.Generator().manual_seed(3)
    outputs = [
        torch.randn(2, 3, 8, 8, generator=generator),
        torch.randn(2, 3, 4, 4, generator=generator),
    ]
    outputs.append(torch.randn(2, 3, 2, 2, generator=generator))
    changed = [out.clone() for out in outputs]
    for out in changed[:2]:  # the lowest resolution has weight 0
        small = downsample_target(target, out.shape[2:]) == IGNORE
        out[small.expand_as(out)] += 50.0
    assert int((downsample_target(target, (4, 4)) == IGNORE).sum()) > 0
    torch.testing.assert_close(loss_fn(changed, target), loss_fn(outputs, target))
    assert ignored.any()
