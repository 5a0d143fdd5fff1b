"""The ResNet "v2" CNN encoder of TransUNet (R50 of "R50-ViT-B/16"), N-dimensional.

As in the official TransUNet code (``vit_seg_modeling_resnet_skip.py``, from Big Transfer /
timm ``resnetv2_50``): every convolution is weight-standardised (each filter is normalised to
zero mean and unit variance before use, Qiao et al. 2019) and followed by GroupNorm (32
groups); a bottleneck unit is ``relu(gn(proj(x)) + gn3(conv3(relu(gn2(conv2(relu(gn1(
conv1(x)))))))))`` with the stride on the 3x3 convolution. The stem is a 7x7 stride-2
convolution then a 3x3 stride-2 max-pool; three stages of ``block_units`` units (3-4-9 for
R50) give features at 1/2 (stem), 1/4, 1/8 and 1/16 of the input. Unlike the official code,
the max-pool pads by 1, so every feature map is exactly the input size over its stride.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.nets.ops import conv_type, max_pool_type


def group_norm(channels: int, *, groups: int = 32, eps: float = 1e-6) -> nn.GroupNorm:
    """GroupNorm with ``groups`` groups, lowered to the largest divisor of ``channels``.

    Example:
        >>> group_norm(48)
        GroupNorm(24, 48, eps=1e-06, affine=True, bias=True)
    """
    num_groups = max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(num_groups, channels, eps=eps)


class StandardizedConv(nn.Module):
    """Weight-standardised convolution: ``conv(x, (w - mean(w)) / sqrt(var(w) + eps))``, the
    statistics taken per output filter. Bias-free (a GroupNorm always follows).

    Shapes:
        ``(B, in_channels, *spatial) -> (B, out_channels, *spatial / stride)``.

    Example:
        >>> StandardizedConv(3, 2, 4, 3, padding=1)(torch.zeros(1, 2, 4, 4, 4)).shape
        torch.Size([1, 4, 4, 4, 4])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.conv = conv_type(spatial_dims)(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        weight = self.conv.weight
        axes = tuple(range(1, weight.ndim))
        variance, mean = torch.var_mean(weight, dim=axes, keepdim=True, unbiased=False)
        standardized = (weight - mean) / torch.sqrt(variance + self.eps)
        # ConvNd's own forward with another weight: one code path for 1D, 2D and 3D.
        return self.conv._conv_forward(x, standardized, None)


class BottleneckV2(nn.Module):
    """TransUNet's bottleneck unit: 1x1 -> 3x3 (strided) -> 1x1 weight-standardised
    convolutions with GroupNorm, a projection shortcut when the size or width changes.

    Shapes:
        ``(B, in_channels, *spatial) -> (B, out_channels, *spatial / stride)``.

    Example:
        >>> BottleneckV2(2, 8, 16, 4, stride=2)(torch.zeros(1, 8, 8, 8)).shape
        torch.Size([1, 16, 4, 4])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        *,
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = StandardizedConv(spatial_dims, in_channels, mid_channels, 1)
        self.gn1 = group_norm(mid_channels)
        self.conv2 = StandardizedConv(
            spatial_dims, mid_channels, mid_channels, 3, stride=stride, padding=1
        )
        self.gn2 = group_norm(mid_channels)
        self.conv3 = StandardizedConv(spatial_dims, mid_channels, out_channels, 1)
        self.gn3 = group_norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            # The official code normalises the projection per channel (GroupNorm(C, C)); 32
            # groups (same parameters) keep it defined on the 1-voxel maps of small inputs.
            self.shortcut = nn.Sequential(
                StandardizedConv(spatial_dims, in_channels, out_channels, 1, stride=stride),
                group_norm(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.gn1(self.conv1(x)))
        y = self.relu(self.gn2(self.conv2(y)))
        return self.relu(self.shortcut(x) + self.gn3(self.conv3(y)))


class ResNetV2Encoder(nn.Module):
    """Stem + three bottleneck stages: features at strides 2, 4, 8 and 16.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        width: stem width (64 for R50); stage ``i`` has ``width * 2**i`` middle and
            ``4 * width * 2**i`` output channels.
        block_units: bottleneck units per stage (R50: ``(3, 4, 9)``).

    Attributes:
        channels: the channels of the four returned features, ``(width, 4 * width,
            8 * width, 16 * width)``.

    Shapes:
        ``(B, in_channels, *spatial)`` -> four maps ``(B, channels[i], *spatial / 2**(i+1))``,
        highest resolution first; the input must be divisible by 16.

    Example:
        >>> enc = ResNetV2Encoder(2, 1, width=8, block_units=(1, 1, 1))
        >>> [tuple(f.shape[1:]) for f in enc(torch.zeros(1, 1, 32, 32))]
        [(8, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        *,
        width: int = 64,
        block_units: Sequence[int] = (3, 4, 9),
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            StandardizedConv(spatial_dims, in_channels, width, 7, stride=2, padding=3),
            group_norm(width),
            nn.ReLU(inplace=True),
        )
        self.pool = max_pool_type(spatial_dims)(kernel_size=3, stride=2, padding=1)
        stages = []
        in_width = width
        for index, units in enumerate(block_units):
            mid, out = width * 2**index, 4 * width * 2**index
            stride = 1 if index == 0 else 2
            blocks = [BottleneckV2(spatial_dims, in_width, out, mid, stride=stride)]
            blocks += [BottleneckV2(spatial_dims, out, out, mid) for _ in range(units - 1)]
            stages.append(nn.Sequential(*blocks))
            in_width = out
        self.stages = nn.ModuleList(stages)
        self.channels = (width, *(4 * width * 2**i for i in range(len(block_units))))

    def forward(self, x: Tensor) -> list[Tensor]:
        features = [self.stem(x)]
        x = self.pool(features[0])
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
