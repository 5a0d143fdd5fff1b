"""Multi-scale two-pathway network (after DeepMedic, Kamnitsas et al. 2017).

A second pathway sees a down-sampled copy of the input, so at the same cost it covers a
``factor`` times larger context; its features are interpolated back to full resolution and
fused with the full-resolution pathway's features by a conv block and a 1x1 head. Each
pathway here is a small U-Net body (encoder + decoder).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.nets.blocks import ConvNormAct, pointwise_conv
from medseg.nets.encoder_decoder import UNetDecoder, UNetEncoder
from medseg.nets.ops import ActName, NormName, as_tuple, avg_pool_type, interpolation_mode
from medseg.nets.shapes import PerStage, check_divisible


class MultiScaleUNet(nn.Module):
    """Two U-Net pathways at two scales, fused: ``(B, C_in, *spatial) -> (B, K, *spatial)``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: classes ``K``.
        features: channels per stage of each pathway.
        strides: per stage (per axis) strides of each pathway, first all 1.
        downsample_factor: per-axis factor of the context pathway's input (average pooling).
        blocks_per_stage: conv blocks per stage.
        norm: normalisation.
        act: activation.

    Raises:
        ValueError: (in ``forward``) when the input size is not a multiple of
            :attr:`required_divisor` = ``downsample_factor * prod(strides)`` per axis.

    Example:
        >>> net = MultiScaleUNet(2, 1, 2, features=(4, 8))
        >>> net.required_divisor, net(torch.zeros(1, 1, 8, 12)).shape
        ((4, 4), torch.Size([1, 2, 8, 12]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] = (32, 64, 128, 256),
        strides: PerStage | None = None,
        downsample_factor: int | Sequence[int] = 2,
        blocks_per_stage: int = 2,
        norm: NormName = "instance",
        act: ActName = "leakyrelu",
    ) -> None:
        super().__init__()
        opts = {
            "features": features,
            "strides": strides,
            "blocks_per_stage": blocks_per_stage,
            "norm": norm,
            "act": act,
        }
        self.factor = as_tuple(downsample_factor, spatial_dims, name="downsample_factor")
        self.pool = avg_pool_type(spatial_dims)(self.factor, stride=self.factor)
        self.local_encoder = UNetEncoder(spatial_dims, in_channels, **opts)
        self.local_decoder = UNetDecoder(spatial_dims, self.local_encoder, norm=norm, act=act)
        self.context_encoder = UNetEncoder(spatial_dims, in_channels, **opts)
        self.context_decoder = UNetDecoder(spatial_dims, self.context_encoder, norm=norm, act=act)
        width = self.local_encoder.features[0]
        self.fuse = ConvNormAct(spatial_dims, 2 * width, width, norm=norm, act=act)
        self.head = pointwise_conv(spatial_dims, width, out_channels)
        self.interpolation = interpolation_mode(spatial_dims)

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """Per-axis factor the input spatial size must be a multiple of."""
        return tuple(
            f * d for f, d in zip(self.factor, self.local_encoder.required_divisor, strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K, *spatial)``."""
        check_divisible(x.shape[2:], self.required_divisor)
        local = self.local_decoder(self.local_encoder(x))[0]
        context = self.context_decoder(self.context_encoder(self.pool(x)))[0]
        context = F.interpolate(
            context, size=x.shape[2:], mode=self.interpolation, align_corners=False
        )
        return self.head(self.fuse(torch.cat([local, context], dim=1)))
