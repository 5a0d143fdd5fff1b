"""Every registered network: shapes in 2D and 3D, gradients, odd sizes, registry behaviour."""

from __future__ import annotations

import pytest
import torch

from medseg.errors import ConfigError
from medseg.nets import (
    UNET_PRESETS,
    UNet,
    UNetPlusPlus,
    VAEOutput,
    build_network,
    count_parameters,
    list_networks,
    network_options,
    unet_from_preset,
)

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
    "transunet",
    "swin_unet",
    "unetr",
    "highres3dnet",
]


def _tensors(out: object) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else list(out)  # type: ignore[arg-type]


def test_registry_lists_every_required_network() -> None:
    assert set(NAMES) <= set(list_networks())


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_output_is_logits_of_input_size(small_network, name: str, spatial_dims: int) -> None:
    net = small_network(name, spatial_dims, in_channels=2, out_channels=3).eval()
    x = torch.randn(2, 2, *([16] * spatial_dims))
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 3, *([16] * spatial_dims))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(small_network, name: str, spatial_dims: int) -> None:
    net = small_network(name, spatial_dims).train()
    out = net(torch.randn(2, 1, *([16] * spatial_dims)))
    sum(t.pow(2).mean() for t in _tensors(out)).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert missing == []
    zero = [n for n, p in net.named_parameters() if not p.grad.abs().sum() > 0]
    assert zero == []


@pytest.mark.parametrize("name", NAMES)
def test_odd_input_size_is_handled_or_refused_clearly(small_network, name: str) -> None:
    net = small_network(name, 2).eval()
    x = torch.randn(1, 1, 30, 33)
    divisor = net.required_divisor
    if all(n % d == 0 for n, d in zip((30, 33), divisor, strict=True)):
        assert net(x).shape == (1, 2, 30, 33)
    else:
        with pytest.raises(ValueError, match=r"must be divisible by"):
            net(x)


def test_unet_refusal_names_shape_and_divisor() -> None:
    net = UNet(2, 1, 2, features=(4, 8, 16, 32, 64)).eval()
    with pytest.raises(
        ValueError, match=r"input spatial shape \(30, 31\) must be divisible by \(16, 16\)"
    ):
        net(torch.zeros(1, 1, 30, 31))


@pytest.mark.parametrize("name", ["fcn", "segnet"])
def test_networks_without_divisor_keep_odd_sizes(small_network, name: str) -> None:
    net = small_network(name, 3).eval()
    assert net.required_divisor == (1, 1, 1)
    assert net(torch.randn(1, 1, 9, 13, 11)).shape == (1, 2, 9, 13, 11)


@pytest.mark.parametrize("name", ["fcn", "segnet"])
def test_too_small_inputs_are_refused(small_network, name: str) -> None:
    with pytest.raises(ValueError, match="too small"):
        small_network(name, 2).eval()(torch.zeros(1, 1, 3, 3))


@pytest.mark.parametrize("name", NAMES)
def test_every_network_builds_from_the_four_arguments(name: str) -> None:
    net_3d = build_network(name, spatial_dims=3, in_channels=1, out_channels=2)
    assert count_parameters(net_3d) > 0
    net = build_network(name, spatial_dims=2, in_channels=1, out_channels=2).eval()
    size = [max(2 * d, 16) for d in net.required_divisor]  # the smallest accepted input
    with torch.no_grad():
        assert net(torch.zeros(1, 1, *size)).shape == (1, 2, *size)


def test_unet_defaults_double_features_with_a_cap() -> None:
    net = UNet(2, 1, 2)
    assert net.encoder.features == (32, 64, 128, 256, 320)
    assert net.required_divisor == (16, 16)


def test_anisotropic_plan_pools_only_in_plane_first() -> None:
    net = build_network(
        "unet",
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        features=(4, 8, 16),
        kernel_sizes=[(1, 3, 3), 3, 3],
        strides=[1, (1, 2, 2), 2],
    ).eval()
    assert net.required_divisor == (2, 4, 4)
    assert net(torch.zeros(1, 1, 2, 8, 12)).shape == (1, 2, 2, 8, 12)
    first_conv = net.encoder.stages[0][0][0]
    assert first_conv.kernel_size == (1, 3, 3)


@pytest.mark.parametrize("norm", ["instance", "batch", "group", "none"])
@pytest.mark.parametrize("act", ["leakyrelu", "relu", "elu", "gelu"])
def test_unet_plan_options_build_and_run(norm: str, act: str) -> None:
    net = build_network(
        "unet", spatial_dims=2, in_channels=1, out_channels=2, features=(4, 8), norm=norm, act=act
    )
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 2, 8, 8)


@pytest.mark.parametrize("upsample", ["transpose", "interpolate"])
@pytest.mark.parametrize("downsample", ["conv", "maxpool", "avgpool"])
def test_unet_sampling_modes(upsample: str, downsample: str) -> None:
    net = UNet(2, 1, 2, features=(4, 8, 8), upsample=upsample, downsample=downsample, residual=True)
    assert net(torch.randn(1, 1, 8, 12)).shape == (1, 2, 8, 12)


def test_unet_deep_supervision_lists_logits_highest_resolution_first() -> None:
    net = UNet(
        3, 1, 2, features=(4, 8, 16, 32), strides=[1, (1, 2, 2), 2, 2], deep_supervision=True
    )
    outs = net.train()(torch.randn(1, 1, 4, 16, 16))
    assert [tuple(o.shape[2:]) for o in outs] == [(4, 16, 16), (4, 8, 8), (2, 4, 4)]
    assert net.eval()(torch.randn(1, 1, 4, 16, 16)).shape == (1, 2, 4, 16, 16)


