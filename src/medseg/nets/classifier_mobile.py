"""Light-weight classifiers: MobileNet v1 (depth-wise separable convolutions) and MobileNet v2
(inverted residuals with linear bottlenecks).

Both scale every width by ``width`` (rounded to multiples of 8), use only padded strided
convolutions (any input size works) and end with global average pooling, dropout and one
linear layer. 2D, 3 -> 1000 classes: mobilenet_v1 4,231,976 parameters (the usual layout
with batch norm after both parts of every separable convolution), mobilenet_v2 3,504,872
(torchvision's). See :mod:`medseg.nets.classifier_base` for the shared interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from medseg.nets.blocks import ConvNormAct, SeparableConv
from medseg.nets.classifier_base import Classifier, linear_head, make_divisible
from medseg.nets.ops import NormName

#: MobileNet v1 after the stem: (output channels, stride) of each separable convolution.
MOBILENET_V1_LAYERS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)

#: MobileNet v2 after the stem: (expansion t, channels c, repeats n, first stride s).
MOBILENET_V2_LAYERS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv_norm_relu6(
    spatial_dims: int, in_channels: int, out_channels: int, *, relu6: bool = True, **conv: Any
) -> nn.Module:
    """Convolution (no bias; 1x1 unless ``kernel_size`` is given) -> norm (-> ReLU6):
    MobileNet v2's unit. ``conv``: ``kernel_size``, ``stride``, ``groups``, ``norm``."""
    conv = {"kernel_size": 1, **conv, "act": "relu6" if relu6 else "none", "bias": False}
    return ConvNormAct(spatial_dims, in_channels, out_channels, **conv)


class MobileNetV1(Classifier):
    """MobileNet v1 (Howard et al. 2017): a 3x3 stride-2 convolution, then 13 depth-wise
    separable convolutions (:class:`medseg.nets.blocks.SeparableConv`, norm + ReLU after both
    parts), global average pooling, dropout, linear.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: image channels.
        out_channels: classes (logits), or regression targets (linear output).
        width: width multiplier ``alpha`` (0.25, 0.5, 0.75, 1.0 in the paper).
        norm: ``batch`` (the original), ``group`` or ``instance``.
        dropout: dropout before the linear layer.

    Example:
        >>> import torch
        >>> net = MobileNetV1(3, 1, 2, width=0.25)
        >>> net(torch.zeros(2, 1, 16, 16, 16)).shape, net.num_features
        (torch.Size([2, 2]), 256)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        width: float = 1.0,
        norm: NormName = "batch",
        dropout: float = 0.0,
    ) -> None:
        channels = make_divisible(32 * width)
        layers: list[nn.Module] = [
            ConvNormAct(spatial_dims, in_channels, channels, stride=2, norm=norm, act="relu")
        ]
        for features, stride in MOBILENET_V1_LAYERS:
            out = make_divisible(features * width)
            layers.append(
                SeparableConv(spatial_dims, channels, out, stride=stride, norm=norm, act="relu")
            )
            channels = out
        super().__init__(
            spatial_dims,
            nn.Sequential(*layers),
            linear_head(channels, out_channels, dropout=dropout),
            channels,
        )


class InvertedResidual(nn.Module):
    """MobileNet v2 block: 1x1 expansion by ``expansion`` (+ norm + ReLU6; skipped for 1),
    3x3 depth-wise convolution (stride; + norm + ReLU6), linear 1x1 projection (+ norm), and
    an identity shortcut when the stride is 1 and the channels are kept.

    Shapes:
        ``(B, in_channels, *spatial) -> (B, out_channels, *spatial / stride)``.

    Example:
        >>> import torch
        >>> InvertedResidual(2, 8, 8, expansion=6)(torch.zeros(1, 8, 5, 5)).shape
        torch.Size([1, 8, 5, 5])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expansion: int = 6,
        norm: NormName = "batch",
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_norm_relu6(spatial_dims, in_channels, hidden, norm=norm))
        layers += [
            _conv_norm_relu6(
                spatial_dims, hidden, hidden, kernel_size=3, stride=stride, groups=hidden, norm=norm
            ),
            _conv_norm_relu6(spatial_dims, hidden, out_channels, norm=norm, relu6=False),
        ]
        self.branch = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch(x)
        return x + out if self.residual else out


class MobileNetV2(Classifier):
    """MobileNet v2 (Sandler et al. 2018): a 3x3 stride-2 convolution, 17 inverted residual
    blocks (:data:`MOBILENET_V2_LAYERS`, expansion 6, linear bottlenecks, ReLU6), a 1x1
    convolution to 1280 channels, global average pooling, dropout, linear.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: image channels.
        out_channels: classes (logits), or regression targets (linear output).
        width: width multiplier (the last convolution keeps 1280 channels below 1.0).
        expansion: expansion factor of the blocks (the first block always uses 1).
        last_features: channels of the last 1x1 convolution (at ``width`` 1).
        norm: ``batch`` (the original), ``group`` or ``instance``.
        dropout: dropout before the linear layer (torchvision's 0.2).

    Example:
        >>> import torch
        >>> net = MobileNetV2(2, 3, 5, width=0.25, last_features=64)
        >>> net(torch.zeros(2, 3, 32, 32)).shape, net.features(torch.zeros(2, 3, 32, 32)).shape
        (torch.Size([2, 5]), torch.Size([2, 64, 1, 1]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        width: float = 1.0,
        expansion: int = 6,
        last_features: int = 1280,
        norm: NormName = "batch",
        dropout: float = 0.2,
    ) -> None:
        channels = make_divisible(32 * width)
        layers: list[nn.Module] = [
            _conv_norm_relu6(
                spatial_dims, in_channels, channels, kernel_size=3, stride=2, norm=norm
            )
        ]
        for t, c, n, s in _layers(expansion):
            out = make_divisible(c * width)
            for i in range(n):
                layers.append(
                    InvertedResidual(
                        spatial_dims,
                        channels,
                        out,
                        stride=s if i == 0 else 1,
                        expansion=t,
                        norm=norm,
                    )
                )
                channels = out
        last = make_divisible(last_features * max(1.0, width))
        layers.append(_conv_norm_relu6(spatial_dims, channels, last, norm=norm))
        super().__init__(
            spatial_dims,
            nn.Sequential(*layers),
            linear_head(last, out_channels, dropout=dropout),
            last,
        )


def _layers(expansion: int) -> Sequence[tuple[int, int, int, int]]:
    return [(1 if t == 1 else expansion, c, n, s) for t, c, n, s in MOBILENET_V2_LAYERS]
