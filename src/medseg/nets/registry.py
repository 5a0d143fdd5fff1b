"""Networks by name: ``build_network("unet", spatial_dims=3, in_channels=1, out_channels=4)``.

Two kinds of network share the registry; :func:`network_task` tells them apart (the
``task`` each was registered with):

* **segmentation** networks map ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)``
  per-voxel logits and expose ``required_divisor`` (the per-axis factor the input size must
  be a multiple of);
* **classification** networks (:mod:`medseg.nets.classifier_base`) map
  ``(B, in_channels, *spatial) -> (B, out_channels)`` per-image logits, or regression outputs
  when ``out_channels`` is the number of targets, and expose ``backbone``, ``head``,
  ``features(x)`` and ``min_input_size``.

Every network works from these four arguments alone; further options are the class's
keyword arguments (a plan's ``network_config``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.nets.capsnet import CapsuleNetwork
from medseg.nets.centernet import CenterNet
from medseg.nets.classifier_inception import Inception
from medseg.nets.classifier_mobile import MobileNetV1, MobileNetV2
from medseg.nets.classifier_plain import VGG11, VGG16, AlexNet, LeNet5
from medseg.nets.classifier_resnet import DenseNet121, ResNet18, ResNet34, ResNet50
from medseg.nets.cnn_gru import CNNGRU
from medseg.nets.cox_head import CoxHead
from medseg.nets.encoder_classifier import UNetEncoderClassifier
from medseg.nets.fcn import FCN
from medseg.nets.highres3dnet import HighRes3DNet
from medseg.nets.multiscale import MultiScaleUNet
from medseg.nets.patch_classifier import PatchClassifier
from medseg.nets.residual_unet import ResidualDenoiser
from medseg.nets.segnet import SegNet
from medseg.nets.swin_unet import SwinUNet
from medseg.nets.transunet import TransUNet
from medseg.nets.unet import AttentionUNet, DilatedUNet, ResidualUNet, UNet
from medseg.nets.unet_multitask import UNetMultitask
from medseg.nets.unet_plusplus import UNetPlusPlus
from medseg.nets.unetr import UNETR
from medseg.nets.vae_unet import VAEUNet
from medseg.nets.vit import VisionTransformer
from medseg.nets.voxelmorph import VoxelMorph
from medseg.registry import Registry

NETWORKS = Registry("network")

#: The kinds of network, as returned by :func:`network_task`.
TASKS = ("segmentation", "classification", "detection", "registration", "enhancement")

for _task, _networks in {
    "segmentation": [
        (
            "unet",
            UNet,
            "U-Net: encoder-decoder with skips, per-stage plan (Ronneberger 2015, Cicek 2016)",
        ),
        ("residual_unet", ResidualUNet, "U-Net with residual blocks"),
        (
            "attention_unet",
            AttentionUNet,
            "U-Net with additive attention gates on the skips (Oktay 2018)",
        ),
        (
            "unet_plusplus",
            UNetPlusPlus,
            "U-Net++: nested dense skips, deep supervision (Zhou 2018)",
        ),
        ("dilated_unet", DilatedUNet, "U-Net with dilated deep stages and an ASPP bottleneck"),
        ("fcn", FCN, "Fully convolutional LeNet, upsampled to the input size (Long 2015)"),
        ("segnet", SegNet, "Encoder-decoder with max-unpooling indices (Badrinarayanan 2017)"),
        (
            "multiscale_unet",
            MultiScaleUNet,
            "Two U-Net pathways, full and down-sampled input, fused",
        ),
        ("vae_unet", VAEUNet, "U-Net + VAE reconstruction branch (Myronenko 2018)"),
        (
            "swin_unet",
            SwinUNet,
            "Swin-Unet: shifted-window transformer U-Net, patch merging/expanding (Cao 2021)",
        ),
        (
            "transunet",
            TransUNet,
            "TransUNet: ResNet v2 encoder, ViT on its 1/16 map, cascaded upsampler (Chen 2021)",
        ),
        (
            "unetr",
            UNETR,
            "UNETR: ViT on 16^d patches, layers 3/6/9/12 decoded as skips (Hatamizadeh 2022)",
        ),
        (
            "highres3dnet",
            HighRes3DNet,
            "HighRes3DNet: full-resolution residual units, dilations 1/2/4 (Li 2017)",
        ),
        (
            "unet_multitask",
            UNetMultitask,
            "U-Net + classification head on the bottleneck; returns (segmentation, class) logits",
        ),
    ],
    "classification": [
        ("lenet5", LeNet5, "Classifier: LeNet-5, conv5-pool-conv5-pool-fc120-fc84 (LeCun 1998)"),
        (
            "alexnet",
            AlexNet,
            "Classifier: AlexNet, stem adapts to the input size (Krizhevsky 2012)",
        ),
        (
            "vgg11",
            VGG11,
            "Classifier: VGG-11, 3x3 conv stages, optional batch norm (Simonyan 2015)",
        ),
        (
            "vgg16",
            VGG16,
            "Classifier: VGG-16, 3x3 conv stages, optional batch norm (Simonyan 2015)",
        ),
        ("inception", Inception, "Classifier: GoogLeNet, Inception-v1 blocks (Szegedy 2015)"),
        ("resnet18", ResNet18, "Classifier: ResNet-18, basic residual blocks (He 2016)"),
        ("resnet34", ResNet34, "Classifier: ResNet-34, basic residual blocks (He 2016)"),
        ("resnet50", ResNet50, "Classifier: ResNet-50, bottleneck residual blocks (He 2016)"),
        (
            "densenet121",
            DenseNet121,
            "Classifier: DenseNet-121, growth 32, BC compression 0.5 (Huang 2017)",
        ),
        (
            "mobilenet_v1",
            MobileNetV1,
            "Classifier: MobileNet v1, depth-wise separable convs (Howard 2017)",
        ),
        (
            "mobilenet_v2",
            MobileNetV2,
            "Classifier: MobileNet v2, inverted residuals, ReLU6 (Sandler 2018)",
        ),
        (
            "vit",
            VisionTransformer,
            "Classifier: Vision Transformer, patches + CLS token + "
            "position embedding (Dosovitskiy 2021)",
        ),
        (
            "capsnet",
            CapsuleNetwork,
            "Classifier: capsule network, dynamic routing by agreement, margin loss (Sabour 2017)",
        ),
        (
            "unet_encoder",
            UNetEncoderClassifier,
            "Classifier: a U-Net encoder + linear head; loads a segmentation model's encoder",
        ),
        (
            "patch_classifier",
            PatchClassifier,
            "Classifier of a patch's centre voxel; segment() slides it over an image (dense)",
        ),
        (
            "cnn_gru",
            CNNGRU,
            "Sequence classifier: CNN per slice/frame + bidirectional GRU, input (B, C, T, ...)",
        ),
        (
            "cox_head",
            CoxHead,
            "Survival: CNN encoder -> one log-risk (Cox partial likelihood, Mobadersany 2018)",
        ),
    ],
    "detection": [
        (
            "centernet",
            CenterNet,
            "Detection: CenterNet, centre heatmap + box size on the U-Net decoder (Zhou 2019)",
        ),
    ],
    "registration": [
        (
            "voxelmorph",
            VoxelMorph,
            "Registration: VoxelMorph, U-Net on the moving/fixed pair -> displacement field "
            "(Balakrishnan 2019)",
        ),
    ],
    "enhancement": [
        (
            "residual_denoiser",
            ResidualDenoiser,
            "Denoising: a U-Net predicting the noise, output = input - noise (DnCNN-style)",
        ),
    ],
}.items():
    for _name, _builder, _description in _networks:
        NETWORKS.register(_name, description=_description, task=_task)(_builder)


def network_task(name: str) -> str:
    """What a registered network predicts: one of :data:`TASKS`.

    Raises:
        ConfigError: for an unknown network name (listing the valid ones).

    Example:
        >>> network_task("unet"), network_task("resnet18")
        ('segmentation', 'classification')
    """
    return NETWORKS.task(name) or "segmentation"


def list_networks(task: str | None = None) -> list[str]:
    """Registered network names, sorted: all of them, or those of one ``task``.

    Raises:
        ConfigError: for a ``task`` not in :data:`TASKS`.

    Example:
        >>> "unet" in list_networks(), "resnet18" in list_networks("segmentation")
        (True, False)
    """
    if task is None:
        return NETWORKS.names()
    if task not in TASKS:
        raise ConfigError(f"unknown network task {task!r}; valid tasks: {', '.join(TASKS)}")
    return NETWORKS.names(task=task)


#: Segmentation networks whose output is not plain logits (a ``MultitaskOutput``): ``medseg
#: plan``/``train`` (one label map per case, sliding-window inference) cannot use them.
MULTI_OUTPUT = frozenset({"unet_multitask"})


def plannable_networks() -> list[str]:
    """Segmentation networks ``medseg plan --network`` can choose: all but :data:`MULTI_OUTPUT`.

    Example:
        >>> "highres3dnet" in plannable_networks(), "unet_multitask" in plannable_networks()
        (True, False)
    """
    return [name for name in list_networks("segmentation") if name not in MULTI_OUTPUT]


#: Classification-task networks that are not whole-image classifiers: fixed-size patches
#: (``patch_classifier``), sequences ``(B, C, T, ...)`` (``cnn_gru``), survival log-risks
#: (``cox_head``). ``medseg classify`` should offer :func:`image_classifiers` only.
NOT_IMAGE_CLASSIFIERS = frozenset({"patch_classifier", "cnn_gru", "cox_head"})


def image_classifiers() -> list[str]:
    """Classification networks that map a whole image to per-image logits.

    Example:
        >>> "resnet18" in image_classifiers(), "cnn_gru" in image_classifiers()
        (True, False)
    """
    return [n for n in list_networks("classification") if n not in NOT_IMAGE_CLASSIFIERS]


def network_options(name: str) -> list[str]:
    """The keyword options a network accepts (beyond the four required arguments).

    Raises:
        ConfigError: for an unknown network name (listing the valid ones).

    Example:
        >>> "deep_supervision" in network_options("attention_unet")
        True
    """
    return NETWORKS.options(name)


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
        >>> net = build_network(
        ...     "unet", spatial_dims=2, in_channels=1, out_channels=2, features=(8, 16))
        >>> net.required_divisor
        (2, 2)
    """
    return NETWORKS.build(name, spatial_dims, in_channels, out_channels, **config)


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
        summary = NETWORKS.description(name)
        rows.append(NetworkInfo(name, summary, counts[0], counts[1], network_task(name)))
    return rows
