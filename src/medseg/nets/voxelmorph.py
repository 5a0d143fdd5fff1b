"""VoxelMorph's network (Balakrishnan et al., IEEE TMI 2019): a U-Net on the stacked
moving/fixed pair that outputs a dense displacement (or velocity) field.

As ``voxelmorph``'s ``VxmDense`` U-Net: 3x3 convolutions with LeakyReLU(0.2), no
normalisation; the encoder halves the resolution after each of its ``features`` levels (max
pooling), the decoder convolves, up-samples (nearest) and concatenates the skip at each
level (``decoder_features``), then ``final_features`` convolutions at full resolution and a
3x3 convolution to ``spatial_dims`` channels initialised near zero (normal, std 1e-5, bias 0),
so a fresh network predicts an almost zero flow. Defaults are VoxelMorph's
``enc_nf=[16, 32, 32, 32]``, ``dec_nf=[32, 32, 32, 32, 32, 16, 16]``.

Input ``(B, in_channels, *spatial)`` with ``spatial`` divisible by ``2 ** len(features)``
(:attr:`VoxelMorph.required_divisor`); output ``(B, out_channels, *spatial)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.ops import conv_type, max_pool_type
from medseg.nets.shapes import check_divisible

FLOW_INIT_STD = 1e-5


def _conv(spatial_dims: int, cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        conv_type(spatial_dims)(cin, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)
    )


class VoxelMorph(nn.Module):
    """VoxelMorph U-Net: ``(B, 2, *spatial)`` moving + fixed -> ``(B, D, *spatial)`` flow.

    Args:
        spatial_dims: 2 or 3 (1 works too).
        in_channels: stacked input channels (2: moving then fixed, one channel each).
        out_channels: field channels; None or ``spatial_dims`` for a flow (the registry
            passes its own count: any other value builds, but a flow must have
            ``spatial_dims`` channels to be warped).
        features: encoder channels per level (each level halves the resolution after it).
        decoder_features: channels of the up-sampling levels, one per encoder level.
        final_features: channels of the full-resolution convolutions before the flow head.

    Example:
        >>> net = VoxelMorph(2, features=(8, 16), decoder_features=(16, 16), final_features=(8,))
        >>> net(torch.zeros(1, 2, 16, 16)).shape, net.required_divisor
        (torch.Size([1, 2, 16, 16]), (4, 4))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int = 2,
        out_channels: int | None = None,
        *,
        features: Sequence[int] = (16, 32, 32, 32),
        decoder_features: Sequence[int] | None = (32, 32, 32, 32),
        final_features: Sequence[int] = (32, 16, 16),
    ) -> None:
        super().__init__()
        features = tuple(int(f) for f in features)
        decoder = tuple(int(f) for f in (decoder_features or features[::-1]))
        if not features or len(decoder) != len(features):
            raise ConfigError(
                f"voxelmorph: decoder_features {decoder} needs one entry per encoder level "
                f"(features {features})"
            )
        if min(features + decoder + tuple(final_features)) < 1 or in_channels < 1:
            raise ConfigError("voxelmorph: channel counts must be >= 1")
        self.spatial_dims, self.levels = spatial_dims, len(features)
        out_channels = spatial_dims if out_channels is None else int(out_channels)
        self.encoder = nn.ModuleList()
        channels = in_channels
        for f in features:
            self.encoder.append(_conv(spatial_dims, channels, f))
            channels = f
        self.pool = max_pool_type(spatial_dims)(2)
        skips = list(features[::-1])  # the skip joined after each up-sampling
        self.decoder = nn.ModuleList()
        for f, skip in zip(decoder, skips, strict=True):
            self.decoder.append(_conv(spatial_dims, channels, f))
            channels = f + skip
        self.final = nn.Sequential(
            *[
                _conv(spatial_dims, c, f)
                for c, f in zip((channels, *final_features), final_features, strict=False)
            ]
        )
        channels = final_features[-1] if final_features else channels
        self.flow = conv_type(spatial_dims)(channels, out_channels, 3, padding=1)
        nn.init.normal_(self.flow.weight, mean=0.0, std=FLOW_INIT_STD)
        nn.init.zeros_(self.flow.bias)

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """Per-axis factor the input size must be a multiple of: ``2 ** len(features)``."""
        return (2**self.levels,) * self.spatial_dims

    def forward(self, x: Tensor) -> Tensor:
        check_divisible(x.shape[2:], self.required_divisor)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        for block, skip in zip(self.decoder, reversed(skips), strict=True):
            x = F.interpolate(block(x), scale_factor=2.0, mode="nearest")
            x = torch.cat([x, skip], dim=1)
        return self.flow(self.final(x))
