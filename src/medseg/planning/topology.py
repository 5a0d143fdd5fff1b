"""Network topology from patch size and spacing (nnU-Net's pooling rules).

Pure functions of numbers, each with its reason:

* pool an axis only while its feature map stays >= ``2 * min_feature_map`` voxels, so the
  bottleneck is about 4 voxels wide;
* pool only axes whose current spacing is less than twice the finest one, so a 5 mm axis
  of a 0.7 x 0.7 x 5 mm volume waits until the in-plane axes have been pooled to ~5 mm;
* use kernel size 1 on an axis while its spacing is more than twice the finest (no 3-voxel
  context across thick slices);
* the patch is rounded up to a multiple of ``2 ** pools`` per axis so every skip aligns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Topology:
    """Per-stage kernel sizes and strides (first stride all ones) and the adjusted patch."""

    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    patch_size: tuple[int, ...]

    @property
    def num_stages(self) -> int:
        return len(self.strides)

    @property
    def divisor(self) -> tuple[int, ...]:
        """What every patch axis must be divisible by."""
        dims = len(self.patch_size)
        return tuple(math.prod(s[d] for s in self.strides) for d in range(dims))


def plan_topology(
    patch_size: tuple[int, ...],
    spacing: tuple[float, ...],
    *,
    min_feature_map: int = 4,
    max_pools: int = 6,
) -> Topology:
    """Kernel sizes and strides for a U-Net on ``patch_size`` at ``spacing`` (nnU-Net rules).

    Example:
        >>> t = plan_topology((40, 56, 40), (1.0, 1.0, 1.0))
        >>> t.strides
        ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    """
    dims = len(patch_size)
    current_spacing = list(spacing)
    current_size = list(patch_size)
    pools = [0] * dims
    kernel = [1] * dims
    strides: list[tuple[int, ...]] = [(1,) * dims]
    kernels: list[tuple[int, ...]] = []
    while True:
        valid = [
            d
            for d in range(dims)
            if current_size[d] >= 2 * min_feature_map and pools[d] < max_pools
        ]
        if not valid:
            break
        finest = min(current_spacing[d] for d in valid)
        valid = [d for d in valid if current_spacing[d] / finest < 2]
        if len(valid) == 1 and current_size[valid[0]] < 3 * min_feature_map:
            break  # pooling a single axis of a small map gains little context
        for d in range(dims):
            if kernel[d] == 1 and current_spacing[d] / min(current_spacing) < 2:
                kernel[d] = 3
        kernels.append(tuple(kernel))
        stride = tuple(2 if d in valid else 1 for d in range(dims))
        for d in valid:
            pools[d] += 1
            current_spacing[d] *= 2
            current_size[d] = math.ceil(current_size[d] / 2)
        strides.append(stride)
    kernels.append((3,) * dims)  # bottleneck
    divisor = [2**p for p in pools]
    adjusted = tuple(int(math.ceil(s / k) * k) for s, k in zip(patch_size, divisor, strict=True))
    return Topology(tuple(kernels), tuple(strides), adjusted)
