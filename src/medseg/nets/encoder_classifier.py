"""A classifier on a U-Net encoder, so a segmentation model's encoder can be reused.

Medical datasets are small; a U-Net trained to segment the same anatomy has already learned
its features. ``UNetEncoderClassifier`` is that encoder (same options, same parameter names
under ``backbone.``) followed by global average pooling and a linear head, so
``load_pretrained`` can copy a medseg segmentation checkpoint's ``encoder.*`` weights into it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.nets.encoder_decoder import DownsampleMode, UNetEncoder
from medseg.nets.ops import ActName, NormName
from medseg.nets.shapes import PerStage


class UNetEncoderClassifier(nn.Module):
    """U-Net encoder + global average pooling + linear: ``(B, C, *spatial) -> (B, K)`` logits.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: classes ``K`` (or regression targets).
        features, kernel_sizes, strides, blocks_per_stage, residual, downsample, norm, act:
            as :class:`medseg.nets.UNet` (use the segmentation plan's values to load its
            encoder). Default features ``(16, 32, 64, 128, 256)`` and batch norm (a
            classifier learns several times faster with it than with instance norm, which
            removes the intensity contrast a class may hinge on).
        dropout: dropout before the linear head.

    Example:
        >>> net = UNetEncoderClassifier(2, 1, 3, features=(8, 16, 32))
        >>> net(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] = (16, 32, 64, 128, 256),
        kernel_sizes: PerStage = 3,
        strides: PerStage | None = None,
        blocks_per_stage: int | Sequence[int] = 2,
        residual: bool = False,
        downsample: DownsampleMode = "conv",
        norm: NormName = "batch",
        act: ActName = "leakyrelu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.backbone = UNetEncoder(
            spatial_dims,
            in_channels,
            features=features,
            kernel_sizes=kernel_sizes,
            strides=strides,
            blocks_per_stage=blocks_per_stage,
            residual=residual,
            downsample=downsample,
            norm=norm,
            act=act,
        )
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(self.backbone.features[-1], out_channels)

    def features(self, x: Tensor) -> Tensor:
        """The last feature map ``(B, F, *spatial')`` (Grad-CAM's default layer)."""
        return self.backbone(x)[-1]

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.flatten(self.features(x).mean(dim=tuple(range(2, 2 + self.spatial_dims))), 1)
        return self.head(self.dropout(pooled))
