"""Resolution changes between Swin stages, N-dimensional (Liu et al. 2021; Cao et al. 2021).

:class:`PatchMerging` halves the grid: the ``2^D`` neighbours of each ``2 x ... x 2`` cell
are concatenated (``2^D C`` channels), layer-normalised and projected to ``2 C``.
:class:`PatchExpanding` is Swin-Unet's inverse: a linear map ``C -> s^D C'`` whose output is
rearranged into an ``s x ... x s`` cell of ``C'``-wide tokens, then layer-normalised; with
``s = 2``, ``C' = C / 2`` it doubles the resolution and halves the width, and with ``s`` the
patch size, ``C' = C`` it is the final "x4 expanding" back to the image resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from medseg.nets.transformer.swin_block import WindowSizeError


class PatchMerging(nn.Module):
    """2x down-sampling of a token grid: concat the ``2^D`` neighbours, LayerNorm, Linear
    ``2^D C -> 2 C`` (no bias).

    The neighbours are concatenated in row-major order of their offset; Swin's 2D code uses
    another order (``x[0::2, 0::2], x[1::2, 0::2], ...``), which only matters for loading its
    weights.

    Shapes:
        ``(B, *spatial, C) -> (B, *spatial / 2, 2 C)``.

    Example:
        >>> import torch
        >>> PatchMerging(3, 4)(torch.zeros(1, 4, 6, 2, 4)).shape
        torch.Size([1, 2, 3, 1, 8])
    """

    def __init__(self, spatial_dims: int, dim: int) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        cell = 2**spatial_dims
        self.norm = nn.LayerNorm(cell * dim)
        self.reduction = nn.Linear(cell * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        batch, *grid, channels = x.shape
        if any(g % 2 for g in grid):
            raise WindowSizeError(f"patch merging needs an even token grid, got {tuple(grid)}")
        dims = self.spatial_dims
        split = [batch]
        for g in grid:
            split += [g // 2, 2]
        # (B, g1/2, 2, g2/2, 2, ..., C) -> (B, g1/2, g2/2, ..., 2, 2, ..., C)
        order = [0, *range(1, 2 * dims, 2), *range(2, 2 * dims + 1, 2), 2 * dims + 1]
        x = x.reshape(*split, channels).permute(order)
        x = x.reshape(batch, *(g // 2 for g in grid), -1)
        return self.reduction(self.norm(x))


class PatchExpanding(nn.Module):
    """Up-sampling of a token grid by ``scale`` per axis: Linear ``C -> prod(scale) C'`` (no
    bias), rearranged into cells, LayerNorm(``C'``).

    Args:
        spatial_dims: number of spatial axes ``D``.
        dim: input width ``C``.
        scale: up-sampling factor per axis (int or per-axis), default 2.
        out_dim: output width ``C'``, default ``C / 2`` (Swin-Unet's patch expanding).

    Shapes:
        ``(B, *spatial, C) -> (B, *spatial * scale, C')``.

    Example:
        >>> import torch
        >>> PatchExpanding(2, 8)(torch.zeros(1, 3, 5, 8)).shape
        torch.Size([1, 6, 10, 4])
        >>> PatchExpanding(2, 8, scale=4, out_dim=8).expand.out_features  # final "x4"
        128
    """

    def __init__(
        self,
        spatial_dims: int,
        dim: int,
        *,
        scale: int | Sequence[int] = 2,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.scale = (scale,) * spatial_dims if isinstance(scale, int) else tuple(scale)
        self.out_dim = dim // 2 if out_dim is None else out_dim
        self.expand = nn.Linear(dim, math.prod(self.scale) * self.out_dim, bias=False)
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, *grid, _ = x.shape
        dims = len(grid)
        # (B, g1, ..., s1, s2, ..., C') as Swin-Unet's "b h w (p1 p2 c)" split
        x = self.expand(x).reshape(batch, *grid, *self.scale, self.out_dim)
        order = [0]
        for axis in range(dims):
            order += [1 + axis, 1 + dims + axis]
        x = x.permute(*order, 2 * dims + 1)
        size = [g * s for g, s in zip(grid, self.scale, strict=True)]
        return self.norm(x.reshape(batch, *size, self.out_dim))
