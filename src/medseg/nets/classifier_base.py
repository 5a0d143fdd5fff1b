"""The common skeleton of the classification networks: backbone -> pool -> flatten -> head.

Every classifier maps ``(B, in_channels, *spatial) -> (B, out_channels)`` logits. For
regression, ``out_channels`` is the number of targets and the output is used as is (the head
ends in a plain linear layer, no activation). The parts are separate attributes so transfer
learning and saliency need no per-network code:

* ``backbone``: every feature layer; ``features(x)`` runs it and returns the last
  convolutional feature map ``(B, num_features, *spatial')`` (the Grad-CAM target);
* ``pool``: adaptive average pooling (global, or to a fixed grid for VGG/AlexNet), no
  parameters;
* ``head``: the final linear layer(s); ``head[-1]`` is the output ``nn.Linear``.

``backbone.parameters()`` and ``head.parameters()`` partition the parameters, so freezing
"everything but the head" is ``model.backbone.requires_grad_(False)``. Too small inputs raise
``ValueError`` (``min_input_size``).

The families built on it live in ``classifier_plain`` (LeNet-5, AlexNet, VGG),
``classifier_resnet`` (ResNet, DenseNet), ``classifier_mobile`` (MobileNet v1/v2) and
``classifier_inception`` (GoogLeNet); the Vision Transformer (``vit``), the capsule network
(``capsnet``) and the U-Net-encoder classifier (``encoder_classifier``) keep the ``backbone``
/ ``head`` names but not the pooling skeleton. All are built by name::

    from medseg.nets import build_network
    net = build_network("resnet18", spatial_dims=3, in_channels=1, out_channels=2)
    net(torch.randn(4, 1, 64, 64, 64)).shape   # (4, 2)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.nets.ops import adaptive_avg_pool, as_tuple


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` without losing more than 10%
    (the MobileNet width-multiplier rule).

    Example:
        >>> make_divisible(32 * 0.75), make_divisible(1280 * 1.0), make_divisible(3)
        (24, 1280, 8)
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def linear_head(in_features: int, out_channels: int, *, dropout: float = 0.0) -> nn.Sequential:
    """``Dropout -> Linear``: the head of the globally pooled networks (``p=0`` is a no-op).

    Example:
        >>> linear_head(512, 3, dropout=0.2)
        Sequential(
          (0): Dropout(p=0.2, inplace=False)
          (1): Linear(in_features=512, out_features=3, bias=True)
        )
    """
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, out_channels))


def mlp_head(
    in_features: int,
    hidden: Sequence[int],
    out_channels: int,
    *,
    dropout: float = 0.0,
    dropout_first: bool = False,
) -> nn.Sequential:
    """Fully connected layers ``in -> hidden... -> out`` with ReLU (LeNet, AlexNet, VGG).

    Dropout (``p > 0``) follows every hidden ReLU (VGG), or precedes every hidden linear
    layer with ``dropout_first`` (AlexNet). The last layer is a plain ``nn.Linear``.
    """
    layers: list[nn.Module] = []
    width = in_features
    for features in hidden:
        if dropout > 0 and dropout_first:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(width, features), nn.ReLU(inplace=True)]
        if dropout > 0 and not dropout_first:
            layers.append(nn.Dropout(dropout))
        width = features
    layers.append(nn.Linear(width, out_channels))
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """He initialisation of the convolutions (``fan_out``, as torchvision's ResNet, VGG,
    MobileNet), zero biases, unit/zero normalisation scale/shift; linear layers keep torch's
    default."""
    for m in module.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d | nn.GroupNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


class Classifier(nn.Module):
    """Base class: ``(B, in_channels, *spatial) -> (B, out_channels)`` logits (or regression
    outputs). Subclasses build ``backbone`` and ``head`` and pass them here.

    Args:
        spatial_dims: 1, 2 or 3.
        backbone: the feature layers, ``(B, C, *spatial) -> (B, num_features, *spatial')``.
        head: the final linear layer(s) on the flattened pooled features.
        num_features: channels of the backbone output.
        pooled_size: per-axis output size of the adaptive average pooling (1: global).
        min_input_size: smallest accepted input size per axis (int or per-axis).

    The registry records the task (``medseg.nets.network_task(name)``), not the class.
    """

    def __init__(
        self,
        spatial_dims: int,
        backbone: nn.Module,
        head: nn.Module,
        num_features: int,
        pooled_size: int | Sequence[int] = 1,
        min_input_size: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.backbone = backbone
        self.pool = adaptive_avg_pool(spatial_dims, pooled_size)
        self.head = head
        self.num_features = num_features
        self.min_input_size = as_tuple(min_input_size, spatial_dims, name="min_input_size")
        init_weights(self.backbone)

    def _check_input(self, x: Tensor) -> None:
        name = type(self).__name__
        if x.dim() != 2 + self.spatial_dims:
            raise ValueError(
                f"{name} expects (B, C, *spatial) with {self.spatial_dims} spatial axes, "
                f"got shape {tuple(x.shape)}"
            )
        shape = tuple(x.shape[2:])
        if any(n < m for n, m in zip(shape, self.min_input_size, strict=True)):
            raise ValueError(
                f"input spatial shape {shape} is too small for {name}: it needs at least "
                f"{self.min_input_size}"
            )

    def features(self, x: Tensor) -> Tensor:
        """The last convolutional feature map ``(B, num_features, *spatial')``."""
        self._check_input(x)
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (or regression outputs) ``(B, out_channels)``."""
        return self.head(torch.flatten(self.pool(self.features(x)), 1))
