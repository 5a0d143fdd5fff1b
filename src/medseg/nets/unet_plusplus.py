"""U-Net++ (Zhou et al. 2018): nested, dense skip pathways with deep supervision.

Node ``X[i][j]`` (level ``i``, column ``j``) sees all earlier nodes of its level and the
up-sampled node below-left: ``X[i][j] = stage([X[i][0], ..., X[i][j-1], up(X[i+1][j-1])])``;
``X[i][0]`` is the encoder. The full-resolution nodes ``X[0][1..L]`` each carry a head when
``deep_supervision`` is on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.nets.blocks import ConvStage, pointwise_conv
from medseg.nets.encoder_decoder import DownsampleMode, UNetEncoder
from medseg.nets.ops import ActName, NormName
from medseg.nets.sampling import Upsample, UpsampleMode
from medseg.nets.shapes import PerStage, check_divisible


class UNetPlusPlus(nn.Module):
    """U-Net++: ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)`` logits.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: classes ``K``.
        features: channels per level, default ``(32, 64, 128, 256, 320)``.
        kernel_sizes: per level (per axis) kernel sizes.
        strides: per level (per axis) strides, the first all 1.
        blocks_per_stage: conv blocks per node.
        residual: residual blocks.
        downsample: ``conv``, ``maxpool`` or ``avgpool``.
        upsample: ``transpose`` or ``interpolate``; each node has its own up-sampling.
        norm: normalisation.
        act: activation.
        dropout: channel-dropout probability.
        deep_supervision: a head on every full-resolution node ``X[0][1..L]``; in training
            mode ``forward`` returns their ``L`` logits, the deepest column ``X[0][L]`` first
            (all at full resolution; the paper averages them: use equal weights in
            :class:`medseg.losses.DeepSupervisionLoss`). In eval mode: ``X[0][L]`` only.

    Example:
        >>> net = UNetPlusPlus(2, 1, 2, features=(4, 8, 16), deep_supervision=True)
        >>> [o.shape[1:] for o in net(torch.zeros(1, 1, 8, 8))]
        [torch.Size([2, 8, 8]), torch.Size([2, 8, 8])]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] | None = None,
        kernel_sizes: PerStage = 3,
        strides: PerStage | None = None,
        blocks_per_stage: int = 2,
        residual: bool = False,
        downsample: DownsampleMode = "conv",
        upsample: UpsampleMode = "transpose",
        norm: NormName = "instance",
        act: ActName = "leakyrelu",
        dropout: float = 0.0,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        block = {"residual": residual, "norm": norm, "act": act, "dropout": dropout}
        self.encoder = UNetEncoder(
            spatial_dims,
            in_channels,
            features=features,
            kernel_sizes=kernel_sizes,
            strides=strides,
            blocks_per_stage=blocks_per_stage,
            downsample=downsample,
            **block,
        )
        feats, strides_, kernels = (
            self.encoder.features,
            self.encoder.strides,
            self.encoder.kernel_sizes,
        )
        self.depth = len(feats) - 1  # L
        self.ups, self.nodes = nn.ModuleDict(), nn.ModuleDict()
        for j in range(1, self.depth + 1):
            for i in range(self.depth - j + 1):
                self.ups[f"{i}_{j}"] = Upsample(
                    spatial_dims, feats[i + 1], feats[i], scale=strides_[i + 1], mode=upsample
                )
                self.nodes[f"{i}_{j}"] = ConvStage(
                    spatial_dims,
                    (j + 1) * feats[i],
                    feats[i],
                    num_blocks=blocks_per_stage,
                    kernel_size=kernels[i],
                    **block,
                )
        self.deep_supervision = deep_supervision
        num_heads = self.depth if deep_supervision else 1
        self.heads = nn.ModuleList(
            pointwise_conv(spatial_dims, feats[0], out_channels) for _ in range(num_heads)
        )

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """Per-axis factor the input spatial size must be a multiple of."""
        return self.encoder.required_divisor

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Logits ``(B, K, *spatial)``; a list in training mode with deep supervision."""
        check_divisible(x.shape[2:], self.required_divisor)
        grid = [[skip] for skip in self.encoder(x)]  # grid[i][j] = X[i][j]
        for j in range(1, self.depth + 1):
            for i in range(self.depth - j + 1):
                up = self.ups[f"{i}_{j}"](grid[i + 1][j - 1], size=grid[i][0].shape[2:])
                grid[i].append(self.nodes[f"{i}_{j}"](torch.cat([*grid[i][:j], up], dim=1)))
        if self.training and self.deep_supervision:
            columns = grid[0][1:][::-1]  # X[0][L], ..., X[0][1]
            return [head(column) for head, column in zip(self.heads, columns, strict=True)]
        return self.heads[0](grid[0][self.depth])
