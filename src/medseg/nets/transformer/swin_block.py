"""The Swin Transformer block (Liu et al. 2021), N-dimensional.

``x = x + W-MSA(LN(x))`` (or SW-MSA: the same on the grid cyclically rolled by half a window),
then ``x = x + MLP(LN(x))``. Blocks alternate unshifted and shifted windows, so information
crosses window edges every second block.

Where the token grid is no larger than the window along an axis, the window shrinks to the
grid and that axis is not shifted (as Swin does): the whole axis is one window already.
A grid larger than the window must be a multiple of it, unless ``pad_to_window``: then the
grid is padded up to a multiple (as Swin's detection code and MONAI's SwinUNETR do), and
real tokens never attend to the padding.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.nets.transformer.sizes import InputSizeError
from medseg.nets.transformer.window import (
    WindowAttention,
    shift_attention_mask,
    window_partition,
    window_reverse,
)


class WindowSizeError(InputSizeError):
    """A token grid (or input size) the windows cannot tile. Also a ``ValueError``, the
    exception the other networks raise for a size that does not fit their strides."""


def effective_window(
    grid: Sequence[int], window: Sequence[int], shifted: bool
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The window and shift used on a grid: the grid itself (and no shift) along axes where it
    is no larger than the window, else ``window`` and ``window // 2`` (if ``shifted``).

    Example:
        >>> effective_window((14, 4), (7, 7), shifted=True)
        ((7, 4), (3, 0))
    """
    used = tuple(min(g, w) for g, w in zip(grid, window, strict=True))
    shift = tuple(w // 2 if shifted and g > w else 0 for g, w in zip(grid, window, strict=True))
    return used, shift


@functools.lru_cache(maxsize=16)
def _attention_mask(
    grid: tuple[int, ...],
    padded: tuple[int, ...],
    window: tuple[int, ...],
    shift: tuple[int, ...],
    device: torch.device,
) -> Tensor:
    """:func:`shift_attention_mask` of a (padded, rolled) grid, cached: every block of a stage
    asks for the same mask at every step, and building it costs as much as a softmax."""
    valid = None
    if grid != padded:
        valid = torch.zeros(padded, dtype=torch.bool, device=device)
        valid[tuple(slice(0, g) for g in grid)] = True
        valid = torch.roll(valid, tuple(-s for s in shift), tuple(range(len(grid))))
    return shift_attention_mask(padded, window, shift, valid=valid, device=device)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p``
    (training only), scaling kept ones by ``1 / (1 - p)``.

    Example:
        >>> DropPath(0.5).eval()(torch.ones(2, 3)).tolist()
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class SwinBlock(nn.Module):
    """Pre-norm Swin block on a token grid: (shifted-)window attention, then an MLP.

    Args:
        dim: token width ``C``.
        heads: attention heads (``dim`` must be a multiple).
        window: window size per spatial axis (its length sets the dimension).
        shift: shifted windows (SW-MSA, roll by ``window // 2``) instead of W-MSA.
        mlp_ratio: MLP hidden width over ``dim``.
        pad_to_window: pad grids that are not a multiple of the window (see the module
            docstring) instead of refusing them.
        drop_path: stochastic-depth probability of both residual branches.
        qkv_bias: bias on the query/key/value projection.

    Shapes:
        ``(B, *spatial, C) -> (B, *spatial, C)``.

    Raises:
        WindowSizeError: (in ``forward``) a grid larger than the window and not a multiple of
            it, without ``pad_to_window``.

    Example:
        >>> block = SwinBlock(8, heads=2, window=(4, 4), shift=True)
        >>> block(torch.zeros(1, 8, 12, 8)).shape
        torch.Size([1, 8, 12, 8])
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        window: Sequence[int],
        shift: bool,
        mlp_ratio: float = 4.0,
        *,
        pad_to_window: bool = False,
        drop_path: float = 0.0,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.window = tuple(int(w) for w in window)
        self.shift = shift
        self.pad_to_window = pad_to_window
        self.norm1 = nn.LayerNorm(dim)
        self.attention = WindowAttention(dim, self.window, heads, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def _padding(self, grid: Sequence[int], window: Sequence[int]) -> list[int]:
        padding = [-g % w for g, w in zip(grid, window, strict=True)]
        if any(padding) and not self.pad_to_window:
            raise WindowSizeError(
                f"token grid {tuple(grid)} must be a multiple of the window {self.window} "
                "along every axis where it is larger than the window (or pad_to_window=True)"
            )
        return padding

    def attend(self, x: Tensor) -> Tensor:
        """The (shifted-)window attention branch alone, ``(B, *spatial, C)``, before the
        residual sum (it includes ``norm1``)."""
        grid = tuple(x.shape[1:-1])
        axes = tuple(range(1, len(grid) + 1))
        window, shift = effective_window(grid, self.window, self.shift)
        padding = self._padding(grid, window)
        h = self.norm1(x)
        if any(padding):  # F.pad lists (before, after) pairs from the last axis backwards
            h = F.pad(h, [0, 0] + [v for p in reversed(padding) for v in (0, p)])
        padded = tuple(h.shape[1:-1])
        if any(shift):
            h = torch.roll(h, tuple(-s for s in shift), axes)
        mask = None
        if any(shift) or any(padding):
            mask = _attention_mask(grid, padded, window, shift, x.device)
        h = self.attention(window_partition(h, window), window, mask)
        h = window_reverse(h, window, padded)
        if any(shift):
            h = torch.roll(h, shift, axes)
        if any(padding):
            h = h[(slice(None), *(slice(0, g) for g in grid))]
        return h

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attend(x))
        return x + self.drop_path(self.mlp(self.norm2(x)))
