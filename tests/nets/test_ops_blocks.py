"""Layer selection by dimension and the convolutional blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.nets import (
    ASPP,
    ConvNormAct,
    ConvStage,
    DenseBlock,
    ResidualBlock,
    SeparableConv,
    count_parameters,
    pointwise_conv,
)
from medseg.nets.ops import (
    InstanceNorm,
    act_layer,
    adaptive_avg_pool,
    as_tuple,
    conv_type,
    norm_layer,
    per_axis,
    same_padding,
)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_conv_type_follows_spatial_dims(spatial_dims: int) -> None:
    assert conv_type(spatial_dims) is {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]


def test_unsupported_spatial_dims_is_refused() -> None:
    with pytest.raises(ValueError, match="spatial_dims must be 1, 2 or 3, got 4"):
        conv_type(4)


@pytest.mark.parametrize(
    ("norm", "kind"),
    [
        ("instance", InstanceNorm),
        ("batch", nn.BatchNorm3d),
        ("group", nn.GroupNorm),
        ("none", nn.Identity),
    ],
)
def test_norm_layer_kinds(norm: str, kind: type) -> None:
    assert isinstance(norm_layer(norm, 3, 16), kind)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_instance_norm_equals_torch_instance_norm(spatial_dims: int) -> None:
    ours = InstanceNorm(6)
    torch.nn.init.normal_(ours.weight)
    torch.nn.init.normal_(ours.bias)
    reference = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[spatial_dims](
        6, affine=True
    )
    reference.load_state_dict(ours.state_dict())
    x = 3 * torch.randn(2, 6, *([5] * spatial_dims)) + 1
    torch.testing.assert_close(ours(x), reference(x))


def test_group_norm_uses_a_divisor_of_the_channels() -> None:
    assert norm_layer("group", 2, 12, groups=8).num_groups == 6
    assert norm_layer("group", 2, 3, groups=8).num_groups == 3


@pytest.mark.parametrize(
    ("act", "kind"),
    [("relu", nn.ReLU), ("leakyrelu", nn.LeakyReLU), ("elu", nn.ELU), ("gelu", nn.GELU)],
)
def test_act_layer_kinds(act: str, kind: type) -> None:
    assert isinstance(act_layer(act), kind)


def test_unknown_norm_and_act_are_refused() -> None:
    with pytest.raises(ValueError, match="norm must be one of"):
        norm_layer("layer", 2, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="act must be one of"):
        act_layer("swish")  # type: ignore[arg-type]


def test_per_axis_helpers() -> None:
    assert as_tuple(2, 3) == (2, 2, 2)
    with pytest.raises(ValueError, match="one entry per spatial axis"):
        as_tuple((1, 2), 3, name="stride")
    assert same_padding((1, 3, 5), (1, 1, 2)) == (0, 1, 4)
    with pytest.raises(ValueError, match="odd kernel"):
        same_padding((2, 2), (1, 1))


def test_user_sizes_per_axis_are_config_errors_when_wrong() -> None:
    assert per_axis(7, 2, "pooled_size") == (7, 7)
    with pytest.raises(ConfigError, match="pooled_size .* one entry per spatial axis"):
        per_axis((7, 7, 7), 2, "pooled_size")
    with pytest.raises(ConfigError, match="patch_size .* at least 1"):
        per_axis((4, 0), 2, "patch_size")


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_adaptive_avg_pool_pools_to_the_size_per_axis(spatial_dims: int) -> None:
    x = torch.randn(2, 3, *([6] * spatial_dims))
    assert adaptive_avg_pool(spatial_dims)(x).shape == (2, 3, *([1] * spatial_dims))
    torch.testing.assert_close(
        adaptive_avg_pool(spatial_dims)(x).flatten(1), x.mean(dim=tuple(range(2, x.ndim)))
    )
    assert adaptive_avg_pool(spatial_dims, 2)(x).shape == (2, 3, *([2] * spatial_dims))


def test_relu6_activation_clips_at_six() -> None:
    assert act_layer("relu6")(torch.tensor([-1.0, 3.0, 9.0])).tolist() == [0.0, 3.0, 6.0]


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_conv_norm_act_stride_dilation_and_padding(spatial_dims: int) -> None:
    x = torch.randn(2, 3, *([9] * spatial_dims))
    assert ConvNormAct(spatial_dims, 3, 5)(x).shape == (2, 5, *([9] * spatial_dims))
    assert ConvNormAct(spatial_dims, 3, 5, stride=2)(x).shape == (2, 5, *([5] * spatial_dims))
    assert ConvNormAct(spatial_dims, 3, 5, dilation=3)(x).shape == (2, 5, *([9] * spatial_dims))
    valid = ConvNormAct(spatial_dims, 3, 5, kernel_size=5, padding=0)
    assert valid(x).shape == (2, 5, *([5] * spatial_dims))


def test_conv_has_bias_only_without_norm() -> None:
    assert ConvNormAct(2, 1, 4)[0].bias is None
    assert ConvNormAct(2, 1, 4, norm="none")[0].bias is not None


def test_dropout_is_appended_when_asked() -> None:
    assert isinstance(ConvNormAct(3, 1, 4, dropout=0.5)[-1], nn.Dropout3d)


def test_pointwise_conv_is_a_per_voxel_linear_map() -> None:
    conv = pointwise_conv(2, 3, 2)
    x = torch.randn(1, 3, 4, 5)
    expected = torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x) + conv.bias.view(
        1, -1, 1, 1
    )
    torch.testing.assert_close(conv(x), expected)


def test_separable_conv_factorises_the_weights() -> None:
    sep = SeparableConv(3, 8, 16, norm="none", act="none")
    # depth-wise 8 * 27 (+8 bias) and point-wise 8 * 16 (+16 bias), vs 8 * 16 * 27 for a full conv
    assert count_parameters(sep) == 8 * 27 + 8 + 8 * 16 + 16
    assert sep(torch.randn(1, 8, 5, 5, 5)).shape == (1, 16, 5, 5, 5)


def test_residual_block_is_identity_shortcut_when_shapes_match() -> None:
    block = ResidualBlock(2, 4, 4)
    assert isinstance(block.shortcut, nn.Identity)
    nn.init.zeros_(block.conv2[1].weight)  # zero the last norm's scale: output = act(x)
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(block(x), torch.nn.functional.leaky_relu(x, 0.01))


def test_residual_block_projects_when_shapes_change() -> None:
    block = ResidualBlock(3, 4, 8, stride=(1, 2, 2))
    assert not isinstance(block.shortcut, nn.Identity)
    assert block(torch.randn(1, 4, 4, 8, 8)).shape == (1, 8, 4, 4, 4)


def test_conv_stage_puts_the_stride_on_its_first_block() -> None:
    stage = ConvStage(2, 1, 4, num_blocks=3, stride=2)
    assert [b[0].stride for b in stage] == [(2, 2), (1, 1), (1, 1)]
    with pytest.raises(ValueError, match="num_blocks"):
        ConvStage(2, 1, 4, num_blocks=0)


@pytest.mark.parametrize("bottleneck", [False, True])
def test_dense_block_concatenates_every_layer(bottleneck: bool) -> None:
    block = DenseBlock(3, 6, growth_rate=4, num_layers=3, bottleneck=bottleneck)
    out = block(torch.randn(1, 6, 4, 4, 4))
    assert out.shape == (1, 18, 4, 4, 4) and block.out_channels == 18
    assert [layer.layers[-1].in_channels for layer in block.layers] == (
        [16, 16, 16] if bottleneck else [6, 10, 14]
    )


def test_aspp_keeps_size_and_sees_several_rates() -> None:
    aspp = ASPP(3, 8, 6, rates=(2, 3))
    assert [b[0].dilation for b in aspp.branches] == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]
    assert aspp(torch.randn(2, 8, 5, 6, 7)).shape == (2, 6, 5, 6, 7)
