"""Per-stage settings and the input sizes a network accepts.

A network plan lists, for each resolution stage, the features, the per-axis kernel size and
the per-axis stride (``stride=(1, 2, 2)`` pools only in-plane, for anisotropic 3D data). The
input must be divisible by the product of the strides along each axis
(:func:`required_divisor`), otherwise the decoder cannot restore the size;
:func:`check_divisible` raises a message naming the divisor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from medseg.errors import ConfigError

PerStage = int | Sequence[int | Sequence[int]]


def stage_features(num_stages: int, *, base: int = 32, cap: int = 320) -> tuple[int, ...]:
    """Features doubling per stage from ``base``, capped at ``cap`` (nnU-Net's rule).

    Example:
        >>> stage_features(6)
        (32, 64, 128, 256, 320, 320)
    """
    return tuple(min(base * 2**i, cap) for i in range(num_stages))


def default_strides(num_stages: int, spatial_dims: int) -> list[tuple[int, ...]]:
    """Stride 1 at the first stage, 2 along every axis at each later stage.

    Example:
        >>> default_strides(3, 2)
        [(1, 1), (2, 2), (2, 2)]
    """
    return [(1,) * spatial_dims] + [(2,) * spatial_dims] * (num_stages - 1)


def expand_per_stage(
    value: PerStage, num_stages: int, spatial_dims: int, *, name: str
) -> list[tuple[int, ...]]:
    """Expand a setting to one per-axis tuple per stage.

    Args:
        value: an int (all stages, all axes); or a sequence with one entry per stage, each an
            int (all axes) or a per-axis sequence.
        num_stages: number of stages.
        spatial_dims: number of spatial axes.
        name: option name for error messages.

    Returns:
        ``num_stages`` tuples of ``spatial_dims`` ints.

    Raises:
        ConfigError: on a wrong number of stages or axes.

    Example:
        >>> expand_per_stage([1, (1, 2, 2), 2], 3, 3, name="strides")
        [(1, 1, 1), (1, 2, 2), (2, 2, 2)]
    """
    if isinstance(value, int):
        return [(value,) * spatial_dims] * num_stages
    entries = list(value)
    if len(entries) != num_stages:
        raise ConfigError(
            f"{name} has {len(entries)} entries but the network has {num_stages} stages"
        )
    out = []
    for i, entry in enumerate(entries):
        axes = (
            (int(entry),) * spatial_dims if isinstance(entry, int) else tuple(int(v) for v in entry)
        )
        if len(axes) != spatial_dims:
            raise ConfigError(
                f"{name}[{i}] = {tuple(entry)} must have one entry per spatial axis "
                f"({spatial_dims})"
            )
        out.append(axes)
    return out


def required_divisor(strides: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """Per-axis product of the strides: the input size must be a multiple of it.

    Example:
        >>> required_divisor([(1, 1, 1), (1, 2, 2), (2, 2, 2)])
        (2, 4, 4)
    """
    return tuple(math.prod(axis) for axis in zip(*strides, strict=True))


def check_divisible(spatial_shape: Sequence[int], divisor: Sequence[int]) -> None:
    """Raise if an input size is not a multiple of the network's divisor.

    Raises:
        ValueError: naming the shape and the divisor, e.g. "input spatial shape (30, 31) must
            be divisible by (16, 16) for this network's strides; pad or crop it".
    """
    shape = tuple(int(n) for n in spatial_shape)
    if len(shape) != len(divisor) or any(n % d for n, d in zip(shape, divisor, strict=True)):
        raise ValueError(
            f"input spatial shape {shape} must be divisible by {tuple(divisor)} for this network's "
            "strides; pad or crop it (e.g. to the plan's patch size)"
        )
