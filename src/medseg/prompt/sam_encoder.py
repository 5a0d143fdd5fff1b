"""SAM's ViT image encoder (Kirillov et al. 2023), N-dimensional, with SAM's parameter names.

A ViTDet-style plain ViT: non-overlapping patches are projected to tokens laid out on their grid
``(B, *grid, C)``, a learnt absolute position embedding is added, then ``depth`` pre-norm blocks
follow; most attend within non-overlapping windows of ``window_size`` tokens per axis (the grid
is zero-padded to a multiple of it), the blocks in ``global_attn_indexes`` attend globally. Every
attention adds MViTv2's decomposed relative position bias: for a query at grid position ``p``
and a key at ``p'``, ``sum_i q . R_i[p_i - p'_i]`` with one learnt table ``R_i`` per axis
(``rel_pos_h``, ``rel_pos_w``; 3D adds ``rel_pos_d``). It is passed to
``F.scaled_dot_product_attention`` as ``attn_mask``, so the fused CPU/GPU kernels run it. A
neck (conv 1x1, channel LayerNorm, conv 3x3, channel LayerNorm) maps to ``out_chans``.

Parameter names equal ``segment_anything.modeling.ImageEncoderViT``'s, so SAM's and MedSAM's
``image_encoder.*`` weights load by name (2D). An input of another size than ``img_size``
interpolates the absolute position embedding (and the global blocks' relative tables, as SAM
does), so a 1024^2 checkpoint also runs at 256^2 on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.nets.ops import conv_type, interpolation_mode
from medseg.prompt.layers import ChannelLayerNorm

#: names of the relative position tables per axis, SAM's ``rel_pos_h``/``rel_pos_w`` in 2D.
_AXIS_NAMES: dict[int, tuple[str, ...]] = {1: ("w",), 2: ("h", "w"), 3: ("d", "h", "w")}


@dataclass(frozen=True)
class SamVariant:
    """The sizes of one SAM model (image encoder, prompt encoder, mask decoder).

    The defaults are SAM's (``build_sam.py``): 1024^2 input, 16^2 patches, windows of 14, a
    256-wide prompt/decoder embedding and a two-layer two-way transformer.
    """

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden_dim: int = 256

    def image_encoder(self) -> SamImageEncoder:
        """A freshly initialised :class:`SamImageEncoder` of these sizes."""
        return SamImageEncoder(
            img_size=self.image_size,
            patch_size=self.patch_size,
            embed_dim=self.encoder_embed_dim,
            depth=self.encoder_depth,
            num_heads=self.encoder_num_heads,
            out_chans=self.prompt_embed_dim,
            window_size=self.window_size,
            global_attn_indexes=self.encoder_global_attn_indexes,
        )


#: SAM's three published sizes (``build_sam.py``) and a tiny one for tests.
SAM_VARIANTS: dict[str, SamVariant] = {
    "vit_b": SamVariant(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamVariant(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamVariant(1280, 32, 16, (7, 15, 23, 31)),
    "tiny": SamVariant(
        32, 2, 2, (1,), image_size=64, patch_size=8, window_size=3, prompt_embed_dim=16,
        mask_in_chans=4, decoder_num_heads=2, decoder_mlp_dim=32, iou_head_hidden_dim=16,
    ),
}  # fmt: skip


def window_partition(x: Tensor, window: int) -> tuple[Tensor, tuple[int, ...]]:
    """Cut ``(B, *grid, C)`` tokens into windows ``(B * num_windows, *(window,) * D, C)``.

    The grid is zero-padded at the end of each axis to a multiple of ``window``; returns the
    windows and the padded grid (for :func:`window_unpartition`).

    Example:
        >>> w, padded = window_partition(torch.randn(2, 5, 6, 3), 3)
        >>> w.shape, padded
        (torch.Size([8, 3, 3, 3]), (6, 6))
    """
    grid = x.shape[1:-1]
    dims = len(grid)
    pads = [(window - size % window) % window for size in grid]
    if any(pads):
        x = F.pad(x, [0, 0] + [p for pad in reversed(pads) for p in (0, pad)])
    padded = tuple(size + pad for size, pad in zip(grid, pads, strict=True))
    split = [n for size in padded for n in (size // window, window)]
    x = x.view(x.shape[0], *split, x.shape[-1])
    # (B, n0, w, n1, w, ..., C) -> (B, n0, n1, ..., w, w, ..., C)
    order = [0, *range(1, 2 * dims, 2), *range(2, 2 * dims + 1, 2), 2 * dims + 1]
    windows = x.permute(order).reshape(-1, *(window,) * dims, x.shape[-1])
    return windows, padded


def window_unpartition(
    windows: Tensor, window: int, padded: Sequence[int], grid: Sequence[int]
) -> Tensor:
    """Inverse of :func:`window_partition`: windows back to ``(B, *grid, C)`` (padding cut)."""
    dims = len(grid)
    counts = [size // window for size in padded]
    batch = windows.shape[0] // math.prod(counts)
    x = windows.view(batch, *counts, *(window,) * dims, windows.shape[-1])
    # (B, n0, n1, ..., w, w, ..., C) -> (B, n0, w, n1, w, ..., C)
    order = [0, *(j for i in range(dims) for j in (1 + i, 1 + dims + i)), 2 * dims + 1]
    x = x.permute(order).reshape(batch, *padded, windows.shape[-1])
    if tuple(padded) != tuple(grid):
        x = x[(slice(None), *(slice(0, size) for size in grid))]
    return x


def relative_position_table(size: int, table: Tensor) -> Tensor:
    """The embeddings ``R[q - k]`` ``(size, size, head_dim)`` for query/key positions along one
    axis of ``size`` tokens, from a table ``(L, head_dim)``; it is linearly resized to
    ``2 * size - 1`` rows first when ``L`` differs (SAM's ``get_rel_pos`` for equal q/k sizes).
    """
    length = 2 * size - 1
    if table.shape[0] != length:
        table = F.interpolate(table.t()[None], size=length, mode="linear")[0].t()
    positions = torch.arange(size, device=table.device)
    return table[positions[:, None] - positions[None, :] + size - 1]


def decomposed_rel_pos_bias(q: Tensor, tables: Sequence[Tensor], grid: Sequence[int]) -> Tensor:
    """MViTv2's decomposed relative position bias for queries ``q`` ``(B, heads, N, head_dim)``
    on a token grid (``N = prod(grid)``).

    Returns:
        ``(B, heads, N, N)``: ``bias[n, m] = sum_i q_n . R_i[p_i(n) - p_i(m)]``.
    """
    dims = len(grid)
    axes = "uvw"[:dims]  # einsum labels of the query's grid axes
    q_grid = q.reshape(*q.shape[:2], *grid, q.shape[-1])
    bias = None
    for axis, (size, table) in enumerate(zip(grid, tables, strict=True)):
        table = relative_position_table(size, table)
        rel = torch.einsum(f"bh{axes}c,{axes[axis]}kc->bh{axes}k", q_grid, table)
        # key axis ``axis`` varies, the other key axes broadcast; the sum of the broadcast
        # terms allocates the full (N, N) bias once (2D)
        shape = [1] * dims
        shape[axis] = size
        term = rel.reshape(*rel.shape[:-1], *shape)
        bias = term if bias is None else bias + term
    bias = bias.expand(*q.shape[:2], *grid, *grid)  # 1D: nothing to broadcast against
    return bias.reshape(*q.shape[:2], q.shape[2], q.shape[2])


class SamAttention(nn.Module):
    """Multi-head self-attention on ``(B, *grid, C)`` tokens with the decomposed relative
    position bias (tables sized for ``input_size``, SAM's ``Attention``)."""

    def __init__(
        self, dim: int, num_heads: int, *, qkv_bias: bool, use_rel_pos: bool,
        input_size: Sequence[int],
    ) -> None:  # fmt: skip
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        self.axis_names = _AXIS_NAMES[len(input_size)]
        if use_rel_pos:
            for name, size in zip(self.axis_names, input_size, strict=True):
                self.register_parameter(
                    f"rel_pos_{name}", nn.Parameter(torch.zeros(2 * size - 1, dim // num_heads))
                )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, *grid, C) -> (B, *grid, C)``."""
        batch, grid, channels = x.shape[0], x.shape[1:-1], x.shape[-1]
        qkv = self.qkv(x).reshape(batch, -1, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        bias = None
        if self.use_rel_pos:
            tables = [getattr(self, f"rel_pos_{name}") for name in self.axis_names]
            bias = decomposed_rel_pos_bias(q, tables, grid).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(batch, *grid, channels))


class SamMLP(nn.Module):
    """``lin2(GELU(lin1(x)))`` (SAM's ``MLPBlock``)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden_dim)
        self.lin2 = nn.Linear(hidden_dim, dim)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.act(self.lin1(x)))


class SamBlock(nn.Module):
    """Pre-norm block ``x + attn(LN(x))``, ``x + mlp(LN(x))``; the attention runs within
    windows of ``window_size`` tokens per axis, or globally when ``window_size`` is 0."""

    def __init__(
        self, dim: int, num_heads: int, *, mlp_ratio: float, qkv_bias: bool, use_rel_pos: bool,
        window_size: int, grid: Sequence[int],
    ) -> None:  # fmt: skip
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        rel_size = grid if window_size == 0 else (window_size,) * len(grid)
        self.attn = SamAttention(
            dim, num_heads, qkv_bias=qkv_bias, use_rel_pos=use_rel_pos, input_size=rel_size
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SamMLP(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, *grid, C) -> (B, *grid, C)``."""
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            grid = x.shape[1:-1]
            windows, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(windows), self.window_size, padded, grid)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches to channels-last tokens: ``(B, C, *spatial) -> (B, *grid, E)``."""

    def __init__(self, spatial_dims: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = conv_type(spatial_dims)(
            in_chans, embed_dim, kernel_size=patch_size, stride=patch_size
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).movedim(1, -1)


class SamImageEncoder(nn.Module):
    """SAM's ViT image encoder: ``(B, in_chans, *spatial) -> (B, out_chans, *spatial/patch)``.

    Args:
        img_size: side of the (cubic) training input; sizes ``pos_embed`` and the global blocks'
            relative tables. Other sizes divisible by ``patch_size`` run too (interpolated).
        patch_size: patch side (voxels).
        in_chans: input channels (3 for SAM's RGB weights).
        embed_dim: token width.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width over ``embed_dim``.
        out_chans: channels of the output embedding (the neck's width).
        qkv_bias: learn a bias for the query/key/value projection.
        use_rel_pos: add the decomposed relative position bias.
        window_size: window side (tokens) of the windowed blocks; 0 makes every block global.
        global_attn_indexes: the blocks that attend globally.
        spatial_dims: 2 (SAM) or 3 (same design on volumes, no pretrained weights).

    Example:
        >>> enc = SamImageEncoder(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2,
        ...                       out_chans=8, window_size=2, global_attn_indexes=(1,))
        >>> enc(torch.randn(1, 3, 32, 32)).shape, enc(torch.randn(1, 3, 16, 24)).shape
        (torch.Size([1, 8, 4, 4]), torch.Size([1, 8, 2, 3]))
    """

    def __init__(
        self, img_size: int = 1024, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
        depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4, out_chans: int = 256,
        qkv_bias: bool = True, use_rel_pos: bool = True, window_size: int = 14,
        global_attn_indexes: Sequence[int] = (2, 5, 8, 11), *, spatial_dims: int = 2,
    ) -> None:  # fmt: skip
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.spatial_dims = spatial_dims
        grid = (img_size // patch_size,) * spatial_dims
        self.patch_embed = PatchEmbed(spatial_dims, patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, *grid, embed_dim))
        self.blocks = nn.ModuleList(
            SamBlock(
                embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                use_rel_pos=use_rel_pos, grid=grid,
                window_size=0 if i in global_attn_indexes else window_size,
            )
            for i in range(depth)
        )  # fmt: skip
        conv = conv_type(spatial_dims)
        self.neck = nn.Sequential(
            conv(embed_dim, out_chans, kernel_size=1, bias=False),
            ChannelLayerNorm(out_chans),
            conv(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            ChannelLayerNorm(out_chans),
        )

    def position_embedding(self, grid: Sequence[int]) -> Tensor:
        """``pos_embed`` ``(1, *grid, E)``, interpolated when ``grid`` is not the trained one
        (bicubic in 2D as ViTDet, multi-linear otherwise)."""
        if tuple(grid) == tuple(self.pos_embed.shape[1:-1]):
            return self.pos_embed
        mode = "bicubic" if self.spatial_dims == 2 else interpolation_mode(self.spatial_dims)
        pos = F.interpolate(self.pos_embed.movedim(-1, 1), size=tuple(grid), mode=mode)
        return pos.movedim(1, -1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_chans, *spatial) -> (B, out_chans, *spatial / patch_size)``."""
        x = self.patch_embed(x)
        x = x + self.position_embedding(x.shape[1:-1])
        for block in self.blocks:
            x = block(x)
        return self.neck(x.movedim(-1, 1))