def test_unet_plusplus_deep_supervision_gives_one_output_per_column() -> None:
    net = UNetPlusPlus(2, 1, 3, features=(4, 8, 16, 16), deep_supervision=True)
    outs = net.train()(torch.randn(1, 1, 16, 16))
    assert len(outs) == 3 and all(o.shape == (1, 3, 16, 16) for o in outs)
    assert net.eval()(torch.randn(1, 1, 16, 16)).shape == (1, 3, 16, 16)


def test_vae_unet_exposes_reconstruction_and_latent_in_training_only(small_network) -> None:
    net = small_network("vae_unet", 3, in_channels=2)
    out = net.train()(torch.randn(1, 2, 8, 8, 8))
    assert isinstance(out, VAEOutput)
    assert out.reconstruction.shape == (1, 2, 8, 8, 8)
    assert out.mu.shape == out.logvar.shape and out.mu.shape[2:] == (2, 2, 2)
    assert isinstance(net.eval()(torch.randn(1, 2, 8, 8, 8)), torch.Tensor)


def test_vae_branch_is_the_documented_exception_in_eval_mode(small_network) -> None:
    net = small_network("vae_unet", 2).eval()
    net(torch.randn(1, 1, 16, 16)).sum().backward()
    unused = {n.split(".")[0] for n, p in net.named_parameters() if p.grad is None}
    assert unused == {"vae"}


def test_attention_gates_sit_on_every_skip(small_network) -> None:
    net = small_network("attention_unet", 2)
    assert len(net.decoder.gates) == len(net.encoder.features) - 1
    assert len(small_network("unet", 2).decoder.gates) == 0


def test_dilated_unet_keeps_quarter_resolution_with_dilations_and_aspp() -> None:
    net = build_network("dilated_unet", spatial_dims=2, in_channels=1, out_channels=2)
    assert net.required_divisor == (4, 4)
    assert net.aspp is not None
    assert net.encoder.stages[3][0][0].dilation == (4, 4)


def test_presets_follow_the_papers() -> None:
    ronneberger = unet_from_preset("ronneberger", 2, 1, 2)
    assert ronneberger.encoder.features == (64, 128, 256, 512, 1024)
    assert 31_000_000 < count_parameters(ronneberger) < 31_100_000  # paper's ~31M
    cicek = unet_from_preset("cicek", 3, 3, 3, features=(4, 8, 16, 32))
    assert cicek.required_divisor == (8, 8, 8)
    assert UNET_PRESETS.names() == ["cicek", "ronneberger"]
    assert "Cicek" in UNET_PRESETS.description("cicek")
    with pytest.raises(ConfigError, match="unknown U-Net preset"):
        unet_from_preset("nnunet", 2, 1, 2)


def test_unknown_network_names_the_closest_match() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'unet'"):
        build_network("unte", spatial_dims=2, in_channels=1, out_channels=2)


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"no option\(s\) \['featurs'\].*features"):
        build_network(
            "attention_unet", spatial_dims=2, in_channels=1, out_channels=2, featurs=(4, 8)
        )


def test_network_options_include_subclass_and_base_options() -> None:
    assert {"features", "strides", "deep_supervision", "norm", "act"} <= set(
        network_options("residual_unet")
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"features": (4,)}, "at least 2 stages"),
        ({"features": (4, 8), "strides": [2, 2]}, "first stage's stride must be 1"),
        ({"features": (4, 8), "strides": [1, 2, 2]}, "3 entries but the network has 2 stages"),
        ({"features": (4, 8), "kernel_sizes": [3, (3, 3, 3)]}, "one entry per spatial axis"),
    ],
)
def test_inconsistent_plans_are_refused(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_network("unet", spatial_dims=2, in_channels=1, out_channels=2, **config)


def test_count_parameters_counts_trainable_only_by_default() -> None:
    net = UNet(2, 1, 2, features=(4, 8))
    total = count_parameters(net)
    net.heads[0].weight.requires_grad_(False)
    assert count_parameters(net) == total - net.heads[0].weight.numel()
    assert count_parameters(net, trainable_only=False) == total


def test_number_of_stages_follows_the_strides_when_features_are_omitted() -> None:
    net = UNet(3, 1, 2, strides=[1, (1, 2, 2), 2, 2])
    assert net.encoder.features == (32, 64, 128, 256)
    assert net.required_divisor == (4, 8, 8)


@pytest.mark.parametrize("name", NAMES)
def test_networks_also_run_on_1d_signals(small_network, name: str) -> None:
    assert small_network(name, 1).eval()(torch.randn(2, 1, 32)).shape == (2, 2, 32)


@pytest.mark.parametrize(
    "name", ["unet", "residual_unet", "attention_unet", "dilated_unet", "unet_plusplus"]
)
def test_every_deep_supervision_head_gets_gradients(small_network, name: str) -> None:
    net = small_network(name, 2, deep_supervision=True).train()
    outs = net(torch.randn(2, 1, 16, 16))
    assert isinstance(outs, list) and len(outs) == len(net.heads) > 1
    sum(o.pow(2).mean() for o in outs).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_decoder_can_have_fewer_blocks_than_the_encoder() -> None:
    net = UNet(2, 1, 2, features=(4, 8, 16), decoder_blocks_per_stage=[1, 2])
    assert [len(stage) for stage in net.decoder.stages] == [2, 1]  # deepest level first
    assert [len(stage) for stage in net.encoder.stages] == [2, 2, 2]
    assert net(torch.randn(1, 1, 8, 8)).shape == (1, 2, 8, 8)
    with pytest.raises(ConfigError, match="decoder blocks_per_stage has 3 entries, expected 2"):
        UNet(2, 1, 2, features=(4, 8, 16), decoder_blocks_per_stage=[1, 1, 1])
