"""Residual and densely connected classifiers: ResNet-18/34/50 and DenseNet-121.

Both start with the ImageNet stem (7-wide stride-2 convolution, 3/2 max-pool), end with
global average pooling and one linear layer, and match torchvision's parameter counts in 2D
(3 -> 1000 classes: resnet18 11,689,512, resnet34 21,797,672, resnet50 25,557,032,
densenet121 7,978,856). In 3D the same layers become 3D (Med3D-style), with no other change.
See :mod:`medseg.nets.classifier_base` for the shared interface.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.blocks import ConvNormAct, DenseBlock, ResidualBlock, pointwise_conv
from medseg.nets.classifier_base import Classifier, linear_head
from medseg.nets.ops import NormName, act_layer, avg_pool_type, max_pool_type, norm_layer

BlockName = Literal["basic", "bottleneck"]


def _stem(spatial_dims: int, in_channels: int, channels: int, norm: NormName) -> nn.Sequential:
    """7-wide stride-2 convolution + norm + ReLU, 3/2 max-pool: ``/4`` per axis."""
    return nn.Sequential(
        ConvNormAct(
            spatial_dims, in_channels, channels, kernel_size=7, stride=2, norm=norm, act="relu"
        ),
        max_pool_type(spatial_dims)(3, 2, 1),
    )


class Bottleneck(nn.Module):
    """ResNet bottleneck (torchvision's v1.5: the stride sits on the 3x3 convolution):
    1x1 to ``width`` -> 3x3 (stride) -> 1x1 to ``4 * width``, plus an identity or strided 1x1
    projection shortcut, ReLU after the sum.

    Shapes:
        ``(B, in_channels, *spatial) -> (B, 4 * width, *spatial / stride)``.

    Example:
        >>> import torch
        >>> Bottleneck(2, 8, 4, stride=2)(torch.zeros(1, 8, 6, 6)).shape
        torch.Size([1, 16, 3, 3])
    """

    expansion = 4

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        width: int,
        *,
        stride: int = 1,
        norm: NormName = "batch",
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        opts = {"norm": norm, "act": "relu"}
        self.branch = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, width, kernel_size=1, **opts),
            ConvNormAct(spatial_dims, width, width, stride=stride, **opts),
            ConvNormAct(spatial_dims, width, out_channels, kernel_size=1, norm=norm, act="none"),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvNormAct(
                spatial_dims,
                in_channels,
                out_channels,
                kernel_size=1,
                stride=stride,
                norm=norm,
                act="none",
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


class ResNet(Classifier):
    """ResNet (He et al. 2016): stem, four stages of residual blocks (the first block of
    stages 2-4 halves the size), global average pooling, dropout, linear. Any input size
    works (the map shrinks to 1 per axis).

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: image channels.
        out_channels: classes (logits), or regression targets (linear output).
        block: ``basic`` (two 3x3 convolutions, :class:`medseg.nets.blocks.ResidualBlock`)
            or ``bottleneck`` (:class:`Bottleneck`, 4x wider output).
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` (ResNet-18), ``(3, 4, 6, 3)`` (34/50).
        features: stage widths (the stem has ``features[0]`` channels).
        norm: ``batch`` (the original), ``group`` or ``instance`` (small 3D batches).
        dropout: dropout before the linear layer.

    Example:
        >>> import torch
        >>> net = ResNet(3, 1, 4, layers=(1, 1, 1, 1), features=(4, 8, 16, 32))
        >>> net(torch.zeros(2, 1, 16, 16, 16)).shape, net.num_features
        (torch.Size([2, 4]), 32)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        block: BlockName = "basic",
        layers: Sequence[int] = (2, 2, 2, 2),
        features: Sequence[int] = (64, 128, 256, 512),
        norm: NormName = "batch",
        dropout: float = 0.0,
    ) -> None:
        if block not in ("basic", "bottleneck"):
            raise ConfigError(f"ResNet block must be 'basic' or 'bottleneck', got {block!r}")
        if len(layers) != len(features) or not layers or min(layers) < 1:
            raise ConfigError(
                f"ResNet layers {tuple(layers)} and features {tuple(features)} need the same "
                "number of stages, each with at least one block"
            )
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        stages["stem"] = _stem(spatial_dims, in_channels, features[0], norm)
        channels = features[0]
        for i, (count, width) in enumerate(zip(layers, features, strict=True)):
            blocks: list[nn.Module] = []
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                if block == "basic":
                    blocks.append(
                        ResidualBlock(
                            spatial_dims, channels, width, stride=stride, norm=norm, act="relu"
                        )
                    )
                    channels = width
                else:
                    blocks.append(
                        Bottleneck(spatial_dims, channels, width, stride=stride, norm=norm)
                    )
                    channels = width * Bottleneck.expansion
            stages[f"layer{i + 1}"] = nn.Sequential(*blocks)
        super().__init__(
            spatial_dims,
            nn.Sequential(stages),
            linear_head(channels, out_channels, dropout=dropout),
            channels,
        )


class ResNet18(ResNet):
    """ResNet-18: basic blocks ``(2, 2, 2, 2)``. Options as :class:`ResNet`."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
    ) -> None:
        options = {"block": "basic", "layers": (2, 2, 2, 2), **options}
        super().__init__(spatial_dims, in_channels, out_channels, **options)


class ResNet34(ResNet):
    """ResNet-34: basic blocks ``(3, 4, 6, 3)``. Options as :class:`ResNet`."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
    ) -> None:
        options = {"block": "basic", "layers": (3, 4, 6, 3), **options}
        super().__init__(spatial_dims, in_channels, out_channels, **options)


class ResNet50(ResNet):
    """ResNet-50: bottleneck blocks ``(3, 4, 6, 3)``. Options as :class:`ResNet`."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
    ) -> None:
        options = {"block": "bottleneck", "layers": (3, 4, 6, 3), **options}
        super().__init__(spatial_dims, in_channels, out_channels, **options)


class DenseNet(Classifier):
    """DenseNet-BC (Huang et al. 2017): stem, dense blocks (bottlenecked layers, 4x growth
    1x1 then 3x3, :class:`medseg.nets.blocks.DenseBlock`) separated by transitions
    (norm-ReLU-1x1 compression-2x2 average pool), final norm + ReLU, global average pooling,
    dropout, linear. Minimum input 29 per axis with four blocks.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: image channels.
        out_channels: classes (logits), or regression targets (linear output).
        growth_rate: channels each dense layer adds (``k``).
        block_layers: layers per dense block, ``(6, 12, 24, 16)`` for DenseNet-121.
        init_features: stem channels.
        compression: channel factor of each transition (``theta``).
        norm: ``batch`` (the original), ``group`` or ``instance``.
        dropout: dropout before the linear layer.

    Example:
        >>> import torch
        >>> net = DenseNet(2, 1, 3, growth_rate=4, block_layers=(2, 2), init_features=8)
        >>> net(torch.zeros(2, 1, 16, 16)).shape, net.num_features
        (torch.Size([2, 3]), 16)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        growth_rate: int = 32,
        block_layers: Sequence[int] = (6, 12, 24, 16),
        init_features: int = 64,
        compression: float = 0.5,
        norm: NormName = "batch",
        dropout: float = 0.0,
    ) -> None:
        if not block_layers or min(block_layers) < 1:
            raise ConfigError(f"DenseNet block_layers must be positive, got {tuple(block_layers)}")
        if not 0 < compression <= 1:
            raise ConfigError(f"DenseNet compression must be in (0, 1], got {compression}")
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        stages["stem"] = _stem(spatial_dims, in_channels, init_features, norm)
        channels = init_features
        for i, count in enumerate(block_layers):
            dense = DenseBlock(
                spatial_dims,
                channels,
                growth_rate=growth_rate,
                num_layers=count,
                bottleneck=True,
                norm=norm,
                act="relu",
            )
            stages[f"denseblock{i + 1}"] = dense
            channels = dense.out_channels
            if i < len(block_layers) - 1:
                reduced = int(channels * compression)
                stages[f"transition{i + 1}"] = nn.Sequential(
                    norm_layer(norm, spatial_dims, channels),
                    act_layer("relu"),
                    pointwise_conv(spatial_dims, channels, reduced, bias=False),
                    avg_pool_type(spatial_dims)(2, 2),
                )
                channels = reduced
        stages["final"] = nn.Sequential(norm_layer(norm, spatial_dims, channels), act_layer("relu"))
        transitions = len(block_layers) - 1
        super().__init__(
            spatial_dims,
            nn.Sequential(stages),
            linear_head(channels, out_channels, dropout=dropout),
            channels,
            min_input_size=4 * 2**transitions - 3,
        )


class DenseNet121(DenseNet):
    """DenseNet-121: growth 32, blocks ``(6, 12, 24, 16)``, 64 stem channels, compression
    0.5 (the bottleneck width is fixed at 4x growth). Options as :class:`DenseNet`."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
    ) -> None:
        options = {"growth_rate": 32, "block_layers": (6, 12, 24, 16), **options}
        super().__init__(spatial_dims, in_channels, out_channels, **options)
