"""Deep-supervision wrapper and Myronenko's VAE loss terms."""

from __future__ import annotations

import pytest
import torch

from medseg.losses import (
    DeepSupervisionLoss,
    DiceLoss,
    VAELoss,
    build_loss,
    deep_supervision_weights,
    downsample_target,
    reconstruction_l2,
    vae_kl,
)
from medseg.nets import UNet, VAEUNet


def test_weights_halve_per_level_lowest_zero_and_sum_to_one() -> None:
    assert deep_supervision_weights(1) == [1.0]
    weights = deep_supervision_weights(4)
    assert weights == pytest.approx([4 / 7, 2 / 7, 1 / 7, 0.0])
    assert sum(weights) == pytest.approx(1.0)


def test_target_is_downsampled_by_nearest_and_keeps_its_dtype() -> None:
    target = torch.arange(16).view(1, 1, 4, 4)
    small = downsample_target(target, (2, 2))
    assert small.dtype == target.dtype
    assert small[0, 0].tolist() == [[0, 2], [8, 10]]
    assert downsample_target(target, (4, 4)) is target


def test_wrapper_is_the_weighted_sum_of_per_level_losses() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (2, 1, 8, 8), generator=gen)
    outputs = [torch.randn(2, 3, s, s, generator=gen) for s in (8, 4, 2)]
    base = build_loss("dice_ce")
    expected = (2 / 3) * base(outputs[0], target) + (1 / 3) * base(
        outputs[1], downsample_target(target, (4, 4))
    )
    torch.testing.assert_close(DeepSupervisionLoss(base)(outputs, target), expected)


def test_wrapper_passes_a_single_output_through_and_takes_custom_weights() -> None:
    target = torch.randint(0, 2, (1, 1, 4, 4))
    logits = torch.randn(1, 2, 4, 4)
    base = DiceLoss()
    torch.testing.assert_close(DeepSupervisionLoss(base)(logits, target), base(logits, target))
    uniform = DeepSupervisionLoss(base, weights=[1, 1])([logits, logits], target)
    torch.testing.assert_close(uniform, base(logits, target))
    with pytest.raises(ValueError, match="2 deep-supervision weights for 3 outputs"):
        DeepSupervisionLoss(base, weights=[1, 1])([logits] * 3, target)


def test_deep_supervised_unet_trains_with_the_wrapper() -> None:
    net = UNet(2, 1, 2, features=(4, 8, 16, 32), deep_supervision=True)
    target = torch.randint(0, 2, (2, 1, 16, 16))
    loss = DeepSupervisionLoss(build_loss("dice_ce"))(net(torch.randn(2, 1, 16, 16)), target)
    loss.backward()
    assert net.heads[0].weight.grad.abs().sum() > 0
    assert net.heads[1].weight.grad.abs().sum() > 0
    assert net.heads[2].weight.grad is None  # lowest level: weight 0, never evaluated


def test_kl_hand_values() -> None:
    zero = torch.zeros(2, 3, 2, 2)
    assert vae_kl(zero, zero, num_voxels=10).item() == 0.0  # N(0, 1) is the prior
    # mu = 1, sigma = 1: 1 + 1 - 0 - 1 = 1 per latent element, 12 elements per sample
    assert vae_kl(torch.ones(2, 3, 2, 2), zero, num_voxels=6).item() == pytest.approx(2.0)
    logvar = torch.full((1, 1), 2.0)  # mu = 0: e^2 - 2 - 1
    assert vae_kl(torch.zeros(1, 1), logvar, num_voxels=1).item() == pytest.approx(torch.e**2 - 3)


def test_l2_is_the_mean_squared_error() -> None:
    assert reconstruction_l2(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 1.0


def test_vae_loss_is_dice_plus_tenth_l2_plus_tenth_kl() -> None:
    net = VAEUNet(2, 2, 3, features=(4, 8, 16), blocks_per_stage=1).train()
    image = torch.randn(1, 2, 8, 8)
    target = torch.randint(0, 3, (1, 1, 8, 8))
    out = net(image)
    expected = (
        DiceLoss()(out.logits, target)
        + 0.1 * reconstruction_l2(out.reconstruction, image)
        + 0.1 * vae_kl(out.mu, out.logvar, num_voxels=64)
    )
    torch.testing.assert_close(VAELoss()(out, target, image), expected)
    assert VAELoss()(out.logits, target, image) == DiceLoss()(out.logits, target)
