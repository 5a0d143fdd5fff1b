"""Atrous spatial pyramid pooling (Chen et al. 2017, DeepLab v3), the dilated U-Net's
bottleneck: the same features seen at several receptive fields at once."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.nets.blocks import ConvNormAct
from medseg.nets.ops import ActName, NormName


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al., DeepLab v3).

    Parallel branches see the same input at several receptive fields: a 1x1 convolution, one
    3x3 convolution per dilation ``rate``, and an image-level branch (global mean -> 1x1
    conv -> act, broadcast back; no norm since it has a single voxel). The branches are
    concatenated and projected back to ``out_channels`` by a 1x1 conv-norm-act.

    Shapes:
        ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)``.

    Example:
        >>> ASPP(2, 8, 8, rates=(2, 4))(torch.zeros(2, 8, 6, 6)).shape
        torch.Size([2, 8, 6, 6])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        rates: Sequence[int] = (2, 4, 6),
        norm: NormName = "instance",
        act: ActName = "leakyrelu",
    ) -> None:
        super().__init__()
        branches = [
            ConvNormAct(spatial_dims, in_channels, out_channels, kernel_size=1, norm=norm, act=act)
        ]
        branches += [
            ConvNormAct(spatial_dims, in_channels, out_channels, dilation=r, norm=norm, act=act)
            for r in rates
        ]
        self.branches = nn.ModuleList(branches)
        self.image_pool = ConvNormAct(
            spatial_dims, in_channels, out_channels, kernel_size=1, norm="none", act=act
        )
        total = out_channels * (len(branches) + 1)
        self.project = ConvNormAct(
            spatial_dims, total, out_channels, kernel_size=1, norm=norm, act=act
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.image_pool(x.mean(dim=tuple(range(2, x.ndim)), keepdim=True))
        outputs = [branch(x) for branch in self.branches] + [pooled.expand(-1, -1, *x.shape[2:])]
        return self.project(torch.cat(outputs, dim=1))
