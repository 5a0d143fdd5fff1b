"""SegNet (Badrinarayanan et al. 2017): an encoder-decoder without skip concatenation that
up-samples by max-unpooling with the encoder's pooling indices.

Only the argmax positions travel from encoder to decoder (one index per pooled voxel instead
of a full feature map), which puts the decoder's sparse maps back where the strongest
activations were; the following convolutions densify them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from medseg.nets.blocks import ConvStage, pointwise_conv
from medseg.nets.ops import ActName, NormName
from medseg.nets.sampling import max_pool_with_indices, max_unpool
from medseg.nets.shapes import PerStage, expand_per_stage


class SegNet(nn.Module):
    """SegNet-style network: ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)``.

    Encoder stage ``i``: conv blocks to ``features[i]``, then max-pool by ``pool_sizes[i]``
    keeping the indices. Decoder (mirror): max-unpool with those indices to the exact
    pre-pool size, then conv blocks down to ``features[i - 1]`` (``features[0]`` last), and a
    1x1 head.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: classes ``K``.
        features: channels per stage.
        pool_sizes: per stage (per axis) pooling factors.
        blocks_per_stage: conv blocks per encoder/decoder stage.
        norm: normalisation (SegNet: batch norm).
        act: activation (SegNet: ReLU).

    Odd sizes are handled (pooling floors, unpooling restores the recorded size); each axis
    must be at least ``min_size`` (the product of its pooling factors).

    Example:
        >>> import torch
        >>> SegNet(2, 1, 2, features=(4, 8))(torch.zeros(1, 1, 9, 7)).shape
        torch.Size([1, 2, 9, 7])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] = (32, 64, 128, 256),
        pool_sizes: PerStage = 2,
        blocks_per_stage: int = 2,
        norm: NormName = "batch",
        act: ActName = "relu",
    ) -> None:
        super().__init__()
        feats = tuple(features)
        self.pool_sizes = expand_per_stage(pool_sizes, len(feats), spatial_dims, name="pool_sizes")
        self.min_size = tuple(math.prod(axis) for axis in zip(*self.pool_sizes, strict=True))
        opts = {"num_blocks": blocks_per_stage, "norm": norm, "act": act}
        ins = (in_channels, *feats[:-1])
        self.encoder = nn.ModuleList(
            ConvStage(spatial_dims, c_in, c_out, **opts)
            for c_in, c_out in zip(ins, feats, strict=True)
        )
        outs = (feats[0], *feats[:-1])
        self.decoder = nn.ModuleList(
            ConvStage(spatial_dims, c_in, c_out, **opts)
            for c_in, c_out in zip(reversed(feats), reversed(outs), strict=True)
        )
        self.head = pointwise_conv(spatial_dims, feats[0], out_channels)
        self.spatial_dims = spatial_dims

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """Every size is accepted: ``(1, ..., 1)`` (at least :attr:`min_size` per axis)."""
        return (1,) * self.spatial_dims

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K, *spatial)``."""
        size = tuple(x.shape[2:])
        if any(n < m for n, m in zip(size, self.min_size, strict=True)):
            raise ValueError(
                f"input spatial shape {size} is too small for SegNet: "
                f"needs at least {self.min_size}"
            )
        trail = []  # (indices, pre-pool size) per stage
        for stage, pool in zip(self.encoder, self.pool_sizes, strict=True):
            x = stage(x)
            shape = x.shape[2:]
            x, indices = max_pool_with_indices(x, pool)
            trail.append((indices, shape))
        for stage, (indices, shape) in zip(self.decoder, reversed(trail), strict=True):
            x = stage(max_unpool(x, indices, shape))
        return self.head(x)
