"""Changing resolution: pooling, learnable up-sampling and the three unpoolings.

Down-sampling is a strided convolution (:class:`medseg.nets.blocks.ConvNormAct`) or a
pooling layer (:func:`medseg.nets.ops.max_pool_type`, :func:`~medseg.nets.ops.avg_pool_type`).
Up-sampling is learnable (:class:`Upsample`: transposed convolution, or 1x1 convolution +
interpolation) or fixed (:func:`unpool_nearest`, :func:`unpool_bed_of_nails`,
:func:`max_unpool` with the indices of :func:`max_pool_with_indices`). All functions work on
``(B, C, *spatial)`` for 1, 2 or 3 spatial axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.nets.blocks import pointwise_conv
from medseg.nets.ops import as_tuple, conv_transpose_type, interpolation_mode, max_pool_type

UpsampleMode = Literal["transpose", "interpolate"]
UnpoolMode = Literal["nearest", "bed_of_nails"]


class Upsample(nn.Module):
    """Learnable up-sampling by a per-axis ``scale``, changing the channels.

    ``mode="transpose"``: a transposed convolution with kernel = stride = ``scale`` (each
    input voxel paints a learnt ``scale``-sized patch; no checkerboard overlap).
    ``mode="interpolate"``: a 1x1 convolution then (multi-)linear interpolation, as in
    Myronenko's decoder; when ``size`` is given it interpolates to exactly that size, which
    also serves odd sizes.

    Shapes:
        ``(B, in_channels, *spatial) -> (B, out_channels, *spatial * scale)`` (or ``size``).

    Example:
        >>> up = Upsample(3, 8, 4, scale=(1, 2, 2))
        >>> up(torch.zeros(1, 8, 2, 3, 3)).shape
        torch.Size([1, 4, 2, 6, 6])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        scale: int | Sequence[int] = 2,
        mode: UpsampleMode = "transpose",
    ) -> None:
        super().__init__()
        self.scale = as_tuple(scale, spatial_dims, name="scale")
        self.mode = mode
        self.interpolation = interpolation_mode(spatial_dims)
        if mode == "transpose":
            self.conv = conv_transpose_type(spatial_dims)(
                in_channels, out_channels, kernel_size=self.scale, stride=self.scale
            )
        elif mode == "interpolate":
            self.conv = (
                nn.Identity()
                if in_channels == out_channels
                else pointwise_conv(spatial_dims, in_channels, out_channels, bias=False)
            )
        else:
            raise ValueError(f"upsample mode must be 'transpose' or 'interpolate', got {mode!r}")

    def forward(self, x: Tensor, size: Sequence[int] | None = None) -> Tensor:
        if self.mode == "transpose":
            return self.conv(x)
        x = self.conv(x)
        if size is None:
            if all(s == 1 for s in self.scale):
                return x
            size = [n * s for n, s in zip(x.shape[2:], self.scale, strict=True)]
        return F.interpolate(x, size=tuple(size), mode=self.interpolation, align_corners=False)


def unpool_nearest(x: Tensor, scale: int | Sequence[int]) -> Tensor:
    """Nearest-neighbour unpooling: each value is repeated ``scale`` times along each axis.

    Example:
        >>> unpool_nearest(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), 2)[0, 0]
        tensor([[1., 1., 2., 2.],
                [1., 1., 2., 2.],
                [3., 3., 4., 4.],
                [3., 3., 4., 4.]])
    """
    for axis, s in enumerate(as_tuple(scale, x.ndim - 2, name="scale")):
        x = torch.repeat_interleave(x, s, dim=axis + 2)
    return x


def unpool_bed_of_nails(x: Tensor, scale: int | Sequence[int]) -> Tensor:
    """ "Bed of nails" unpooling: each value goes to the first corner of its ``scale`` block,
    zeros elsewhere.

    Example:
        >>> unpool_bed_of_nails(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), 2)[0, 0]
        tensor([[1., 0., 2., 0.],
                [0., 0., 0., 0.],
                [3., 0., 4., 0.],
                [0., 0., 0., 0.]])
    """
    scales = as_tuple(scale, x.ndim - 2, name="scale")
    out = x.new_zeros(*x.shape[:2], *(n * s for n, s in zip(x.shape[2:], scales, strict=True)))
    out[(slice(None), slice(None), *(slice(None, None, s) for s in scales))] = x
    return out


def max_pool_with_indices(x: Tensor, kernel_size: int | Sequence[int]) -> tuple[Tensor, Tensor]:
    """Max pooling (stride = kernel, floor) that also returns where each maximum was.

    Returns:
        ``(pooled, indices)``; ``indices`` are flat positions within each ``(b, c)`` plane of
        ``x``, as :func:`max_unpool` expects.
    """
    kernel = as_tuple(kernel_size, x.ndim - 2, name="kernel_size")
    pool = max_pool_type(x.ndim - 2)(kernel, stride=kernel, return_indices=True)
    return pool(x)


def max_unpool(x: Tensor, indices: Tensor, output_size: Sequence[int]) -> Tensor:
    """Max-unpooling (SegNet): put each value back where its maximum was, zeros elsewhere.

    One N-D implementation (a scatter into the flattened planes) for all dimensions; it is
    exported to ONNX as ``ScatterElements``. ``output_size`` is the spatial size before
    pooling, so odd sizes round-trip.

    Args:
        x: ``(B, C, *pooled)`` values.
        indices: ``(B, C, *pooled)`` from :func:`max_pool_with_indices`.
        output_size: spatial size of the un-pooled output.

    Returns:
        ``(B, C, *output_size)``.

    Example:
        >>> x = torch.tensor([[[[1.0, 5.0], [7.0, 2.0]]]])
        >>> pooled, idx = max_pool_with_indices(x, 2)
        >>> max_unpool(pooled, idx, (2, 2))[0, 0]
        tensor([[0., 0.],
                [7., 0.]])
    """
    out = x.new_zeros(x.shape[0], x.shape[1], int(torch.Size(output_size).numel()))
    out = out.scatter(2, indices.flatten(2), x.flatten(2))
    return out.reshape(*x.shape[:2], *output_size)


class Unpool(nn.Module):
    """Fixed (parameter-free) unpooling by ``scale``: ``nearest`` or ``bed_of_nails``.

    Max-unpooling needs the pooling indices and is the function :func:`max_unpool`.
    """

    def __init__(
        self, spatial_dims: int, *, scale: int | Sequence[int] = 2, mode: UnpoolMode = "nearest"
    ) -> None:
        super().__init__()
        if mode not in ("nearest", "bed_of_nails"):
            raise ValueError(f"unpool mode must be 'nearest' or 'bed_of_nails', got {mode!r}")
        self.scale = as_tuple(scale, spatial_dims, name="scale")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "nearest":
            return unpool_nearest(x, self.scale)
        return unpool_bed_of_nails(x, self.scale)
