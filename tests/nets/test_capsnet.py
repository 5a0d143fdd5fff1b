"""Capsule network: squash, routing by agreement against hand values, shapes, training."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from medseg.errors import ConfigError
from medseg.losses.margin import capsule_loss
from medseg.nets import network_task
from medseg.nets.capsnet import (
    CapsuleNetwork,
    ClassCapsules,
    PrimaryCapsules,
    dynamic_routing,
    squash,
)

SMALL: dict[str, Any] = {
    "image_size": 12,
    "stem_channels": 8,
    "kernel_size": 3,
    "num_primary_types": 4,
    "primary_dim": 4,
    "class_dim": 8,
    "decoder_features": (16, 32),
}


def small_capsnet(spatial_dims: int = 2, out_channels: int = 2, **overrides: Any) -> CapsuleNetwork:
    torch.manual_seed(0)
    return CapsuleNetwork(spatial_dims, 1, out_channels, **{**SMALL, **overrides})


def test_squash_shrinks_length_below_one_and_keeps_direction() -> None:
    s = torch.tensor([[3.0, 4.0], [0.1, 0.0], [-20.0, 5.0]])
    v = squash(s)
    norms = s.norm(dim=-1)
    torch.testing.assert_close(v.norm(dim=-1), norms**2 / (1 + norms**2))  # 25/26, 0.01/1.01, ...
    assert (v.norm(dim=-1) < 1).all()
    torch.testing.assert_close(v / v.norm(dim=-1, keepdim=True), s / norms[:, None])
    torch.testing.assert_close(squash(torch.tensor([3.0, 4.0])), torch.tensor([3.0, 4.0]) * 5 / 26)


def test_squash_along_another_axis() -> None:
    s = torch.randn(2, 5, 3)
    torch.testing.assert_close(squash(s, dim=1), squash(s.transpose(1, 2)).transpose(1, 2))


def test_squash_of_zero_is_zero_with_finite_gradient() -> None:
    s = torch.zeros(2, 4, requires_grad=True)
    v = squash(s)
    v.sum().backward()
    assert torch.equal(v, torch.zeros(2, 4))
    assert torch.isfinite(s.grad).all()


# u_hat[i][j]: input capsule i's prediction of output capsule j (2 inputs, 2 outputs, 2-D).
U_HAT = [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]]


def _squash_by_hand(s: list[float]) -> list[float]:
    squared = sum(x * x for x in s)
    return [squared / (1 + squared) * x / math.sqrt(squared) for x in s]


def test_routing_one_iteration_by_hand() -> None:
    # c_ij = 1/2: s_0 = (1, 0) -> v_0 = (1/2) (1, 0); s_1 = (0.5, 1), |s_1|^2 = 1.25
    # -> v_1 = 1.25 / 2.25 / sqrt(1.25) (0.5, 1) = 0.496904 (0.5, 1)
    v, c = dynamic_routing(torch.tensor([U_HAT]), iterations=1)
    torch.testing.assert_close(c, torch.full((1, 2, 2), 0.5))
    expected = torch.tensor([[[0.5, 0.0], [0.248452, 0.496904]]])
    torch.testing.assert_close(v, expected, atol=1e-6, rtol=0)


def test_routing_two_iterations_by_hand() -> None:
    v1 = [[0.5, 0.0], [0.5 * math.sqrt(1.25) / 2.25, math.sqrt(1.25) / 2.25]]
    # b_ij = u_hat_j|i . v_j: b_00 = 0.5, b_01 = 0.496904, b_10 = 0.5, b_11 = 0.745356
    b = [
        [sum(a * w for a, w in zip(U_HAT[i][j], v1[j], strict=True)) for j in range(2)]
        for i in range(2)
    ]
    assert b[0][0] == pytest.approx(0.5) and b[1][1] == pytest.approx(0.745356, abs=1e-6)
    c = [
        [math.exp(b[i][j]) / (math.exp(b[i][0]) + math.exp(b[i][1])) for j in range(2)]
        for i in range(2)
    ]
    s = [[sum(c[i][j] * U_HAT[i][j][d] for i in range(2)) for d in range(2)] for j in range(2)]
    v2 = [_squash_by_hand(s_j) for s_j in s]
    # c_0. = (0.500774, 0.499226), c_1. = (0.438967, 0.561033); s_0 = (c_00 + c_10, 0)
    # = (0.939741, 0) -> v_0 = (0.939741^2 / (1 + 0.939741^2), 0) = (0.468964, 0)
    assert c[1][0] == pytest.approx(0.438967, abs=1e-6)
    assert v2[0][0] == pytest.approx(0.468964, abs=1e-6)
    v, coupling = dynamic_routing(torch.tensor([U_HAT]), iterations=2)
    torch.testing.assert_close(coupling, torch.tensor([c]), atol=1e-6, rtol=0)
    torch.testing.assert_close(v, torch.tensor([v2]), atol=1e-6, rtol=0)


def test_coupling_coefficients_sum_to_one_over_outputs() -> None:
    torch.manual_seed(0)
    _, c = dynamic_routing(torch.randn(3, 7, 4, 5), iterations=3)
    torch.testing.assert_close(c.sum(dim=2), torch.ones(3, 7))
    assert (c > 0).all()
    net = small_capsnet(out_channels=3)
    net(torch.rand(2, 1, 12, 12))
    torch.testing.assert_close(net.head.last_coupling.sum(dim=2), torch.ones(2, net.num_primary))
    with pytest.raises(ConfigError, match="routing_iterations"):
        dynamic_routing(torch.randn(1, 2, 2, 2), iterations=0)


def test_paper_network_on_28x28() -> None:
    net = CapsuleNetwork(2, 1, 10, image_size=28)
    assert net.num_primary == 32 * 6 * 6 == 1152
    assert sum(p.numel() for p in net.parameters()) == 8_215_568  # paper: 8.2M
    assert (
        sum(p.numel() for p in net.parameters()) - sum(p.numel() for p in net.decoder.parameters())
        == 6_804_224
    )  # paper: 6.8M without the reconstruction subnetwork
    x = torch.rand(2, 1, 28, 28)
    lengths = net(x)
    assert lengths.shape == (2, 10)
    assert ((lengths >= 0) & (lengths < 1)).all()
    assert net.last_capsules.shape == (2, 10, 16)
    assert isinstance(net.head, ClassCapsules) and network_task("capsnet") == "classification"
    assert net.backbone(x).shape == (2, 1152, 8)


def test_default_3d_network_is_light() -> None:
    net = CapsuleNetwork(3, 1, 2, image_size=28)
    assert sum(p.numel() for p in net.parameters()) < 10_000_000
    lengths, reconstruction = net.forward_with_reconstruction(torch.rand(1, 1, 28, 28, 28))
    assert lengths.shape == (1, 2) and reconstruction.shape == (1, 1, 28, 28, 28)


@pytest.mark.parametrize(("spatial_dims", "size"), [(1, (20,)), (2, (12, 14)), (3, (12, 12, 10))])
def test_shapes_and_reconstruction(spatial_dims: int, size: tuple[int, ...]) -> None:
    net = small_capsnet(spatial_dims, out_channels=3, image_size=size)
    x = torch.rand(2, 1, *size)
    lengths, reconstruction = net.forward_with_reconstruction(x, torch.tensor([0, 2]))
    assert lengths.shape == (2, 3) and ((lengths >= 0) & (lengths < 1)).all()
    assert reconstruction.shape == x.shape
    assert ((reconstruction > 0) & (reconstruction < 1)).all()
    torch.testing.assert_close(net(x), lengths)


def test_decoder_sees_only_the_chosen_capsule() -> None:
    net = small_capsnet(out_channels=3).eval()
    x = torch.rand(2, 1, 12, 12)
    capsules = net.capsules(x)
    longest = capsules.norm(dim=-1).argmax(dim=1)
    torch.testing.assert_close(net.reconstruct(capsules), net.reconstruct(capsules, longest))
    y = torch.tensor([0, 1])
    changed = capsules.clone()
    changed[torch.arange(2), 2] += 1.0  # class 2 is masked out for y = (0, 1)
    torch.testing.assert_close(net.reconstruct(changed, y), net.reconstruct(capsules, y))
    _, rec = net.forward_with_reconstruction(x)
    torch.testing.assert_close(rec, net.reconstruct(capsules))


def test_configuration_errors() -> None:
    net = small_capsnet()
    with pytest.raises(ConfigError, match=r"\(10, 10\).*\(12, 12\)"):
        net(torch.rand(1, 1, 10, 10))
    with pytest.raises(ConfigError, match="too small"):
        CapsuleNetwork(2, 1, 2, image_size=16)  # two valid 9x9 convolutions need >= 25
    with pytest.raises(ConfigError, match="reconstruction=False"):
        small_capsnet(reconstruction=False).forward_with_reconstruction(torch.rand(1, 1, 12, 12))
    with pytest.raises(ConfigError, match="routing_iterations"):
        small_capsnet(routing_iterations=0)


def test_primary_capsules_are_squashed_conv_groups() -> None:
    layer = PrimaryCapsules(2, 3, 2, 4, kernel_size=3, stride=2)
    x = torch.randn(1, 3, 7, 7)
    caps = layer(x)
    assert caps.shape == (1, 2 * 3 * 3, 4)
    conv = layer.conv(x)  # (1, 8, 3, 3): type t uses channels 4t..4t+3
    torch.testing.assert_close(
        caps[0, 9 + 4], squash(conv[0, 4:8, 1, 1])
    )  # type 1, position (1, 1)


def test_training_reduces_the_capsule_loss() -> None:
    torch.manual_seed(0)
    x = torch.rand(16, 1, 12, 12) * 0.2
    y = torch.arange(16) % 2
    x[y == 0, :, :, :6] += 0.8  # class 0: bright left half, class 1: bright right half
    x[y == 1, :, :, 6:] += 0.8
    net = small_capsnet()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        lengths, reconstruction = net.forward_with_reconstruction(x, y)
        loss = capsule_loss(lengths, y, reconstruction, x)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert (net(x).argmax(dim=1) == y).float().mean() > 0.9
