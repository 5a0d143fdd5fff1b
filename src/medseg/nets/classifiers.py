"""The classification CNN zoo: ``(B, in_channels, *spatial) -> (B, out_channels)`` logits.

One N-dimensional implementation per family (``spatial_dims`` 2 or 3; 1 mostly works too),
built by name like the segmentation networks::

    from medseg.nets import build_network
    net = build_network("resnet18", spatial_dims=3, in_channels=1, out_channels=2)
    net(torch.randn(4, 1, 64, 64, 64)).shape   # (4, 2)

``out_channels`` is the number of classes (apply softmax/sigmoid outside), or the number of
regression targets: the output is a plain linear layer, so it serves as the prediction.

Every classifier has ``backbone`` (all feature layers), ``pool`` (adaptive average pooling)
and ``head`` (the final linear layer(s), ``head[-1]`` the output layer), ``features(x)``
(the last convolutional feature map ``(B, num_features, *spatial')``, the Grad-CAM target),
``num_features``, ``min_input_size`` (too small inputs raise ``ValueError``) and the class
attribute ``task = "classification"``. Freezing all but the head for transfer learning is
``net.backbone.requires_grad_(False)``.

Families live in ``classifier_base`` (the skeleton), ``classifier_plain`` (LeNet-5, AlexNet,
VGG), ``classifier_resnet`` (ResNet, DenseNet), ``classifier_mobile`` (MobileNet v1/v2) and
``classifier_inception`` (GoogLeNet); this module gathers them.

Example:
    >>> import torch
    >>> net = ResNet18(2, 1, 3, features=(8, 16, 32, 64))
    >>> net(torch.zeros(2, 1, 32, 32)).shape, net.features(torch.zeros(2, 1, 32, 32)).shape
    (torch.Size([2, 3]), torch.Size([2, 64, 1, 1]))
"""

from __future__ import annotations

from medseg.nets.classifier_base import Classifier, adaptive_avg_pool, make_divisible
from medseg.nets.classifier_inception import GOOGLENET_BLOCKS, Inception, InceptionBlock
from medseg.nets.classifier_mobile import (
    MOBILENET_V1_LAYERS,
    MOBILENET_V2_LAYERS,
    InvertedResidual,
    MobileNetV1,
    MobileNetV2,
)
from medseg.nets.classifier_plain import VGG, VGG11, VGG16, VGG_DEPTHS, AlexNet, LeNet5
from medseg.nets.classifier_resnet import (
    Bottleneck,
    DenseNet,
    DenseNet121,
    ResNet,
    ResNet18,
    ResNet34,
    ResNet50,
)

__all__ = [
    "GOOGLENET_BLOCKS",
    "MOBILENET_V1_LAYERS",
    "MOBILENET_V2_LAYERS",
    "VGG",
    "VGG11",
    "VGG16",
    "VGG_DEPTHS",
    "AlexNet",
    "Bottleneck",
    "Classifier",
    "DenseNet",
    "DenseNet121",
    "Inception",
    "InceptionBlock",
    "InvertedResidual",
    "LeNet5",
    "MobileNetV1",
    "MobileNetV2",
    "ResNet",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "adaptive_avg_pool",
    "make_divisible",
]
