"""ViT token blocks, TransUNet and UNETR: shapes in 2D/3D, position interpolation, published
and MONAI parameter counts, weight standardisation, size refusals."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medseg.errors import ConfigError
from medseg.nets.resnet_v2 import StandardizedConv
from medseg.nets.transformer.sizes import InputSizeError
from medseg.nets.transformer.tokens import (
    PatchEmbedding,
    TokenEncoder,
    interpolate_position_embedding,
)
from medseg.nets.transunet import TransUNet
from medseg.nets.unetr import UNETR

NETWORKS = [TransUNet, UNETR]


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize(
    ("spatial_dims", "size"), [(2, (32, 48)), (3, (16, 32, 16)), (2, (16, 16))]
)
def test_output_is_logits_of_input_size(network: type, spatial_dims: int, size: tuple) -> None:
    torch.manual_seed(0)
    net = network(spatial_dims, 2, 3, image_size=32).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 2, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()
    assert net.required_divisor == (16,) * spatial_dims


@pytest.mark.parametrize("network", NETWORKS)
def test_gradients_reach_every_parameter(network: type) -> None:
    torch.manual_seed(0)
    net = network(2, 1, 2, image_size=32).train()
    net(torch.randn(2, 1, 32, 32)).square().mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_patch_embedding_is_a_linear_map_of_each_patch_in_row_major_order() -> None:
    embed = PatchEmbedding(2, 1, 3, (2, 4))
    x = torch.randn(1, 1, 4, 8)
    tokens, grid = embed(x)
    assert grid == (2, 2) and tokens.shape == (1, 4, 3)
    weight, bias = embed.projection.weight, embed.projection.bias
    patch = x[0, 0, 2:4, 0:4]  # grid row 1, column 0 -> token 2
    expected = (weight[:, 0] * patch).sum(dim=(1, 2)) + bias
    torch.testing.assert_close(tokens[0, 2], expected)


def test_position_interpolation_is_the_identity_at_equal_grids() -> None:
    pos = torch.randn(1, 12, 5)
    assert interpolate_position_embedding(pos, (3, 4), (3, 4)) is pos


def test_position_interpolation_matches_hand_values() -> None:
    # Linear, align_corners=False: new positions (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75,
    # 1.25, clamped to [0, 1]: values 0, 0.25, 0.75, 1.
    pos = torch.tensor([[[0.0], [1.0]]])
    out = interpolate_position_embedding(pos, (1, 2), (1, 4))
    assert out.flatten().tolist() == [0.0, 0.25, 0.75, 1.0]


def test_position_interpolation_keeps_the_row_major_layout_in_2d() -> None:
    # Rows encode their own (row, column) on a 2 x 3 grid; bilinear resampling of a linear
    # function is exact, so the result must encode the new coordinates mapped back.
    rows, cols = torch.meshgrid(torch.arange(2.0), torch.arange(3.0), indexing="ij")
    pos = torch.stack([rows.flatten(), cols.flatten()], dim=-1)[None]  # (1, 6, 2)
    out = interpolate_position_embedding(pos, (2, 3), (4, 6))
    assert out.shape == (1, 24, 2)
    by_hand = F.interpolate(
        pos.transpose(1, 2).reshape(1, 2, 2, 3), size=(4, 6), mode="bilinear"
    ).reshape(1, 2, 24)
    torch.testing.assert_close(out, by_hand.transpose(1, 2))
    new = (torch.arange(4.0) + 0.5) / 2 - 0.5, (torch.arange(6.0) + 0.5) / 2 - 0.5
    expected_rows = new[0].clamp(0, 1)[:, None].expand(4, 6).flatten()
    expected_cols = new[1].clamp(0, 2)[None, :].expand(4, 6).flatten()
    torch.testing.assert_close(out[0, :, 0], expected_rows)
    torch.testing.assert_close(out[0, :, 1], expected_cols)


def test_position_interpolation_refuses_a_wrong_grid() -> None:
    with pytest.raises(ConfigError, match="cannot be laid out on grid"):
        interpolate_position_embedding(torch.zeros(1, 5, 2), (2, 3), (4, 6))


def test_token_encoder_returns_the_requested_blocks_with_the_final_norm_on_the_last() -> None:
    torch.manual_seed(0)
    enc = TokenEncoder(
        3,
        1,
        image_size=8,
        patch_size=4,
        dim=8,
        depth=3,
        heads=2,
        mlp_dim=16,
        output_layers=(3, 1),
    ).eval()
    x = torch.randn(1, 1, 8, 8, 8)
    states, grid = enc(x)
    assert grid == (2, 2, 2)
    z = enc.patch_embedding.projection(x).flatten(2).transpose(1, 2) + enc.position_embedding
    first = enc.blocks[0](z)
    torch.testing.assert_close(states[0], first)
    torch.testing.assert_close(states[1], enc.norm(enc.blocks[2](enc.blocks[1](first))))


def test_a_network_built_for_one_size_runs_at_another() -> None:
    torch.manual_seed(0)
    unetr = UNETR(2, 1, 2, image_size=32).eval()
    assert unetr.vit.position_embedding.shape[1] == 4  # a 2 x 2 token grid
    assert unetr(torch.zeros(1, 1, 48, 64)).shape == (1, 2, 48, 64)
    transunet = TransUNet(3, 1, 2, image_size=64).eval()
    assert transunet.vit.position_embedding.shape[1] == 64  # 4^3 tokens at 1/16
    assert transunet(torch.zeros(1, 1, 16, 32, 48)).shape == (1, 2, 16, 32, 48)


def test_transunet_r50_vit_b16_has_the_published_parameter_count() -> None:
    with torch.device("meta"):
        net = TransUNet(2, 3, 9, preset="r50_vit_b16")
    count = parameters(net)
    assert abs(count - 105.28e6) / 105.28e6 < 0.02, f"{count:,} parameters, paper 105.28 M"
    assert len(net.vit.blocks) == 12 and net.vit.dim == 768
    assert [len(stage) for stage in net.cnn.stages] == [3, 4, 9]
    assert net.vit.position_embedding.shape == (1, 196, 768)  # 14 x 14 tokens


def _monai_unetr(monkeypatch: pytest.MonkeyPatch, spatial_dims: int) -> nn.Module:
    """MONAI's UNETR at the paper's configuration. Without einops (an optional dependency
    of MONAI's attention) its parameter-free ``Rearrange`` is replaced, which is enough to
    count the parameters."""
    selfattention = pytest.importorskip("monai.networks.blocks.selfattention")
    from monai.networks.nets import UNETR as MonaiUNETR

    if importlib.util.find_spec("einops") is None:
        monkeypatch.setattr(selfattention, "Rearrange", lambda *a, **k: nn.Identity())
    return MonaiUNETR(
        1,
        14,
        img_size=96,
        feature_size=16,
        hidden_size=768,
        mlp_dim=3072,
        num_heads=12,
        norm_name="instance",
        conv_block=True,
        res_block=True,
        spatial_dims=spatial_dims,
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_unetr_base_matches_monai_parameter_count(
    monkeypatch: pytest.MonkeyPatch, spatial_dims: int
) -> None:
    with torch.device("meta"):
        ours = parameters(UNETR(spatial_dims, 1, 14, preset="base", image_size=96))
        theirs = parameters(_monai_unetr(monkeypatch, spatial_dims))
    assert abs(ours - theirs) / theirs < 0.02, f"ours {ours:,}, MONAI {theirs:,}"


def test_unetr_decodes_layers_3_6_9_12_by_default() -> None:
    with torch.device("meta"):
        net = UNETR(3, 1, 2, preset="base")
    assert net.skip_layers == (3, 6, 9)
    assert net.vit.output_layers == (3, 6, 9, 12)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cpu_presets_are_small(network: type, spatial_dims: int) -> None:
    with torch.device("meta"):
        count = parameters(network(spatial_dims, 1, 2))
    assert count < 10_000_000, f"{count:,} parameters"


@pytest.mark.parametrize("network", NETWORKS)
def test_bad_input_sizes_name_the_valid_ones(network: type) -> None:
    net = network(2, 1, 2, image_size=32).eval()
    with pytest.raises(
        ConfigError,
        match=r"\(30, 32\) must be divisible by \(16, 16\).*"
        r"\[\[16, 32\], \[32\]\]",
    ):
        net(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match="must be divisible by"):  # as the other networks
        net(torch.zeros(1, 1, 8, 8))
    assert issubclass(InputSizeError, ConfigError)


@pytest.mark.parametrize(
    ("network", "options", "message"),
    [
        (UNETR, {"preset": "large"}, "preset must be one of base, cpu"),
        (UNETR, {"hidden_size": 30, "num_heads": 4}, "divisible by heads"),
        (UNETR, {"skip_layers": (2, 1, 3)}, "3 increasing block numbers in 1..3"),
        (UNETR, {"image_size": 40}, "not divisible by patch_size"),
        (TransUNet, {"preset": "r101"}, "preset must be one of r50_vit_b16, cpu"),
        (TransUNet, {"block_units": (1, 1)}, "3 positive counts"),
        (TransUNet, {"num_skips": 4}, "num_skips must be 0, 1, 2 or 3"),
    ],
)
def test_bad_options_are_refused(network: type, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        network(2, 1, 2, **options)


def test_transunet_skips_come_from_the_cnn_at_1_8_1_4_1_2() -> None:
    net = TransUNet(2, 1, 2, image_size=32)
    widths = net.cnn.channels  # 1/2, 1/4, 1/8, 1/16
    first_convs = [block[0][0] for block in net.decoder.blocks]
    head, levels = 64, (64, 32, 16)  # the cpu preset
    assert [c.in_channels for c in first_convs] == [
        head + widths[2],
        levels[0] + widths[1],
        levels[1] + widths[0],
        levels[2],
    ]
    no_skips = TransUNet(2, 1, 2, image_size=32, num_skips=0).eval()
    assert no_skips(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)


def test_standardized_conv_normalises_each_filter() -> None:
    torch.manual_seed(0)
    conv = StandardizedConv(2, 3, 4, 3, padding=1)
    x = torch.randn(1, 3, 6, 6)
    w = conv.conv.weight.detach().double()
    mean = w.mean(dim=(1, 2, 3), keepdim=True)
    std = ((w - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True).add(1e-5).sqrt()
    expected = F.conv2d(x.double(), (w - mean) / std, padding=1)
    torch.testing.assert_close(conv(x).double(), expected, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        conv.conv.weight.mul_(7.0).add_(0.5)  # scale and shift: the same standardised filters
    torch.testing.assert_close(conv(x).double(), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("network", NETWORKS)
def test_onnx_export_at_another_size_than_built(assert_onnx_matches, network: type) -> None:
    torch.manual_seed(0)
    net = network(2, 2, 3, image_size=32).eval()
    x = torch.randn(1, 2, 32, 48)
    assert_onnx_matches(net, x)


@pytest.mark.parametrize("network", NETWORKS)
def test_meta_device_build_and_forward_as_the_planner_does(network: type) -> None:
    with torch.device("meta"):
        net = network(3, 1, 4)
        out = net(torch.empty(1, 1, 64, 96, 80))
    assert out.shape == (1, 4, 64, 96, 80)
