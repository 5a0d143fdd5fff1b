"""Networks by name: ``build_network("unet", spatial_dims=3, in_channels=1, out_channels=4)``.

Every registered network maps ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)``
logits, works from these four arguments alone, and exposes ``required_divisor`` (the per-axis
factor the input size must be a multiple of). Further options are the class's keyword
arguments (a plan's ``network_config``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from torch import nn

from medseg.errors import ConfigError
from medseg.nets.fcn import FCN
from medseg.nets.multiscale import MultiScaleUNet
from medseg.nets.segnet import SegNet
from medseg.nets.unet import AttentionUNet, DilatedUNet, ResidualUNet, UNet
from medseg.nets.unet_plusplus import UNetPlusPlus
from medseg.nets.vae_unet import VAEUNet
from medseg.registry import Registry

NETWORKS = Registry("network")
NETWORKS.register("unet")(UNet)
NETWORKS.register("residual_unet")(ResidualUNet)
NETWORKS.register("attention_unet")(AttentionUNet)
NETWORKS.register("unet_plusplus")(UNetPlusPlus)
NETWORKS.register("dilated_unet")(DilatedUNet)
NETWORKS.register("fcn")(FCN)
NETWORKS.register("segnet")(SegNet)
NETWORKS.register("multiscale_unet")(MultiScaleUNet)
NETWORKS.register("vae_unet")(VAEUNet)

#: One line per network for ``medseg nets list`` and the docs.
DESCRIPTIONS = {
    "unet": "U-Net: encoder-decoder with skips, per-stage plan (Ronneberger 2015, Cicek 2016)",
    "residual_unet": "U-Net with residual blocks",
    "attention_unet": "U-Net with additive attention gates on the skips (Oktay 2018)",
    "unet_plusplus": "U-Net++: nested dense skips, deep supervision (Zhou 2018)",
    "dilated_unet": "U-Net with dilated deep stages and an ASPP bottleneck",
    "fcn": "Fully convolutional LeNet, upsampled to the input size (Long 2015)",
    "segnet": "Encoder-decoder with max-unpooling indices (Badrinarayanan 2017)",
    "multiscale_unet": "Two U-Net pathways, full and down-sampled input, fused",
    "vae_unet": "U-Net + VAE reconstruction branch (Myronenko 2018)",
}


def list_networks() -> list[str]:
    """Registered network names, sorted.

    Example:
        >>> "unet" in list_networks()
        True
    """
    return NETWORKS.names()


def network_options(name: str) -> list[str]:
    """The keyword options a network accepts (beyond the four required arguments).

    Raises:
        ConfigError: for an unknown network name (listing the valid ones).

    Example:
        >>> "deep_supervision" in network_options("attention_unet")
        True
    """
    options: list[str] = []
    for cls in inspect.getmro(NETWORKS.get(name)):
        if cls in (nn.Module, object):
            break
        params = inspect.signature(cls.__init__).parameters.values()
        options += [
            p.name
            for p in params
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in options
        ]
    return sorted(options)


def build_network(
    name: str, *, spatial_dims: int, in_channels: int, out_channels: int, **config: Any
) -> nn.Module:
    """Build a registered network.

    Args:
        name: a name from :func:`list_networks`.
        spatial_dims: 2 or 3 (1 also works for the convolutional networks).
        in_channels: image channels.
        out_channels: classes ``K`` (logits).
        **config: the network's keyword options (:func:`network_options`).

    Returns:
        The network (in training mode, as torch modules start).

    Raises:
        ConfigError: for an unknown name or option, naming the valid ones.

    Example:
        >>> net = build_network("unet", spatial_dims=2, in_channels=1, out_channels=2, features=(8, 16))
        >>> net.required_divisor
        (2, 2)
    """
    builder = NETWORKS.get(name)
    unknown = sorted(set(config) - set(network_options(name)))
    if unknown:
        raise ConfigError(
            f"network '{name}' has no option(s) {unknown}; valid options: {', '.join(network_options(name))}"
        )
    return builder(spatial_dims, in_channels, out_channels, **config)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters.

    Example:
        >>> count_parameters(nn.Linear(3, 2))
        8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class NetworkInfo:
    """One row of ``medseg nets list``: name, one-line description, parameter counts."""

    name: str
    summary: str
    params_2d: int
    params_3d: int


def describe_networks(*, in_channels: int = 1, out_channels: int = 2) -> list[NetworkInfo]:
    """Every registered network with its default 2D and 3D parameter counts.

    Builds each network twice with default options (a few seconds for all of them).
    """
    rows = []
    for name in list_networks():
        counts = [
            count_parameters(
                build_network(
                    name, spatial_dims=d, in_channels=in_channels, out_channels=out_channels
                )
            )
            for d in (2, 3)
        ]
        rows.append(NetworkInfo(name, DESCRIPTIONS.get(name, ""), counts[0], counts[1]))
    return rows
