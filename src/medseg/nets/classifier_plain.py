"""Plain convolution-pool stacks with fully connected heads: LeNet-5, AlexNet, VGG.

Their heads are multi-layer: the flattened pooled feature grid goes through hidden linear
layers (``fc_features``) to the output. In 2D the defaults are the ImageNet ones (AlexNet and
VGG pool to a 6x6 / 7x7 grid and have 4096-wide hidden layers, matching torchvision's
parameter counts); in 3D they are compact (global pooling, 512-wide hidden layers) so the
models stay small. See :mod:`medseg.nets.classifier_base` for the shared interface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from medseg.errors import ConfigError
from medseg.nets.blocks import ConvNormAct
from medseg.nets.classifier_base import Classifier, mlp_head
from medseg.nets.ops import NormName, max_pool_type, per_axis

#: Convolutions per VGG stage (five stages, each followed by a 2x2 max-pool).
VGG_DEPTHS: dict[int, tuple[int, ...]] = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}


def _check_length(name: str, value: Sequence[int], length: int) -> tuple[int, ...]:
    if len(value) != length:
        raise ConfigError(f"{name} needs {length} entries, got {len(value)}: {tuple(value)}")
    return tuple(int(v) for v in value)


class LeNet5(Classifier):
    """LeNet-5 (LeCun et al. 1998), modernised with ReLU and max-pooling:
    conv5 (padded) - pool2 - conv5 - pool2 - fc120 - fc84 - fc(out_channels).

    A 28x28 input (MNIST) gives the classic 5x5 map of 16 channels before the fully
    connected layers; larger inputs are average-pooled to 5 per axis (minimum input 12).

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: image channels.
        out_channels: classes (logits), or regression targets (linear output).
        channels: the two convolutions' channels.
        fc_features: the hidden fully connected layers' widths.
        dropout: dropout after each hidden fully connected layer.

    Example:
        >>> import torch
        >>> LeNet5(2, 1, 10)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        channels: Sequence[int] = (6, 16),
        fc_features: Sequence[int] = (120, 84),
        dropout: float = 0.0,
    ) -> None:
        c1, c2 = _check_length("channels", channels, 2)
        conv = {"kernel_size": 5, "norm": "none", "act": "relu"}
        pool = max_pool_type(spatial_dims)
        backbone = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, c1, padding=2, **conv),
            pool(2, 2),
            ConvNormAct(spatial_dims, c1, c2, padding=0, **conv),
            pool(2, 2),
        )
        grid = 5**spatial_dims
        head = mlp_head(c2 * grid, fc_features, out_channels, dropout=dropout)
        super().__init__(spatial_dims, backbone, head, c2, pooled_size=5, min_input_size=12)


