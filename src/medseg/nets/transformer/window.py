"""Window attention of the Swin Transformer (Liu et al. 2021), N-dimensional.

Tokens live on a grid ``(B, *spatial, C)`` (channels last). The grid is cut into
non-overlapping windows of ``window`` tokens per axis (:func:`window_partition`) and
self-attention runs inside each window only, with a learnt *relative position bias*: one
value per head for every relative offset ``d`` between two tokens of a window,
``-(w - 1) <= d <= w - 1`` per axis, i.e. ``prod(2 w - 1)`` rows
(:func:`relative_position_index` maps a token pair to its row).

Shifted windows (SW-MSA) cyclically roll the grid by ``w // 2`` before partitioning, so the
windows straddle the previous layer's window edges. A window at the far end of the rolled
grid then holds tokens from different sides of the image; :func:`shift_attention_mask`
forbids attention between tokens that came from different regions (``-inf``, which gives
exactly zero weight, where the Swin code uses ``-100``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def window_partition(x: Tensor, window: Sequence[int]) -> Tensor:
    """Cut a token grid into non-overlapping windows.

    Args:
        x: tokens ``(B, *spatial, C)``; each spatial size a multiple of its ``window`` entry.
        window: window size per spatial axis.

    Returns:
        ``(B * num_windows, prod(window), C)``; windows in row-major order of the window grid,
        tokens in row-major order inside each window.

    Example:
        >>> x = torch.arange(16.0).reshape(1, 4, 4, 1)
        >>> window_partition(x, (2, 2))[1, :, 0].tolist()
        [2.0, 3.0, 6.0, 7.0]
    """
    batch, *spatial, channels = x.shape
    dims = len(window)
    split = [batch]
    for size, w in zip(spatial, window, strict=True):
        split += [size // w, w]
    x = x.reshape(*split, channels)
    # (B, n1, w1, n2, w2, ..., C) -> (B, n1, n2, ..., w1, w2, ..., C)
    order = [0, *range(1, 2 * dims, 2), *range(2, 2 * dims + 1, 2), 2 * dims + 1]
    return x.permute(order).reshape(-1, math.prod(window), channels)


def window_reverse(windows: Tensor, window: Sequence[int], spatial: Sequence[int]) -> Tensor:
    """Put windows back onto the grid: the inverse of :func:`window_partition`.

    Args:
        windows: ``(B * num_windows, prod(window), C)``.
        window: window size per spatial axis.
        spatial: the grid size per axis.

    Returns:
        ``(B, *spatial, C)``.

    Example:
        >>> x = torch.randn(2, 4, 6, 3)
        >>> torch.equal(window_reverse(window_partition(x, (2, 3)), (2, 3), (4, 6)), x)
        True
    """
    dims = len(window)
    counts = [size // w for size, w in zip(spatial, window, strict=True)]
    channels = windows.shape[-1]
    x = windows.reshape(-1, *counts, *window, channels)
    # (B, n1, n2, ..., w1, w2, ..., C) -> (B, n1, w1, n2, w2, ..., C)
    order = [0]
    for axis in range(dims):
        order += [1 + axis, 1 + dims + axis]
    return x.permute(*order, 2 * dims + 1).reshape(-1, *spatial, channels)


def relative_position_index(
    window: Sequence[int], table_window: Sequence[int] | None = None, *, device=None
) -> Tensor:
    """Row of the relative position bias table for every token pair of a window.

    The offset ``d = p_i - p_j`` (per axis, in ``[-(w - 1), w - 1]``) is shifted to
    ``d + w - 1 >= 0`` and flattened row-major with strides ``prod(2 w - 1)`` of the later
    axes, as in Swin.

    Args:
        window: the window actually used (tokens per axis).
        table_window: the window the table was built for (default ``window``); a smaller
            ``window`` (a grid smaller than the window) reads the matching rows of the larger
            table, so every offset keeps its own learnt bias.
        device: where to build the index.

    Returns:
        ``(N, N)`` long, ``N = prod(window)``.

    Example:
        >>> relative_position_index((2, 2)).tolist()
        [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    """
    table_window = tuple(window if table_window is None else table_window)
    axes = [torch.arange(w, device=device) for w in window]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij")).flatten(1)  # (D, N)
    relative = coords[:, :, None] - coords[:, None, :]  # (D, N, N)
    index = torch.zeros(relative.shape[1:], dtype=torch.long, device=device)
    for axis, w in enumerate(table_window):
        index = index * (2 * w - 1) + relative[axis] + (w - 1)
    return index


def shift_attention_mask(
    spatial: Sequence[int],
    window: Sequence[int],
    shift: Sequence[int],
    *,
    valid: Tensor | None = None,
    device=None,
) -> Tensor:
    """Additive attention mask for (shifted) windows on the rolled grid.

    Along each shifted axis the rolled grid has three regions, ``[0, G - w)``,
    ``[G - w, G - s)`` and ``[G - s, G)`` (``G`` grid size, ``w`` window, ``s`` shift); the
    last two were neighbours of the far side before the cyclic roll. Tokens of different
    regions must not attend to each other.

    Args:
        spatial: the (rolled) grid size per axis, multiples of ``window``.
        window: window size per axis.
        shift: shift per axis (0: that axis is not shifted).
        valid: optional boolean ``spatial`` map of real (not padding) tokens, in the rolled
            frame: real tokens do not attend to padding (padding queries may, so that no row
            is empty; their outputs are cropped away).
        device: where to build the mask.

    Returns:
        ``(num_windows, N, N)`` float: 0 where attention is allowed, ``-inf`` elsewhere.

    Example:
        >>> mask = shift_attention_mask((4,), (2,), (1,))
        >>> mask[1].tolist()  # the last window holds tokens 3 and 0 of the unrolled grid
        [[0.0, -inf], [-inf, 0.0]]
    """
    region = torch.zeros((), dtype=torch.long, device=device)
    for axis, (size, w, s) in enumerate(zip(spatial, window, shift, strict=True)):
        position = torch.arange(size, device=device)
        ids = (position >= size - w).long() + (position >= size - s).long() if s else position * 0
        view = [1] * len(spatial)
        view[axis] = size
        region = region * 3 + ids.reshape(view)
    region = region.expand(*spatial).reshape(1, *spatial, 1)
    ids = window_partition(region, window)[..., 0]  # (nW, N)
    blocked = ids[:, :, None] != ids[:, None, :]
    if valid is not None:
        real = window_partition(valid.reshape(1, *spatial, 1), window)[..., 0]
        blocked = blocked | (real[:, :, None] & ~real[:, None, :])
    zeros = torch.zeros((), device=device)
    return torch.where(blocked, torch.full((), float("-inf"), device=device), zeros)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learnt relative position bias.

    Args:
        dim: token width ``C`` (a multiple of ``heads``).
        window: window size per spatial axis (its length sets the dimension).
        heads: number of heads.
        qkv_bias: bias on the query/key/value projection.
        attention_dropout: dropout on the attention weights (training only).

    Shapes:
        ``(B * num_windows, N, C) -> (B * num_windows, N, C)`` with ``N = prod(window)`` (or
        of the smaller window passed to :meth:`forward`).

    Example:
        >>> attention = WindowAttention(8, (2, 2), heads=2)
        >>> attention.bias_table.shape
        torch.Size([9, 2])
        >>> attention(torch.zeros(3, 4, 8)).shape
        torch.Size([3, 4, 8])
    """

    def __init__(
        self,
        dim: int,
        window: Sequence[int],
        heads: int,
        *,
        qkv_bias: bool = True,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.window = tuple(int(w) for w in window)
        self.heads = heads
        self.attention_dropout = attention_dropout
        rows = math.prod(2 * w - 1 for w in self.window)
        self.bias_table = nn.Parameter(torch.zeros(rows, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, window: Sequence[int]) -> Tensor:
        """The bias ``(heads, N, N)`` for a window no larger than the table's."""
        index = relative_position_index(window, self.window, device=self.bias_table.device)
        count = index.shape[0]
        return self.bias_table[index.reshape(-1)].reshape(count, count, -1).permute(2, 0, 1)

    def forward(
        self, x: Tensor, window: Sequence[int] | None = None, mask: Tensor | None = None
    ) -> Tensor:
        """Attend within each window.

        Args:
            x: windows ``(B * nW, N, C)``.
            window: the window size used (default the full ``window``).
            mask: ``(nW, N, N)`` additive mask (:func:`shift_attention_mask`), or ``None``.
        """
        windows, tokens, dim = x.shape
        attn_mask = self.position_bias(self.window if window is None else window)
        qkv = self.qkv(x).reshape(windows, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B * nW, heads, N, C / heads)
        if mask is not None:  # (B, nW, heads, N, d) so the (nW, 1, N, N) mask broadcasts
            per_image = mask.shape[0]
            q, k, v = (t.reshape(-1, per_image, *t.shape[1:]) for t in (q, k, v))
            attn_mask = attn_mask + mask[:, None]
        dropout = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        out = out.reshape(windows, self.heads, tokens, -1).transpose(1, 2)
        return self.proj(out.reshape(windows, tokens, dim))
