"""Segmentation and classification networks and their building blocks, N-dimensional
through ``spatial_dims``.

Segmentation networks map ``(B, C_in, *spatial) -> (B, K, *spatial)`` logits, classification
networks ``(B, C_in, *spatial) -> (B, K)`` logits (softmax, sigmoid and argmax happen
outside); ``network_task(name)`` tells which. All are built by name::

    from medseg.nets import build_network, list_networks
    net = build_network("unet", spatial_dims=3, in_channels=1, out_channels=4,
                        features=(32, 64, 128, 256), strides=[1, (1, 2, 2), 2, 2])
    clf = build_network("resnet18", spatial_dims=3, in_channels=1, out_channels=2)
    list_networks("classification")

Modules: ``ops`` (layer types per dimension), ``blocks`` (conv, residual, dense, separable),
``aspp``, ``sampling`` (pool/unpool/up-sample), ``attention`` (self-attention, attention gate),
``shapes`` (per-stage settings, divisibility), ``encoder_decoder`` (U-Net skeleton), one
module per network family, the classification zoo in the ``classifier_*`` modules (the
skeleton in ``classifier_base``), and ``registry``.
"""

from medseg.nets.aspp import ASPP
from medseg.nets.attention import AttentionGate, MultiHeadSelfAttention, SpatialSelfAttention
from medseg.nets.blocks import (
    ConvNormAct,
    ConvStage,
    DenseBlock,
    ResidualBlock,
    SeparableConv,
    pointwise_conv,
)
from medseg.nets.capsnet import CapsuleNetwork, dynamic_routing, squash
from medseg.nets.classifier_base import Classifier
from medseg.nets.classifier_inception import Inception, InceptionBlock
from medseg.nets.classifier_mobile import InvertedResidual, MobileNetV1, MobileNetV2
from medseg.nets.classifier_plain import VGG, VGG11, VGG16, AlexNet, LeNet5
from medseg.nets.classifier_resnet import (
    Bottleneck,
    DenseNet,
    DenseNet121,
    ResNet,
    ResNet18,
    ResNet34,
    ResNet50,
)
from medseg.nets.cnn_gru import CNNGRU
from medseg.nets.cox_head import CoxHead
from medseg.nets.encoder_classifier import UNetEncoderClassifier
from medseg.nets.encoder_decoder import UNetDecoder, UNetEncoder
from medseg.nets.encoders import ImageEncoder, build_encoder
from medseg.nets.fcn import FCN
from medseg.nets.highres3dnet import HighRes3DNet
from medseg.nets.multiscale import MultiScaleUNet
from medseg.nets.patch_classifier import PatchClassifier, patch_dilations
from medseg.nets.registry import (
    NETWORKS,
    TASKS,
    NetworkInfo,
    build_network,
    count_parameters,
    describe_networks,
    image_classifiers,
    list_networks,
    network_options,
    network_task,
    plannable_networks,
)
from medseg.nets.sampling import (
    Unpool,
    Upsample,
    max_pool_with_indices,
    max_unpool,
    unpool_bed_of_nails,
    unpool_nearest,
)
from medseg.nets.segnet import SegNet
from medseg.nets.shapes import check_divisible, required_divisor, stage_features
from medseg.nets.swin_unet import SwinUNet
from medseg.nets.transunet import TransUNet
from medseg.nets.unet import (
    UNET_PRESETS,
    AttentionUNet,
    DilatedUNet,
    ResidualUNet,
    UNet,
    unet_from_preset,
)
from medseg.nets.unet_multitask import MultitaskOutput, UNetMultitask
from medseg.nets.unet_plusplus import UNetPlusPlus
from medseg.nets.unetr import UNETR
from medseg.nets.vae_unet import VAEOutput, VAEUNet
from medseg.nets.vit import VisionTransformer

__all__ = [
    "CNNGRU",
    "CoxHead",
    "HighRes3DNet",
    "ImageEncoder",
    "MultitaskOutput",
    "PatchClassifier",
    "UNetMultitask",
    "build_encoder",
    "image_classifiers",
    "patch_dilations",
    "plannable_networks",
    "CapsuleNetwork",
    "UNetEncoderClassifier",
    "VisionTransformer",
    "dynamic_routing",
    "squash",
    "ASPP",
    "FCN",
    "NETWORKS",
    "TASKS",
    "UNET_PRESETS",
    "VGG",
    "VGG11",
    "VGG16",
    "AlexNet",
    "AttentionGate",
    "AttentionUNet",
    "Bottleneck",
    "Classifier",
    "ConvNormAct",
    "ConvStage",
    "DenseBlock",
    "DenseNet",
    "DenseNet121",
    "DilatedUNet",
    "Inception",
    "InceptionBlock",
    "InvertedResidual",
    "LeNet5",
    "MobileNetV1",
    "MobileNetV2",
    "MultiHeadSelfAttention",
    "MultiScaleUNet",
    "NetworkInfo",
    "ResNet",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "ResidualBlock",
    "ResidualUNet",
    "SegNet",
    "SwinUNet",
    "TransUNet",
    "UNETR",
    "SeparableConv",
    "SpatialSelfAttention",
    "UNet",
    "UNetDecoder",
    "UNetEncoder",
    "UNetPlusPlus",
    "Unpool",
    "Upsample",
    "VAEOutput",
    "VAEUNet",
    "build_network",
    "check_divisible",
    "count_parameters",
    "describe_networks",
    "list_networks",
    "max_pool_with_indices",
    "max_unpool",
    "network_options",
    "network_task",
    "pointwise_conv",
    "required_divisor",
    "stage_features",
    "unet_from_preset",
    "unpool_bed_of_nails",
    "unpool_nearest",
]
