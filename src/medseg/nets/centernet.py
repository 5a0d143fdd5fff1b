"""CenterNet (Zhou et al. 2019, "Objects as Points") on the medseg U-Net decoder, N-D.

The backbone is a :class:`~medseg.nets.unet.UNet` (its encoder and decoder; its 1x1 output
head is left out). Decoder level ``output_level`` (0: full resolution; level ``i`` is down-
sampled by the product of the first ``i + 1`` strides) feeds two heads, each a 3x3
convolution + ReLU + 1x1 convolution as in CenterNet:

* ``heatmap``: one centre heatmap per class (logits; the bias starts at -2.19, so every voxel
  starts at probability 0.1 and the focal loss is stable from the first step);
* ``size``: ``2 * spatial_dims`` channels, the distances (input voxels) from the centre
  voxel's position to the box's low corner and to its high corner along each axis.

CenterNet also regresses a sub-cell offset at output strides > 1; here the two distances are
measured from the peak cell's own position, so they absorb that offset and the decoded box
needs no third head (:mod:`medseg.detect.centernet`).

:func:`watershed_unet` is the instance head of the watershed route: a plain U-Net with two
outputs (foreground logit and distance-map regression).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from medseg.nets.ops import conv_type
from medseg.nets.shapes import check_divisible
from medseg.nets.unet import UNet


def _head(spatial_dims: int, channels: int, hidden: int, out: int) -> nn.Sequential:
    conv = conv_type(spatial_dims)
    return nn.Sequential(
        conv(channels, hidden, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        conv(hidden, out, kernel_size=1),
    )


#: CenterNet's heatmap-bias initial value: ``-log((1 - 0.1) / 0.1)``, so every voxel starts
#: at probability 0.1.
HEATMAP_BIAS = -2.19


class CenterNet(nn.Module):
    """``(B, in_channels, *spatial)`` -> ``{"heatmap": (B, K, *out), "size": (B, 2D, *out)}``
    with ``out = spatial / stride``.

    Args:
        spatial_dims: 2 or 3 (1 works too).
        in_channels: image channels.
        num_classes: object classes ``K`` (heatmap channels).
        features: U-Net channels per stage (default ``(16, 32, 64, 128)``).
        output_level: decoder level the heads read (0: full resolution).
        head_channels: hidden channels of each head (default: the level's features).
        **unet_options: further :class:`~medseg.nets.unet.UNet` options (``strides``,
            ``norm``, ``blocks_per_stage``, ...); ``deep_supervision`` is not allowed.

    Example:
        >>> import torch
        >>> net = CenterNet(2, 1, 3, features=(8, 16, 32), output_level=1)
        >>> out = net(torch.zeros(1, 1, 32, 32))
        >>> tuple(out["heatmap"].shape), tuple(out["size"].shape), net.stride
        ((1, 3, 16, 16), (1, 4, 16, 16), (2, 2))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        *,
        features: Sequence[int] = (16, 32, 64, 128),
        output_level: int = 0,
        head_channels: int | None = None,
        **unet_options: Any,
    ) -> None:
        super().__init__()
        if unet_options.get("deep_supervision"):
            raise ValueError("CenterNet reads one decoder level; deep_supervision is not used")
        if not 0 <= output_level < len(features) - 1:
            raise ValueError(
                f"output_level {output_level} is not a decoder level (0..{len(features) - 2})"
            )
        unet = UNet(spatial_dims, in_channels, 1, features=features, **unet_options)
        self.encoder, self.decoder = unet.encoder, unet.decoder  # the U-Net without its head
        self.aspp = unet.aspp
        self.spatial_dims, self.num_classes, self.output_level = (
            spatial_dims,
            num_classes,
            output_level,
        )
        channels = self.decoder.features[output_level]
        hidden = head_channels or channels
        self.heatmap = _head(spatial_dims, channels, hidden, num_classes)
        nn.init.constant_(self.heatmap[-1].bias, HEATMAP_BIAS)
        self.size = _head(spatial_dims, channels, hidden, 2 * spatial_dims)

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """Per-axis factor the input size must be a multiple of."""
        return self.encoder.required_divisor

    @property
    def stride(self) -> tuple[int, ...]:
        """Per-axis down-sampling of the heads' outputs."""
        strides = self.encoder.strides[: self.output_level + 1]
        return tuple(math.prod(s[d] for s in strides) for d in range(self.spatial_dims))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        check_divisible(x.shape[2:], self.required_divisor)
        skips = self.encoder(x)
        if self.aspp is not None:
            skips = [*skips[:-1], self.aspp(skips[-1])]
        feature = self.decoder(skips)[self.output_level]
        return {"heatmap": self.heatmap(feature), "size": self.size(feature)}


def watershed_unet(
    spatial_dims: int,
    in_channels: int,
    *,
    features: Sequence[int] = (16, 32, 64, 128),
    **unet_options: Any,
) -> UNet:
    """The watershed route's network: a U-Net with two outputs, channel 0 the foreground
    logit, channel 1 the (normalised, 0..1) distance-to-boundary regression (logit; the
    trainer applies a sigmoid).

    Example:
        >>> import torch
        >>> watershed_unet(2, 1, features=(8, 16))(torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 2, 16, 16])
    """
    return UNet(spatial_dims, in_channels, 2, features=features, **unet_options)
