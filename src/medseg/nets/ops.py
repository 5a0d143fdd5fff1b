"""The one place that maps ``spatial_dims`` to torch layer types.

Every block and network takes ``spatial_dims`` (1, 2 or 3) first and asks this module for its
convolution, pooling, normalisation, activation and dropout layers, so no other module
branches on the dimension. Per-axis settings (kernel sizes, strides, dilations) are tuples of
length ``spatial_dims``; :func:`as_tuple` expands a scalar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

from medseg.errors import ConfigError

NormName = Literal["instance", "batch", "group", "none"]
ActName = Literal["leakyrelu", "relu", "relu6", "elu", "gelu", "none"]

CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_TRANSPOSE: dict[int, type[nn.Module]] = {
    1: nn.ConvTranspose1d,
    2: nn.ConvTranspose2d,
    3: nn.ConvTranspose3d,
}
MAX_POOL: dict[int, type[nn.Module]] = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVG_POOL: dict[int, type[nn.Module]] = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
ADAPTIVE_AVG_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
DROPOUT: dict[int, type[nn.Module]] = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}
BATCH_NORM: dict[int, type[nn.Module]] = {
    1: nn.BatchNorm1d,
    2: nn.BatchNorm2d,
    3: nn.BatchNorm3d,
}
INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}


class InstanceNorm(nn.GroupNorm):
    """Instance normalisation with a learnt per-channel scale and shift, for any dimension.

    Each sample's channel is normalised by its own mean and (biased) variance over the
    spatial axes: the maths of ``nn.InstanceNorm{1,2,3}d(affine=True)``. It is computed by
    ``nn.GroupNorm`` with one channel per group, whose CPU kernel runs forward + backward
    about twice as fast as ``InstanceNorm`` in torch 2.13 (see ``docs/networks.md``).

    Example:
        >>> InstanceNorm(8)
        InstanceNorm(8, 8, eps=1e-05, affine=True, bias=True)
    """

    def __init__(self, channels: int, *, eps: float = 1e-5) -> None:
        super().__init__(channels, channels, eps=eps, affine=True)


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in CONV:
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
    return spatial_dims


def conv_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv1d``/``Conv2d``/``Conv3d`` for ``spatial_dims`` 1/2/3.

    Example:
        >>> conv_type(3).__name__
        'Conv3d'
    """
    return CONV[_check_dims(spatial_dims)]


def conv_transpose_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.ConvTranspose1d/2d/3d`` for ``spatial_dims``."""
    return CONV_TRANSPOSE[_check_dims(spatial_dims)]


def max_pool_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.MaxPool1d/2d/3d`` for ``spatial_dims``."""
    return MAX_POOL[_check_dims(spatial_dims)]


