"""Pooling/unpooling/up-sampling and the attention blocks, against hand-made and torch values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medseg.nets import (
    AttentionGate,
    MultiHeadSelfAttention,
    SpatialSelfAttention,
    Unpool,
    Upsample,
    max_pool_with_indices,
    max_unpool,
    unpool_bed_of_nails,
    unpool_nearest,
)

SEED_INPUT = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])


def test_nearest_unpooling_matches_the_lecture_example() -> None:
    expected = torch.tensor(
        [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]], dtype=torch.float
    )
    torch.testing.assert_close(unpool_nearest(SEED_INPUT, 2)[0, 0], expected)


def test_bed_of_nails_unpooling_matches_the_lecture_example() -> None:
    expected = torch.tensor(
        [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]], dtype=torch.float
    )
    torch.testing.assert_close(unpool_bed_of_nails(SEED_INPUT, 2)[0, 0], expected)


@pytest.mark.parametrize("mode", ["nearest", "bed_of_nails"])
def test_unpooling_is_anisotropic_and_n_dimensional(mode: str) -> None:
    out = Unpool(3, scale=(1, 2, 3), mode=mode)(torch.randn(2, 3, 2, 2, 2))
    assert out.shape == (2, 3, 2, 4, 6)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("size", [8, 9])
def test_max_unpool_matches_torch(spatial_dims: int, size: int) -> None:
    x = torch.randn(2, 3, *([size] * spatial_dims))
    pooled, indices = max_pool_with_indices(x, 2)
    unpool = {1: F.max_unpool1d, 2: F.max_unpool2d, 3: F.max_unpool3d}[spatial_dims]
    expected = unpool(pooled, indices, 2, output_size=x.shape[2:])
    torch.testing.assert_close(max_unpool(pooled, indices, x.shape[2:]), expected)


def test_max_unpool_puts_values_back_at_the_maxima() -> None:
    x = torch.tensor([[[[1.0, 5.0, 0.0, 0.0], [7.0, 2.0, 0.0, 9.0]]]])
    pooled, indices = max_pool_with_indices(x, 2)
    out = max_unpool(pooled, indices, (2, 4))
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 0.0, 0.0, 0.0], [7.0, 0.0, 0.0, 9.0]]]]))


@pytest.mark.parametrize("mode", ["transpose", "interpolate"])
def test_upsample_scales_per_axis(mode: str) -> None:
    up = Upsample(3, 8, 4, scale=(1, 2, 2), mode=mode)
    assert up(torch.randn(1, 8, 3, 4, 5)).shape == (1, 4, 3, 8, 10)


def test_interpolating_upsample_reaches_an_exact_odd_size() -> None:
    up = Upsample(2, 4, 4, scale=2, mode="interpolate")
    assert up(torch.randn(1, 4, 4, 4), size=(7, 9)).shape == (1, 4, 7, 9)


def test_transposed_upsample_paints_disjoint_patches() -> None:
    up = Upsample(1, 1, 1, scale=2)
    torch.nn.init.ones_(up.conv.weight)
    torch.nn.init.zeros_(up.conv.bias)
    torch.testing.assert_close(
        up(torch.tensor([[[1.0, 2.0]]])), torch.tensor([[[1.0, 1.0, 2.0, 2.0]]])
    )


def test_unknown_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="upsample mode"):
        Upsample(2, 1, 1, mode="pixelshuffle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unpool mode"):
        Unpool(2, mode="max")  # type: ignore[arg-type]


def test_self_attention_is_softmax_qk_over_sqrt_d_times_v() -> None:
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(6, num_heads=2).eval()
    x = torch.randn(2, 5, 6)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    heads = []
    for h in range(2):
        sl = slice(3 * h, 3 * h + 3)
        weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(3), dim=-1)
        heads.append(weights @ v[..., sl])
    expected = attn.proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(attn(x), expected)


def test_self_attention_refuses_indivisible_heads() -> None:
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadSelfAttention(6, num_heads=4)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_spatial_self_attention_is_residual_over_voxels(spatial_dims: int) -> None:
    block = SpatialSelfAttention(spatial_dims, 8, num_heads=2)
    torch.nn.init.zeros_(block.attention.proj.weight)
    torch.nn.init.zeros_(block.attention.proj.bias)
    x = torch.randn(2, 8, *([3] * spatial_dims))
    torch.testing.assert_close(block(x), x)  # zero attention output: identity


def test_attention_gate_follows_oktays_formula() -> None:
    torch.manual_seed(0)
    gate = AttentionGate(2, 4, 6, 3)
    x, g = torch.randn(1, 4, 5, 5), torch.randn(1, 6, 5, 5)
    w_x, w_g, psi = (m.weight[:, :, 0, 0] for m in (gate.w_x, gate.w_g, gate.psi))
    hidden = torch.relu(
        torch.einsum("ic,bchw->bihw", w_x, x)
        + torch.einsum("ic,bchw->bihw", w_g, g)
        + gate.w_g.bias.view(1, -1, 1, 1)
    )
    alpha = torch.sigmoid(
        torch.einsum("oi,bihw->bohw", psi, hidden) + gate.psi.bias.view(1, -1, 1, 1)
    )
    torch.testing.assert_close(gate.coefficients(x, g), alpha)
    torch.testing.assert_close(gate(x, g), x * alpha)
    assert ((alpha >= 0) & (alpha <= 1)).all()
