"""Networks by name: ``build_network("unet", spatial_dims=3, in_channels=1, out_channels=4)``.

Two kinds of network share the registry; :func:`network_task` tells them apart (the class
attribute ``task``, ``"segmentation"`` when absent):

* **segmentation** networks map ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)``
  per-voxel logits and expose ``required_divisor`` (the per-axis factor the input size must
  be a multiple of);
* **classification** networks (:mod:`medseg.nets.classifiers`) map
  ``(B, in_channels, *spatial) -> (B, out_channels)`` per-image logits, or regression outputs
  when ``out_channels`` is the number of targets, and expose ``backbone``, ``head``,
  ``features(x)`` and ``min_input_size``.

Every network works from these four arguments alone; further options are the class's
keyword arguments (a plan's ``network_config``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.nets.capsnet import CapsuleNetwork
from medseg.nets.classifiers import (
    VGG11,
    VGG16,
    AlexNet,
    DenseNet121,
    Inception,
    LeNet5,
    MobileNetV1,
    MobileNetV2,
    ResNet18,
    ResNet34,
    ResNet50,
)
from medseg.nets.encoder_classifier import UNetEncoderClassifier
from medseg.nets.fcn import FCN
from medseg.nets.multiscale import MultiScaleUNet
from medseg.nets.segnet import SegNet
from medseg.nets.unet import AttentionUNet, DilatedUNet, ResidualUNet, UNet
from medseg.nets.unet_plusplus import UNetPlusPlus
from medseg.nets.vae_unet import VAEUNet
from medseg.nets.vit import VisionTransformer
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
NETWORKS.register("lenet5")(LeNet5)
NETWORKS.register("alexnet")(AlexNet)
NETWORKS.register("vgg11")(VGG11)
NETWORKS.register("vgg16")(VGG16)
NETWORKS.register("inception")(Inception)
NETWORKS.register("resnet18")(ResNet18)
NETWORKS.register("resnet34")(ResNet34)
NETWORKS.register("resnet50")(ResNet50)
NETWORKS.register("densenet121")(DenseNet121)
NETWORKS.register("mobilenet_v1")(MobileNetV1)
NETWORKS.register("mobilenet_v2")(MobileNetV2)
NETWORKS.register("vit")(VisionTransformer)
NETWORKS.register("capsnet")(CapsuleNetwork)
NETWORKS.register("unet_encoder")(UNetEncoderClassifier)

#: The kinds of network, as returned by :func:`network_task`.
TASKS = ("segmentation", "classification")

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
    "lenet5": "Classifier: LeNet-5, conv5-pool-conv5-pool-fc120-fc84 (LeCun 1998)",
    "alexnet": "Classifier: AlexNet, stem adapts to the input size (Krizhevsky 2012)",
    "vgg11": "Classifier: VGG-11, 3x3 conv stages, optional batch norm (Simonyan 2015)",
    "vgg16": "Classifier: VGG-16, 3x3 conv stages, optional batch norm (Simonyan 2015)",
    "inception": "Classifier: GoogLeNet, Inception-v1 blocks (Szegedy 2015)",
    "resnet18": "Classifier: ResNet-18, basic residual blocks (He 2016)",
    "resnet34": "Classifier: ResNet-34, basic residual blocks (He 2016)",
    "resnet50": "Classifier: ResNet-50, bottleneck residual blocks (He 2016)",
    "densenet121": "Classifier: DenseNet-121, growth 32, BC compression 0.5 (Huang 2017)",
    "mobilenet_v1": "Classifier: MobileNet v1, depth-wise separable convs (Howard 2017)",
    "mobilenet_v2": "Classifier: MobileNet v2, inverted residuals, ReLU6 (Sandler 2018)",
    "vit": "Classifier: Vision Transformer, patches + CLS token + position embedding (Dosovitskiy 2021)",
    "capsnet": "Classifier: capsule network, dynamic routing by agreement, margin loss (Sabour 2017)",
    "unet_encoder": "Classifier: a U-Net encoder + linear head; loads a segmentation model's encoder",
}


def network_task(name: str) -> str:
    """``"segmentation"`` or ``"classification"``: what a registered network predicts.

    Raises:
        ConfigError: for an unknown network name (listing the valid ones).

    Example:
        >>> network_task("unet"), network_task("resnet18")
        ('segmentation', 'classification')
    """
    return getattr(NETWORKS.get(name), "task", "segmentation")


def list_networks(task: str | None = None) -> list[str]:
    """Registered network names, sorted: all of them, or those of one ``task``.

    Raises:
        ConfigError: for a ``task`` other than ``segmentation`` or ``classification``.

    Example:
        >>> "unet" in list_networks(), "resnet18" in list_networks("segmentation")
        (True, False)
    """
    if task is None:
        return NETWORKS.names()
    if task not in TASKS:
        raise ConfigError(f"unknown network task {task!r}; valid tasks: {', '.join(TASKS)}")
    return [name for name in NETWORKS.names() if network_task(name) == task]


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
        out_channels: classes ``K`` (logits per voxel for segmentation, per image for
            classification), or regression targets for a classifier.
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
    """One row of ``medseg nets list``: name, one-line description, parameter counts, task."""

    name: str
    summary: str
    params_2d: int
    params_3d: int
    task: str = "segmentation"


def _default_parameter_count(
    name: str, spatial_dims: int, in_channels: int, out_channels: int
) -> int:
    """Parameters of a default build, built on the ``meta`` device (no memory, no weight
    initialisation: milliseconds even for VGG's 138 M), on the CPU if that fails."""
    args = {"spatial_dims": spatial_dims, "in_channels": in_channels, "out_channels": out_channels}
    try:
        with torch.device("meta"):
            return count_parameters(build_network(name, **args))
    except (RuntimeError, NotImplementedError):
        return count_parameters(build_network(name, **args))


def describe_networks(
    *, in_channels: int = 1, out_channels: int = 2, task: str | None = None
) -> list[NetworkInfo]:
    """Every registered network (or those of one ``task``) with its default 2D and 3D
    parameter counts.

    The networks are built on the ``meta`` device, so this takes well under a second.

    Example:
        >>> row = describe_networks(task="classification")[0]
        >>> row.task, row.params_2d > 0
        ('classification', True)
    """
    rows = []
    for name in list_networks(task):
        counts = [_default_parameter_count(name, d, in_channels, out_channels) for d in (2, 3)]
        rows.append(
            NetworkInfo(name, DESCRIPTIONS.get(name, ""), counts[0], counts[1], network_task(name))
        )
    return rows