def avg_pool_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.AvgPool1d/2d/3d`` for ``spatial_dims``."""
    return AVG_POOL[_check_dims(spatial_dims)]


def adaptive_avg_pool(spatial_dims: int, output_size: int | Sequence[int] = 1) -> nn.Module:
    """``nn.AdaptiveAvgPool1d/2d/3d`` to ``output_size`` per axis (1: global average pooling).

    Raises:
        ConfigError: for an ``output_size`` with the wrong length or a value below 1.

    Example:
        >>> import torch
        >>> adaptive_avg_pool(3, 1)(torch.zeros(2, 5, 3, 4, 6)).shape
        torch.Size([2, 5, 1, 1, 1])
    """
    size = per_axis(output_size, _check_dims(spatial_dims), "pooled_size")
    return ADAPTIVE_AVG_POOL[spatial_dims](size)


def dropout_type(spatial_dims: int) -> type[nn.Module]:
    """Channel dropout ``nn.Dropout1d/2d/3d`` (zeroes whole feature maps) for ``spatial_dims``."""
    return DROPOUT[_check_dims(spatial_dims)]


def interpolation_mode(spatial_dims: int) -> str:
    """The (multi-)linear ``F.interpolate`` mode: ``linear``, ``bilinear`` or ``trilinear``."""
    return INTERPOLATION[_check_dims(spatial_dims)]


def norm_layer(norm: NormName, spatial_dims: int, channels: int, *, groups: int = 8) -> nn.Module:
    """A normalisation layer for ``(B, channels, *spatial)`` tensors.

    Args:
        norm: ``instance`` (:class:`InstanceNorm`: affine, no running statistics, as
            nnU-Net), ``batch``, ``group`` or ``none`` (identity).
        spatial_dims: 1, 2 or 3.
        channels: number of feature channels.
        groups: wanted number of groups for ``group``; lowered to the largest divisor of
            ``channels`` that is at most ``groups``.

    Returns:
        The layer.

    Raises:
        ValueError: for an unknown ``norm``.

    Example:
        >>> norm_layer("group", 2, 12)
        GroupNorm(6, 12, eps=1e-05, affine=True, bias=True)
    """
    _check_dims(spatial_dims)
    if norm == "instance":
        return InstanceNorm(channels)
    if norm == "batch":
        return BATCH_NORM[spatial_dims](channels)
    if norm == "group":
        num_groups = max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)
        return nn.GroupNorm(num_groups, channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of instance, batch, group, none; got {norm!r}")


def act_layer(act: ActName, *, negative_slope: float = 0.01) -> nn.Module:
    """An activation layer.

    Args:
        act: ``leakyrelu`` (slope ``negative_slope``, nnU-Net's choice), ``relu``, ``relu6``
            (MobileNet v2), ``elu``, ``gelu`` or ``none`` (identity).
        negative_slope: LeakyReLU slope for negative inputs.

    Returns:
        The layer (in-place where torch allows it, to save memory).

    Raises:
        ValueError: for an unknown ``act``.

    Example:
        >>> act_layer("relu")
        ReLU(inplace=True)
    """
    if act == "leakyrelu":
        return nn.LeakyReLU(negative_slope, inplace=True)
    if act == "relu":
        return nn.ReLU(inplace=True)
    if act == "relu6":
        return nn.ReLU6(inplace=True)
    if act == "elu":
        return nn.ELU(inplace=True)
    if act == "gelu":
        return nn.GELU()
    if act == "none":
        return nn.Identity()
    raise ValueError(f"act must be one of leakyrelu, relu, relu6, elu, gelu, none; got {act!r}")


def as_tuple(
    value: int | Sequence[int], spatial_dims: int, *, name: str = "value"
) -> tuple[int, ...]:
    """Expand a scalar to one value per spatial axis, or check a per-axis sequence.

    Args:
        value: an int, or a sequence of ``spatial_dims`` ints.
        spatial_dims: number of spatial axes.
        name: the option name used in the error message.

    Returns:
        A tuple of ``spatial_dims`` ints.

    Raises:
        ValueError: if a sequence has the wrong length.

    Example:
        >>> as_tuple(3, 3), as_tuple((1, 2, 2), 3)
        ((3, 3, 3), (1, 2, 2))
    """
    if isinstance(value, int):
        return (value,) * spatial_dims
    out = tuple(int(v) for v in value)
    if len(out) != spatial_dims:
        raise ValueError(
            f"{name} {tuple(value)} must have one entry per spatial axis ({spatial_dims})"
        )
    return out


def per_axis(value: int | Sequence[int], spatial_dims: int, name: str) -> tuple[int, ...]:
    """:func:`as_tuple` for a user's option (a size): a wrong length or a value below 1 is a
    ``ConfigError`` naming the option.

    Example:
        >>> per_axis(7, 2, "pooled_size")
        (7, 7)
    """
    try:
        out = as_tuple(value, spatial_dims, name=name)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if min(out) < 1:
        raise ConfigError(f"{name} {out} must be at least 1 along every axis")
    return out


def same_padding(kernel_size: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """Padding that keeps the size of a stride-1 convolution: ``dilation * (k - 1) / 2``.

    Raises:
        ValueError: for an even kernel size (no symmetric "same" padding exists).

    Example:
        >>> same_padding((3, 5), (1, 2))
        (1, 4)
    """
    if any(k % 2 == 0 for k in kernel_size):
        raise ValueError(f"'same' padding needs odd kernel sizes, got {tuple(kernel_size)}")
    return tuple(d * (k - 1) // 2 for k, d in zip(kernel_size, dilation, strict=True))
