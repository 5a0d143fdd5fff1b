"""HighRes3DNet (Li et al. 2017): a segmentation network that never down-samples.

"On the compactness, efficiency, and representation of 3D convolutional networks: brain
parcellation as a pretext task" (IPMI 2017). A 3x3x3 convolution (16 channels), then three
groups of three pre-activation residual units (``norm -> act -> conv -> norm -> act -> conv``,
3x3x3) with 16, 32 and 64 channels and dilations 1, 2 and 4, then a 1x1x1 convolution (80
channels in the paper) and a 1x1x1 classifier. Every feature map keeps the input resolution,
so there is no divisibility constraint, and the dilations grow the receptive field to 87
voxels per axis with ~0.8 M parameters in 3D. Where a group widens the channels the residual
shortcut pads the extra channels with zeros, as in the paper (no projection weights).

N-dimensional through ``spatial_dims`` (2D: 3x3 kernels, the same schedule).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.ops import ActName, NormName, act_layer, conv_type, dropout_type, norm_layer


class PreActResidualUnit(nn.Module):
    """``y = x' + conv(act(norm(conv(act(norm(x))))))``, dilated 3^d convolutions; ``x'`` is
    ``x`` with zero channels appended when the unit widens the features.

    Shapes:
        ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        dilation: int,
        norm: NormName,
        act: ActName,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ConfigError(
                f"HighRes3DNet channels must not shrink: {in_channels} -> {out_channels}"
            )
        conv = conv_type(spatial_dims)
        layers: list[nn.Module] = []
        for cin in (in_channels, out_channels):
            layers += [
                norm_layer(norm, spatial_dims, cin),
                act_layer(act),
                conv(cin, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
            ]
        if hasattr(layers[1], "inplace"):  # with norm "none" it would overwrite the shortcut
            layers[1].inplace = False
        if dropout > 0:
            layers.insert(3, dropout_type(spatial_dims)(dropout))
        self.body = nn.Sequential(*layers)
        self.extra = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        if self.extra:  # zero-pad the channel axis (dim 1): pad pairs run from the last axis
            shortcut = F.pad(x, (0, 0) * (x.dim() - 2) + (0, self.extra))
        return shortcut + self.body(x)


class HighRes3DNet(nn.Module):
    """HighRes3DNet: ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)`` logits at
    full resolution throughout.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: classes ``K``.
        channels: widths of the three residual groups (the first convolution has the first).
        dilations: dilation of each group.
        units_per_group: residual units per group (the paper: 3).
        head_channels: channels of the 1x1 layer before the classifier (the paper: 80).
        norm: ``batch`` (the paper) | ``instance`` | ``group`` | ``none``.
        act: ``relu`` (the paper) | ``leakyrelu`` | ...
        dropout: channel dropout inside every residual unit, and before the classifier (the
            paper's Monte-Carlo "HC-dropout" variant uses 0.5 there).

    Raises:
        ConfigError: mismatched ``channels``/``dilations`` lengths, shrinking channels,
            fewer than one unit per group.

    Example:
        >>> import torch
        >>> net = HighRes3DNet(3, 1, 4, channels=(4, 8, 8), head_channels=8)
        >>> net(torch.zeros(1, 1, 9, 10, 11)).shape
        torch.Size([1, 4, 9, 10, 11])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        channels: Sequence[int] = (16, 32, 64),
        dilations: Sequence[int] = (1, 2, 4),
        units_per_group: int = 3,
        head_channels: int = 80,
        norm: NormName = "batch",
        act: ActName = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels, dilations = [int(c) for c in channels], [int(d) for d in dilations]
        if len(channels) != len(dilations) or not channels:
            raise ConfigError(
                f"HighRes3DNet needs one dilation per channel group, got channels {channels} "
                f"and dilations {dilations}"
            )
        if units_per_group < 1 or min(channels) < 1 or min(dilations) < 1:
            raise ConfigError(
                "HighRes3DNet needs units_per_group, channels and dilations of at least 1"
            )
        conv = conv_type(spatial_dims)
        self.stem = nn.Sequential(
            conv(in_channels, channels[0], 3, padding=1, bias=False),
            norm_layer(norm, spatial_dims, channels[0]),
            act_layer(act),
        )
        units: list[nn.Module] = []
        width = channels[0]
        for group_width, dilation in zip(channels, dilations, strict=True):
            for _ in range(units_per_group):
                units.append(
                    PreActResidualUnit(
                        spatial_dims,
                        width,
                        group_width,
                        dilation=dilation,
                        norm=norm,
                        act=act,
                        dropout=dropout,
                    )
                )
                width = group_width
        self.units = nn.Sequential(*units)
        head: list[nn.Module] = [
            norm_layer(norm, spatial_dims, width),
            act_layer(act),
            conv(width, head_channels, 1),
            norm_layer(norm, spatial_dims, head_channels),
            act_layer(act),
        ]
        if dropout > 0:
            head.append(dropout_type(spatial_dims)(dropout))
        self.head = nn.Sequential(*head)
        self.classifier = conv(head_channels, out_channels, 1)
        self.spatial_dims = spatial_dims
        self.receptive_field = 3 + 2 * units_per_group * 2 * sum(dilations)

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """No down-sampling: any input size works."""
        return (1,) * self.spatial_dims

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K, *spatial)`` (the input's size)."""
        return self.classifier(self.head(self.units(self.stem(x))))