class AlexNet(Classifier):
    """AlexNet (Krizhevsky et al. 2012; torchvision's single-tower variant) whose stem
    follows the input size, per axis.

    Five convolutions (``features`` channels) with max-pools after the 1st, 2nd and 5th,
    then dropout-linear-ReLU twice and a linear output. An axis of ``input_size`` >= 64 gets
    the ImageNet layout (11-wide stride-4 first convolution, 5-wide second, 3/2 max-pools;
    minimum input 63); a smaller axis gets 3-wide stride-1 convolutions and 2/2 max-pools
    (minimum input 8), so 28-px and 224-px images both work.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: image channels.
        out_channels: classes (logits), or regression targets (linear output).
        input_size: the expected input size (int or per axis); only picks the layout, other
            sizes above the minimum work too. Default 224 in 2D, 32 otherwise.
        features: the five convolutions' channels.
        fc_features: hidden fully connected width. Default 4096 for the 2D ImageNet layout
            (torchvision's 61,100,840 parameters at 3 -> 1000), else 512.
        pooled_size: per-axis grid of the adaptive average pooling before the fully
            connected layers. Default 6 for the 2D ImageNet layout, else 1 (global).
        dropout: dropout before each hidden fully connected layer.
        norm: normalisation after each convolution (``none`` as the original).

    Example:
        >>> import torch
        >>> net = AlexNet(2, 1, 3, input_size=28)
        >>> net(torch.zeros(2, 1, 28, 28)).shape, net.features(torch.zeros(1, 1, 28, 28)).shape
        (torch.Size([2, 3]), torch.Size([1, 256, 3, 3]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        input_size: int | Sequence[int] | None = None,
        features: Sequence[int] = (64, 192, 384, 256, 256),
        fc_features: int | None = None,
        pooled_size: int | Sequence[int] | None = None,
        dropout: float = 0.5,
        norm: NormName = "none",
    ) -> None:
        c = _check_length("features", features, 5)
        size = per_axis(
            input_size or (224 if spatial_dims == 2 else 32), spatial_dims, "input_size"
        )
        large = [n >= 64 for n in size]
        imagenet = spatial_dims == 2 and all(large)
        conv = {"norm": norm, "act": "relu", "bias": True}
        pool = max_pool_type(spatial_dims)

        def pick(big: int, small: int) -> tuple[int, ...]:
            return tuple(big if b else small for b in large)

        pool_k, pool_s = pick(3, 2), 2
        backbone = nn.Sequential(
            ConvNormAct(
                spatial_dims,
                in_channels,
                c[0],
                kernel_size=pick(11, 3),
                stride=pick(4, 1),
                padding=pick(2, 1),
                **conv,
            ),
            pool(pool_k, pool_s),
            ConvNormAct(spatial_dims, c[0], c[1], kernel_size=pick(5, 3), **conv),
            pool(pool_k, pool_s),
            ConvNormAct(spatial_dims, c[1], c[2], **conv),
            ConvNormAct(spatial_dims, c[2], c[3], **conv),
            ConvNormAct(spatial_dims, c[3], c[4], **conv),
            pool(pool_k, pool_s),
        )
        grid = per_axis(pooled_size or (6 if imagenet else 1), spatial_dims, "pooled_size")
        fc = fc_features or (4096 if imagenet else 512)
        flat = c[4] * math.prod(grid)
        head = mlp_head(flat, (fc, fc), out_channels, dropout=dropout, dropout_first=True)
        super().__init__(
            spatial_dims, backbone, head, c[4], pooled_size=grid, min_input_size=pick(63, 8)
        )
        self.input_size = size


class VGG(Classifier):
    """VGG (Simonyan & Zisserman 2015): five stages of 3x3 convolutions (+ optional batch
    norm) each followed by a 2x2 max-pool (minimum input 32), then
    linear-ReLU-dropout twice and a linear output.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: image channels.
        out_channels: classes (logits), or regression targets (linear output).
        depth: 11, 13, 16 or 19 weight layers (:data:`VGG_DEPTHS`).
        features: channels of the five stages.
        norm: ``none`` (the original), ``batch`` (torchvision's ``vgg*_bn``), ``group`` or
            ``instance``. The convolutions keep their bias either way, as torchvision.
        fc_features: hidden fully connected width. Default 4096 in 2D (torchvision's counts:
            vgg11 132,863,336, vgg16 138,357,544 at 3 -> 1000), else 512.
        pooled_size: per-axis grid of the adaptive average pooling before the fully
            connected layers. Default 7 in 2D, else 1 (global). For small 2D images
            (e.g. 32 px) ``pooled_size=1, fc_features=512`` is the usual compact choice.
        dropout: dropout after each hidden fully connected layer.

    Example:
        >>> import torch
        >>> net = VGG(3, 1, 2, depth=11, features=(4, 8, 8, 16, 16), fc_features=16)
        >>> net(torch.zeros(1, 1, 32, 32, 32)).shape
        torch.Size([1, 2])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        depth: int = 16,
        features: Sequence[int] = (64, 128, 256, 512, 512),
        norm: NormName = "none",
        fc_features: int | None = None,
        pooled_size: int | Sequence[int] | None = None,
        dropout: float = 0.5,
    ) -> None:
        if depth not in VGG_DEPTHS:
            raise ConfigError(f"VGG depth must be one of {sorted(VGG_DEPTHS)}, got {depth}")
        widths = _check_length("features", features, 5)
        layers: list[nn.Module] = []
        channels = in_channels
        for width, convs in zip(widths, VGG_DEPTHS[depth], strict=True):
            for _ in range(convs):
                layers.append(
                    ConvNormAct(spatial_dims, channels, width, norm=norm, act="relu", bias=True)
                )
                channels = width
            layers.append(max_pool_type(spatial_dims)(2, 2))
        default_2d = spatial_dims == 2
        grid = per_axis(pooled_size or (7 if default_2d else 1), spatial_dims, "pooled_size")
        fc = fc_features or (4096 if default_2d else 512)
        head = mlp_head(channels * math.prod(grid), (fc, fc), out_channels, dropout=dropout)
        super().__init__(
            spatial_dims,
            nn.Sequential(*layers),
            head,
            channels,
            pooled_size=grid,
            min_input_size=32,
        )


class VGG11(VGG):
    """VGG-11 (configuration A): :class:`VGG` with ``depth=11``. Options as :class:`VGG`."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels, **{"depth": 11, **options})


class VGG16(VGG):
    """VGG-16 (configuration D): :class:`VGG` with ``depth=16``. Options as :class:`VGG`."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels, **{"depth": 16, **options})
