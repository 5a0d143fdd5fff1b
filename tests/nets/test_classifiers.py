"""The classification zoo: (B, C, *spatial) -> (B, K) in 2D and 3D, published parameter counts,
backbone/head split, input-size checks and the registry's task split."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.nets import (
    TASKS,
    AlexNet,
    Classifier,
    build_network,
    count_parameters,
    describe_networks,
    list_networks,
    network_options,
    network_task,
)
from medseg.nets.registry import NETWORKS

NAMES = [
    "lenet5",
    "alexnet",
    "vgg11",
    "vgg16",
    "inception",
    "resnet18",
    "resnet34",
    "resnet50",
    "densenet121",
    "mobilenet_v1",
    "mobilenet_v2",
]

#: Narrow versions of the same architectures, for the gradient tests.
SMALL: dict[str, dict[str, Any]] = {
    "lenet5": {"channels": (4, 8), "fc_features": (16, 8)},
    "alexnet": {"features": (8, 16, 16, 16, 16), "fc_features": 16, "input_size": 32},
    "vgg11": {"features": (4, 8, 8, 16, 16), "fc_features": 16},
    "vgg16": {"features": (4, 8, 8, 16, 16), "fc_features": 16},
    "inception": {"width": 0.125},
    "resnet18": {"features": (4, 8, 16, 32)},
    "resnet34": {"features": (4, 8, 16, 32)},
    "resnet50": {"features": (4, 8, 16, 32)},
    "densenet121": {"growth_rate": 4, "init_features": 8, "block_layers": (2, 2, 2, 2)},
    "mobilenet_v1": {"width": 0.25},
    "mobilenet_v2": {"width": 0.25, "last_features": 32},
}

#: torchvision's counts (2D, 3 -> 1000 classes, default options); mobilenet_v1 (not in
#: torchvision) with batch norm after both parts of every separable convolution.
PUBLISHED = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "densenet121": 7_978_856,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v1": 4_231_976,
    "alexnet": 61_100_840,
}


def _build(name: str, spatial_dims: int, in_channels: int = 1, out_channels: int = 3, **config):
    torch.manual_seed(0)
    return build_network(
        name,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        **config,
    )


def _count_on_meta(name: str, **config: Any) -> int:
    """Parameter count without allocating or initialising the weights."""
    with torch.device("meta"):
        return count_parameters(
            build_network(name, spatial_dims=2, in_channels=3, out_channels=1000, **config)
        )


def test_registry_tells_classifiers_from_segmentation_networks() -> None:
    # the CNN zoo plus the transformer, the capsule network and the U-Net-encoder classifier
    assert list_networks("classification") == sorted(
        [*NAMES, "vit", "capsnet", "unet_encoder", "patch_classifier", "cnn_gru", "cox_head"]
    )
    assert set(list_networks()) == {name for task in TASKS for name in list_networks(task)}
    assert "unet" in list_networks("segmentation") and "resnet18" not in list_networks(
        "segmentation"
    )
    assert {network_task(n) for n in NAMES} == {"classification"}
    assert network_task("unet") == "segmentation"
    assert TASKS == ("segmentation", "classification", "detection", "registration", "enhancement")
    assert [list_networks(t) for t in TASKS[2:]] == [
        ["centernet"],
        ["voxelmorph"],
        ["residual_denoiser"],
    ]
    assert all(NETWORKS.description(n) for n in list_networks())
    with pytest.raises(ConfigError, match="unknown network task 'tracking'"):
        list_networks("tracking")
    with pytest.raises(ConfigError, match="Did you mean 'resnet18'"):
        network_task("resnet19")


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_default_2d_networks_give_one_logit_vector_per_image(name: str, in_channels: int) -> None:
    net = _build(name, 2, in_channels=in_channels, out_channels=4).eval()
    assert isinstance(net, Classifier) and network_task(name) == "classification"
    with torch.no_grad():
        out = net(torch.randn(2, in_channels, 64, 64))
    assert out.shape == (2, 4) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_default_3d_networks_give_one_logit_vector_per_volume(name: str) -> None:
    net = _build(name, 3).eval()
    assert count_parameters(net) < 100_000_000  # < 400 MB of float32 weights
    with torch.no_grad():
        out = net(torch.randn(2, 1, 32, 32, 32))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("size", [28, 32])
def test_lenet5_keeps_the_classic_5x5_map_on_mnist_sizes(size: int) -> None:
    net = _build("lenet5", 2, out_channels=10)
    x = torch.randn(2, 1, size, size)
    assert net(x).shape == (2, 10)
    assert net.features(x).shape == (2, 16, *([5 if size == 28 else 6] * 2))
    with torch.device("meta"):
        assert count_parameters(_build("lenet5", 2, out_channels=10)) == 61_706


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name: str, spatial_dims: int) -> None:
    net = _build(name, spatial_dims, **SMALL[name]).train()
    out = net(torch.randn(2, 1, *([32] * spatial_dims)))
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 2])).backward()
    assert [n for n, p in net.named_parameters() if p.grad is None] == []
    assert sum(p.grad.abs().sum() for p in net.parameters()) > 0


@pytest.mark.parametrize("name", NAMES)
def test_regression_is_a_linear_output_per_target(name: str) -> None:
    net = _build(name, 2, out_channels=1, **SMALL[name]).train()
    out = net(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 1)
    assert isinstance(net.head[-1], nn.Linear) and net.head[-1].out_features == 1
    torch.nn.functional.mse_loss(out, torch.tensor([[0.5], [-1.0]])).backward()
    assert net.head[-1].weight.grad is not None


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_features_is_the_last_conv_map_and_the_head_follows_the_pooling(
    name: str, spatial_dims: int
) -> None:
    net = _build(name, spatial_dims, **SMALL[name]).eval()
    x = torch.randn(2, 1, *([32] * spatial_dims))
    with torch.no_grad():
        fmap = net.features(x)
        assert fmap.dim() == 2 + spatial_dims and fmap.shape[1] == net.num_features
        pooled = torch.flatten(net.pool(fmap), 1)
        torch.testing.assert_close(net.head(pooled), net(x))


@pytest.mark.parametrize("name", NAMES)
def test_backbone_and_head_split_the_parameters_exactly_once(name: str) -> None:
    net = _build(name, 2, **SMALL[name])
    backbone = {id(p) for p in net.backbone.parameters()}
    head = {id(p) for p in net.head.parameters()}
    assert head and backbone and not backbone & head
    assert backbone | head == {id(p) for p in net.parameters()}
    net.backbone.requires_grad_(False)  # transfer learning: train only the head
    net(torch.randn(2, 1, 32, 32)).sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert all(p.grad is not None for p in net.head.parameters())


@pytest.mark.parametrize(("name", "expected"), PUBLISHED.items())
def test_parameter_counts_match_the_published_ones(name: str, expected: int) -> None:
    assert _count_on_meta(name) == expected


def test_other_reference_counts() -> None:
    assert _count_on_meta("vgg11", norm="batch") == 132_868_840  # torchvision vgg11_bn
    assert _count_on_meta("vgg16", norm="batch") == 138_365_992  # torchvision vgg16_bn
    # torchvision's googlenet (6,624,904) has a 3x3 "5x5" branch: ours has 16 * 23,808 more.
    assert _count_on_meta("inception") == 6_624_904 + 16 * 23_808


def test_default_builds_count_the_same_on_meta_and_cpu() -> None:
    rows = {row.name: row for row in describe_networks(task="classification")}
    assert set(rows) == set(list_networks("classification")) and {
        row.task for row in rows.values()
    } == {"classification"}
    for name in ("resnet18", "mobilenet_v2"):
        assert rows[name].params_3d == count_parameters(_build(name, 3, out_channels=2))
    assert {row.task for row in describe_networks()} == set(TASKS)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_options_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError, match=r"no option\(s\) \['widht'\]"):
        _build(name, 2, widht=2)
    assert "dropout" in network_options(name)


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("vgg16", {"depth": 12}, "VGG depth must be one of"),
        ("vgg11", {"features": (8, 16)}, "features needs 5 entries"),
        ("resnet18", {"block": "wide"}, "block must be 'basic' or 'bottleneck'"),
        ("resnet50", {"features": (8, 16)}, "need the same number of stages"),
        ("densenet121", {"compression": 0.0}, "compression must be in"),
        ("lenet5", {"channels": (6,)}, "channels needs 2 entries"),
        ("alexnet", {"input_size": (28, 28, 28)}, "input_size .* one entry per spatial axis"),
        ("vgg11", {"pooled_size": (7, 7, 7)}, "pooled_size .* one entry per spatial axis"),
    ],
)
def test_bad_option_values_are_config_errors(name: str, config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _build(name, 2, **config)


@pytest.mark.parametrize(
    ("name", "config", "minimum"),
    [
        ("lenet5", {}, 12),
        ("vgg11", SMALL["vgg11"], 32),
        ("densenet121", SMALL["densenet121"], 29),
        ("alexnet", {**SMALL["alexnet"], "input_size": 224}, 63),
        ("alexnet", SMALL["alexnet"], 8),
        ("resnet18", SMALL["resnet18"], 1),
        ("inception", SMALL["inception"], 1),
        ("mobilenet_v2", SMALL["mobilenet_v2"], 1),
    ],
)
def test_min_input_size_is_exact_and_smaller_inputs_are_refused(
    name: str, config: dict, minimum: int
) -> None:
    net = _build(name, 2, **config).eval()
    assert net.min_input_size == (minimum, minimum)
    with torch.no_grad():
        assert net(torch.randn(1, 1, minimum, minimum + 3)).shape == (1, 3)
    if minimum > 1:
        with pytest.raises(ValueError, match=r"input spatial shape \(\d+, \d+\) is too small"):
            net(torch.randn(1, 1, minimum - 1, 64))


def test_wrong_number_of_axes_is_refused() -> None:
    with pytest.raises(ValueError, match="expects \\(B, C, \\*spatial\\) with 2 spatial axes"):
        _build("resnet18", 2, **SMALL["resnet18"])(torch.randn(1, 1, 8, 8, 8))


def test_alexnet_stem_follows_the_input_size_per_axis() -> None:
    assert _build("alexnet", 2).backbone[0][0].kernel_size == (11, 11)
    assert _build("alexnet", 2, input_size=28).backbone[0][0].kernel_size == (3, 3)
    net = _build("alexnet", 3, **{**SMALL["alexnet"], "input_size": (16, 96, 96)}).eval()
    assert net.backbone[0][0].kernel_size == (3, 11, 11)
    assert net.backbone[0][0].stride == (1, 4, 4)
    assert net.min_input_size == (8, 63, 63)
    with torch.no_grad():
        assert net(torch.randn(1, 1, 16, 96, 96)).shape == (1, 3)
    # 28-px images: compact head (global pooling, 512 wide) instead of 6x6 x 4096.
    small = AlexNet(2, 1, 10, input_size=28)
    assert small.head[-1].in_features == 512 and count_parameters(small) < 5_000_000


def test_compact_3d_heads() -> None:
    for name in ("vgg11", "alexnet"):
        net = _build(name, 3)
        assert net.pool.output_size == (1, 1, 1)
        linear = [m for m in net.head if isinstance(m, nn.Linear)]
        assert [m.out_features for m in linear] == [512, 512, 3]
    vgg = _build("vgg16", 3, pooled_size=2, fc_features=64)
    assert vgg.head[0].in_features == 512 * math.prod((2, 2, 2))


def test_width_multipliers_scale_the_mobilenets() -> None:
    full, half = _count_on_meta("mobilenet_v1"), _count_on_meta("mobilenet_v1", width=0.5)
    assert half < full / 2
    net = _build("mobilenet_v2", 2, width=0.5)
    assert net.num_features == 1280  # the last convolution is not narrowed below width 1
    assert _build("mobilenet_v2", 2, width=1.4).num_features == 1792


def test_dropout_sits_before_the_last_linear_layer() -> None:
    net = _build("resnet18", 2, dropout=0.3)
    assert isinstance(net.head[0], nn.Dropout) and net.head[0].p == 0.3
    assert _build("mobilenet_v2", 2).head[0].p == 0.2


@pytest.mark.parametrize("norm", ["group", "instance"])
def test_normalisation_can_be_changed_for_small_3d_batches(norm: str) -> None:
    net = _build("resnet18", 3, norm=norm, **SMALL["resnet18"]).train()
    # batch 1 works without BN (the last map needs > 1 voxel for instance norm)
    assert net(torch.randn(1, 1, 16, 16, 64)).shape == (1, 3)
