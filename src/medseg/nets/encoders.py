"""Image encoders ``(B, C, *spatial) -> (B, F)`` for networks that put their own head on a
CNN: the sequence classifier (``cnn_gru``) and the survival head (``cox_head``).

``build_encoder("plain", ...)`` is a small VGG-style CNN (conv-norm-ReLU and max-pool per
stage, then global average pooling); any registered classifier name (``"resnet18"``,
``"mobilenet_v2"``, ``"vgg11"``, ...) reuses that network's ``backbone`` with global average
pooling, dropping its head, so a pretrained classifier's ``backbone.*`` weights load unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.blocks import ConvNormAct
from medseg.nets.classifier_base import Classifier
from medseg.nets.ops import NormName, adaptive_avg_pool, max_pool_type


class ImageEncoder(nn.Module):
    """``backbone -> pool -> flatten``: ``(B, C, *spatial) -> (B, num_features)``.

    Attributes:
        backbone: the feature layers (``features(x)`` returns their map, the Grad-CAM target).
        num_features: the output width.
        min_input_size: the smallest input size per axis the backbone takes.
    """

    def __init__(
        self,
        spatial_dims: int,
        backbone: nn.Module,
        num_features: int,
        min_input_size: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = adaptive_avg_pool(spatial_dims, 1)
        self.num_features = num_features
        self.min_input_size = min_input_size

    def features(self, x: Tensor) -> Tensor:
        """The backbone's feature map ``(B, num_features, *spatial')``."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.backbone(x)), 1)


def plain_encoder(
    spatial_dims: int,
    in_channels: int,
    *,
    features: Sequence[int] = (16, 32, 64),
    norm: NormName = "batch",
) -> ImageEncoder:
    """Conv-norm-ReLU (3^d) per stage, a 2^d max-pool between stages, global pooling.

    Example:
        >>> plain_encoder(2, 1, features=(4, 8))(torch.zeros(3, 1, 16, 16)).shape
        torch.Size([3, 8])
    """
    if not features or min(features) < 1:
        raise ConfigError(f"encoder features must be positive widths, got {list(features)}")
    layers: list[nn.Module] = []
    width = in_channels
    for i, f in enumerate(features):
        if i:
            layers.append(max_pool_type(spatial_dims)(2))
        layers.append(ConvNormAct(spatial_dims, width, int(f), norm=norm, act="relu"))
        width = int(f)
    return ImageEncoder(spatial_dims, nn.Sequential(*layers), width, 2 ** (len(features) - 1))


def build_encoder(
    name: str, spatial_dims: int, in_channels: int, config: Mapping[str, Any] | None = None
) -> ImageEncoder:
    """An encoder by name: ``"plain"`` (:func:`plain_encoder`) or a registered CNN classifier
    (:class:`~medseg.nets.classifier_base.Classifier`), whose ``backbone`` is kept, followed by
    global average pooling (its head and any fixed-grid pooling are dropped).

    Raises:
        ConfigError: an unknown name, a network that is not a classifier, unknown options.

    Example:
        >>> build_encoder("resnet18", 2, 1).num_features
        512
    """
    options = dict(config or {})
    if name == "plain":
        return plain_encoder(spatial_dims, in_channels, **options)
    from medseg.nets.registry import build_network, list_networks  # the registry imports us

    if name not in list_networks("classification"):
        raise ConfigError(
            f"encoder {name!r} is not 'plain' or a registered classifier: "
            f"{', '.join(['plain', *list_networks('classification')])}"
        )
    net = build_network(
        name, spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1, **options
    )
    if not isinstance(net, Classifier):
        raise ConfigError(
            f"classifier {name!r} has no pooled convolutional backbone to reuse as an encoder"
        )
    return ImageEncoder(spatial_dims, net.backbone, net.num_features, max(net.min_input_size))
