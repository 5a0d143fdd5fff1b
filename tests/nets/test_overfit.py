"""Each network can learn one small 2D phantom (a disc and a square): Dice > 0.9 on both."""

from __future__ import annotations

import pytest
import torch

from medseg.losses import DiceCELoss, VAELoss

NAMES = [
    "unet",
    "residual_unet",
    "attention_unet",
    "unet_plusplus",
    "dilated_unet",
    "fcn",
    "segnet",
    "multiscale_unet",
    "vae_unet",
]
WIDER = {
    "fcn": {"channels": (8, 16, 32, 16)},
    "segnet": {"features": (8, 16, 32)},
    "dilated_unet": {"features": (8, 16, 32, 32)},
    "vae_unet": {"features": (8, 16, 32), "blocks_per_stage": 1},
}


def phantom(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Image ``(1, 1, size, size)`` and labels: 1 = disc (bright), 2 = square (grey), noise."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    label = torch.zeros(size, size, dtype=torch.long)
    label[(yy - 10) ** 2 + (xx - 10) ** 2 <= 36] = 1
    label[18:27, 17:26] = 2
    noise = 0.1 * torch.randn(size, size, generator=torch.Generator().manual_seed(0))
    image = torch.where(label == 1, 1.0, torch.where(label == 2, 0.5, 0.0)) + noise
    return image[None, None], label[None, None]


def worst_dice(pred: torch.Tensor, label: torch.Tensor) -> float:
    scores = []
    for c in (1, 2):
        p, g = pred == c, label == c
        scores.append(2 * (p & g).sum().item() / (p.sum() + g.sum()).item())
    return min(scores)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_network_overfits_a_phantom(small_network, name: str) -> None:
    image, label = phantom()
    net = small_network(name, 2, out_channels=3, **WIDER.get(name, {"features": (8, 16, 32)}))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = VAELoss(DiceCELoss())  # plain Dice + CE for every network but the VAE U-Net
    score = 0.0
    for step in range(1, 201):
        net.train()
        loss = loss_fn(net(image), label, image)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 10 == 0:
            with torch.no_grad():
                score = worst_dice(net.eval()(image).argmax(dim=1, keepdim=True), label)
            if score > 0.9:
                break
    assert score > 0.9, f"{name}: Dice {score:.3f} after {step} steps"
