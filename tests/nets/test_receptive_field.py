"""Receptive fields: the analytic walk against a hand count and against the gradient's extent."""

from __future__ import annotations

import pytest
import torch

from medseg.errors import ConfigError
from medseg.nets import build_network
from medseg.nets.receptive_field import layer_update, receptive_fields
from medseg.nets.unet import UNet

# Hand count, 3-stage 2D U-Net, 3x3 kernels, strides 1, 2, 2, two convs per stage and level
# (r: RF size, j: jump; a conv adds (k - 1) * j = 2 j, a stride multiplies j):
#   encoder 0: conv s1 r=1+2=3, conv r=5                      j=1
#   encoder 1: conv s2 r=5+2=7 (then j=2), conv r=7+4=11        j=2
#   encoder 2: conv s2 r=11+4=15 (then j=4), conv r=15+8=23     j=4
#   decoder 1: transposed conv 2x2 s2: r=23, j=2; convs r=27, 31
#   decoder 0: transposed conv: r=31, j=1; convs r=33, 35 (the output; the 1x1 head adds 0)
HAND_2D = [5, 11, 23, 31, 35]
# Anisotropic 3D: kernels (1,3,3), 3, 3; strides 1, (1,2,2), 2; spacing (3, 0.5, 0.5) mm.
#   z: encoder 0 k=1: 1; encoder 1 s1: 3, 5; encoder 2 s2: 7 (j=2), 11;
#      decoder 1 (up z by 2, j=1): 13, 15; decoder 0 (up z by 1, kernel 1 in z): 15
#   y, x: as in 2D: 5, 11, 23, 31, 35
HAND_3D_Z = [1, 5, 11, 15, 15]


def _plain_unet(spatial_dims: int, **kw) -> UNet:
    # no normalisation: instance norm would make every voxel depend on the whole image
    return UNet(spatial_dims, 1, 2, features=(2, 4, 8), norm="none", **kw)


def test_one_layer_update_is_r_plus_k_minus_one_times_jump() -> None:
    assert layer_update((5,), (2,), (3,), (2,)) == ((9,), (4,))
    assert layer_update((5,), (2,), (3,), (1,), (2,)) == ((13,), (2,))  # dilation 2


def test_a_three_stage_unet_matches_the_hand_count() -> None:
    fields = receptive_fields(_plain_unet(2, strides=[1, 2, 2]), 2, spacing=(0.8, 0.5))
    assert [f.stage for f in fields] == [
        "encoder 0", "encoder 1", "encoder 2", "decoder 1", "decoder 0"
    ]  # fmt: skip
    assert [f.size for f in fields] == [(r, r) for r in HAND_2D]
    assert [f.jump for f in fields] == [(1, 1), (2, 2), (4, 4), (2, 2), (1, 1)]
    assert fields[-1].size_mm == pytest.approx((35 * 0.8, 35 * 0.5))


def test_anisotropic_kernels_and_strides_per_axis() -> None:
    net = _plain_unet(3, kernel_sizes=[(1, 3, 3), 3, 3], strides=[1, (1, 2, 2), 2])
    fields = receptive_fields(net, 3, spacing=(3.0, 0.5, 0.5))
    assert [f.size for f in fields] == [(z, r, r) for z, r in zip(HAND_3D_Z, HAND_2D, strict=True)]
    assert fields[-1].size_mm == pytest.approx((45.0, 17.5, 17.5))


def _gradient_extent(net: torch.nn.Module, shape: tuple[int, ...], output) -> list[int]:
    """Per-axis extent of the input voxels with a non-zero gradient of one output voxel."""
    torch.manual_seed(0)
    x = torch.randn(1, 1, *shape, dtype=torch.float64, requires_grad=True)
    out = output(x)
    centre = tuple(n // 2 for n in out.shape[2:])
    out[(0, 0, *centre)].backward()
    nonzero = (x.grad[0, 0].abs() > 0).nonzero()
    return [int(nonzero[:, a].max() - nonzero[:, a].min() + 1) for a in range(len(shape))]


def test_the_gradient_of_one_output_voxel_spans_the_analytic_field_2d() -> None:
    torch.manual_seed(1)
    net = _plain_unet(2, strides=[1, 2, 2]).double().eval()
    fields = receptive_fields(net, 2)
    assert _gradient_extent(net, (64, 64), net) == list(fields[-1].size)
    for stage in range(3):  # each encoder stage's output voxel
        extent = _gradient_extent(net, (64, 64), lambda x, s=stage: net.encoder(x)[s])
        assert extent == list(fields[stage].size)


def test_the_gradient_spans_the_analytic_field_with_anisotropic_3d_strides() -> None:
    torch.manual_seed(2)
    net = _plain_unet(3, kernel_sizes=[(1, 3, 3), 3, 3], strides=[1, (1, 2, 2), 2])
    net = net.double().eval()
    assert _gradient_extent(net, (24, 44, 44), net) == list(receptive_fields(net, 3)[-1].size)


def test_residual_blocks_and_max_pooling_are_walked() -> None:
    net = build_network(
        "unet", spatial_dims=2, in_channels=1, out_channels=2, features=(2, 4, 8),
        strides=[1, 2, 2], residual=True, downsample="maxpool", norm="none",
    ).double().eval()  # fmt: skip
    fields = receptive_fields(net, 2)
    # residual block = 2 convs, so 4 convs per stage; pooling 2x2: r += 1 * j
    # encoder 0: 1 + 4*2 = 9; encoder 1: pool 10 (j=2), convs +16 = 26; encoder 2: pool 28 (j=4)
    # convs +32 = 60; decoder 1 (j=2): 60 + 16 = 76; decoder 0 (j=1): 76 + 8 = 84
    assert [f.size[0] for f in fields] == [9, 26, 60, 76, 84]
    assert _gradient_extent(net, (128, 128), net) == [84, 84]


def test_a_network_without_a_unet_encoder_is_refused() -> None:
    net = build_network("resnet18", spatial_dims=2, in_channels=1, out_channels=2)
    with pytest.raises(ConfigError, match="no U-Net encoder"):
        receptive_fields(net, 2)
