"""Fully convolutional network from LeNet (Long et al. 2015; the seeds' ``FCLeNet``).

LeNet's fully connected layers become convolutions: ``fc1`` (over the 5x5 maps left after two
conv + pool stages) becomes a 5x5 convolution, ``fc2`` and ``fc3`` become 1x1 convolutions.
The network then slides over an image of any size and gives a coarse class map (1/4 of the
input), interpolated back to the input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from medseg.nets.blocks import ConvNormAct, pointwise_conv
from medseg.nets.ops import ActName, NormName, interpolation_mode, max_pool_type


class FCN(nn.Module):
    """Fully convolutional LeNet: ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)``.

    ``conv5 -> pool2 -> conv5 -> pool2 -> conv5 (fc1) -> conv1 (fc2) -> conv1 (fc3)``, then
    (multi-)linear interpolation to the input size.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: classes ``K``.
        channels: widths of conv1, conv2, fc1, fc2; LeNet's are ``(6, 16, 120, 84)``.
        padding: ``same`` (zero padding, every input size works and the class map is
            aligned with the image) or ``valid`` (LeNet's unpadded convolutions; the input
            must be at least 32 per axis and the map shrinks by the borders).
        norm: normalisation after each convolution (LeNet has none).
        act: activation (LeNet's modern form: ReLU).

    Any input size is accepted (``required_divisor`` is 1); pooling floors odd sizes and the
    final interpolation restores the exact input size.

    Example:
        >>> import torch
        >>> FCN(2, 1, 3)(torch.zeros(1, 1, 37, 30)).shape
        torch.Size([1, 3, 37, 30])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        channels: Sequence[int] = (6, 16, 120, 84),
        padding: Literal["same", "valid"] = "same",
        norm: NormName = "none",
        act: ActName = "relu",
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(
                f"channels must give 4 widths (conv1, conv2, fc1, fc2), got {tuple(channels)}"
            )
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        c1, c2, c3, c4 = channels
        pad = "same" if padding == "same" else 0
        opts = {"kernel_size": 5, "padding": pad, "norm": norm, "act": act}
        pool = max_pool_type(spatial_dims)
        self.features = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, c1, **opts),
            pool(2),
            ConvNormAct(spatial_dims, c1, c2, **opts),
            pool(2),
            ConvNormAct(spatial_dims, c2, c3, **opts),  # was fc1
            ConvNormAct(spatial_dims, c3, c4, kernel_size=1, norm=norm, act=act),  # was fc2
        )
        self.head = pointwise_conv(spatial_dims, c4, out_channels)  # was fc3
        self.padding = padding
        self.spatial_dims = spatial_dims
        self.min_size = 32 if padding == "valid" else 4

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """Every size is accepted: ``(1, ..., 1)`` (at least :attr:`min_size` per axis)."""
        return (1,) * self.spatial_dims

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K, *spatial)`` at the input size."""
        size = tuple(x.shape[2:])
        if any(n < self.min_size for n in size):
            raise ValueError(
                f"input spatial shape {size} is too small for FCN with {self.padding!r} padding: "
                f"needs at least {self.min_size} per axis"
            )
        coarse = self.head(self.features(x))
        return F.interpolate(
            coarse, size=size, mode=interpolation_mode(self.spatial_dims), align_corners=False
        )
