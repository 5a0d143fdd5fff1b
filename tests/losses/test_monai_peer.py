"""Cross-checks against MONAI's losses where the definitions match."""

from __future__ import annotations

import pytest
import torch

from medseg.losses import DiceCELoss, DiceLoss, FocalLoss, GeneralizedDiceLoss, TverskyLoss

monai_losses = pytest.importorskip("monai.losses")


def sample(spatial_dims: int, num_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(spatial_dims)
    shape = (2, num_classes, *([5] * spatial_dims))
    logits = torch.randn(shape, generator=gen) * 2
    target = torch.randint(0, num_classes, (2, 1, *shape[2:]), generator=gen)
    return logits, target


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [True, False])
@pytest.mark.parametrize("squared", [True, False])
def test_dice_matches_monai(
    spatial_dims: int, include_background: bool, batch: bool, squared: bool
) -> None:
    logits, target = sample(spatial_dims)
    ours = DiceLoss(
        include_background=include_background, batch_dice=batch, squared_denominator=squared
    )
    peer = monai_losses.DiceLoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        batch=batch,
        squared_pred=squared,
    )
    torch.testing.assert_close(ours(logits, target), peer(logits, target))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [True, False])
def test_generalized_dice_matches_monai(
    spatial_dims: int, include_background: bool, batch: bool
) -> None:
    logits, target = sample(spatial_dims, num_classes=4)
    target[target == 3] = 2  # one class absent: exercises the infinite-weight rule
    ours = GeneralizedDiceLoss(include_background=include_background, batch_dice=batch)
    peer = monai_losses.GeneralizedDiceLoss(
        include_background=include_background, to_onehot_y=True, softmax=True, batch=batch
    )
    torch.testing.assert_close(ours(logits, target), peer(logits, target))


def test_generalized_dice_defaults_match_monai_with_the_background() -> None:
    logits, target = sample(2, num_classes=2)
    peer = monai_losses.GeneralizedDiceLoss(to_onehot_y=True, softmax=True)
    assert GeneralizedDiceLoss().include_background
    torch.testing.assert_close(GeneralizedDiceLoss()(logits, target), peer(logits, target))


def test_generalized_dice_without_background_is_plain_dice_for_one_foreground_class() -> None:
    logits, target = sample(3, num_classes=2)
    plain = DiceLoss(smooth=0.0)(logits, target)
    no_background = GeneralizedDiceLoss(include_background=False, smooth=0.0)
    torch.testing.assert_close(no_background(logits, target), plain)
    assert not torch.allclose(GeneralizedDiceLoss(smooth=0.0)(logits, target), plain)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("alpha", [None, 0.25, (0.2, 0.3, 0.5)])
def test_softmax_focal_is_monai_times_the_class_count(spatial_dims: int, alpha) -> None:
    logits, target = sample(spatial_dims)
    ours = FocalLoss(gamma=2.0, alpha=alpha)(logits, target)
    peer = monai_losses.FocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0, alpha=alpha)
    # MONAI averages over the class axis as well: its mean is K times smaller
    torch.testing.assert_close(ours, 3 * peer(logits, target))


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_sigmoid_focal_matches_monai(alpha) -> None:
    logits, target = sample(3)
    onehot = torch.nn.functional.one_hot(target[:, 0], 3).movedim(-1, 1).float()
    ours = FocalLoss(gamma=2.0, alpha=alpha, activation="sigmoid")(logits, onehot)
    peer = monai_losses.FocalLoss(use_softmax=False, gamma=2.0, alpha=alpha)(logits, onehot)
    torch.testing.assert_close(ours, peer)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [True, False])
def test_tversky_matches_monai(spatial_dims: int, include_background: bool, batch: bool) -> None:
    logits, target = sample(spatial_dims)
    ours = TverskyLoss(alpha=0.3, beta=0.7, include_background=include_background, batch_dice=batch)
    peer = monai_losses.TverskyLoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        alpha=0.3,
        beta=0.7,
        batch=batch,
    )
    torch.testing.assert_close(ours(logits, target), peer(logits, target))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("include_background", [True, False])
def test_dice_ce_matches_monai(spatial_dims: int, include_background: bool) -> None:
    logits, target = sample(spatial_dims)
    ours = DiceCELoss(include_background=include_background)
    peer = monai_losses.DiceCELoss(
        include_background=include_background, to_onehot_y=True, softmax=True
    )
    torch.testing.assert_close(ours(logits, target), peer(logits, target))


def test_sigmoid_dice_matches_monai() -> None:
    logits, target = sample(2, num_classes=1)
    target = (torch.rand(target.shape, generator=torch.Generator().manual_seed(0)) > 0.5).long()
    ours = DiceLoss(activation="sigmoid")(logits, target)
    peer = monai_losses.DiceLoss(sigmoid=True)(logits, target.float())
    torch.testing.assert_close(ours, peer)
