"""ViT token blocks for dense prediction, N-dimensional: patch embedding, position embeddings
that follow the input size, and a ViT backbone without ``[CLS]`` token that returns the hidden
states of chosen layers (UNETR decodes layers 3/6/9/12, TransUNet the last one).

A segmentation network sees many input sizes (training patches, sliding windows, the planner's
``meta``-device check), so the learnt position embedding, built for a nominal ``image_size``,
is resampled (multi-)linearly to the input's patch grid whenever the two differ, as ViT does
when fine-tuning at a higher resolution (Dosovitskiy et al. 2021, section 3.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.ops import conv_type, interpolation_mode, per_axis
from medseg.nets.vit import encoder_blocks


class PatchEmbedding(nn.Module):
    """Non-overlapping patches, each linearly projected to a ``dim``-wide token (a
    convolution with kernel = stride = ``patch_size``).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        dim: token width.
        patch_size: patch size, an int or one per axis.

    Shapes:
        ``(B, in_channels, *spatial) -> ((B, N, dim), grid)`` with
        ``grid = spatial // patch_size`` and ``N = prod(grid)`` (row-major order, last axis
        fastest).

    Example:
        >>> tokens, grid = PatchEmbedding(3, 1, 8, 4)(torch.zeros(2, 1, 8, 12, 16))
        >>> tokens.shape, grid
        (torch.Size([2, 24, 8]), (2, 3, 4))
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, dim: int, patch_size: int | Sequence[int]
    ) -> None:
        super().__init__()
        self.patch_size = per_axis(patch_size, spatial_dims, "patch_size")
        self.projection = conv_type(spatial_dims)(
            in_channels, dim, kernel_size=self.patch_size, stride=self.patch_size
        )

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        patches = self.projection(x)  # (B, dim, *grid)
        grid = tuple(int(n) for n in patches.shape[2:])
        return patches.flatten(2).transpose(1, 2), grid


def interpolate_position_embedding(
    pos: Tensor, old_grid: Sequence[int], new_grid: Sequence[int]
) -> Tensor:
    """Resample a position embedding from one patch grid to another.

    The ``(1, N, dim)`` rows are laid out on ``old_grid`` (row-major), resampled with
    ``F.interpolate`` (linear / bilinear / trilinear, ``align_corners=False``) and flattened
    back, so a network built for one input size runs at another.

    Args:
        pos: ``(1, prod(old_grid), dim)``.
        old_grid: the grid ``pos`` was built for.
        new_grid: the wanted grid, same number of axes.

    Returns:
        ``(1, prod(new_grid), dim)``; ``pos`` itself when the grids are equal.

    Raises:
        ConfigError: when ``pos`` does not have ``prod(old_grid)`` rows or the grids have
            different numbers of axes.

    Example:
        >>> pos = torch.arange(4.0).reshape(1, 4, 1)  # a 2 x 2 grid
        >>> interpolate_position_embedding(pos, (2, 2), (1, 1)).flatten().tolist()
        [1.5]
    """
    old, new = tuple(int(n) for n in old_grid), tuple(int(n) for n in new_grid)
    if len(old) != len(new) or pos.shape[1] != math.prod(old):
        raise ConfigError(
            f"position embedding of {pos.shape[1]} rows cannot be laid out on grid {old} and "
            f"resampled to {new}; the grids need the same number of axes and prod(old_grid) rows"
        )
    if old == new:
        return pos
    dim = pos.shape[-1]
    grid = pos.transpose(1, 2).reshape(1, dim, *old)  # (1, dim, *old_grid)
    mode = interpolation_mode(len(old))
    resized = F.interpolate(grid, size=new, mode=mode, align_corners=False)
    return resized.flatten(2).transpose(1, 2)


class TokenEncoder(nn.Module):
    """ViT backbone for dense prediction: patch embedding + learnt positions + ``depth``
    pre-norm blocks (:class:`medseg.nets.vit.TransformerBlock`), no ``[CLS]`` token.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels (an image, or a CNN feature map for a hybrid ViT).
        image_size: the nominal input size the position embedding is built for; other sizes
            (multiples of ``patch_size``) get an interpolated embedding.
        patch_size: patch size, an int or one per axis.
        dim, depth, heads, mlp_dim: token width, blocks, attention heads, MLP width.
        output_layers: the (1-based) blocks whose outputs are returned, in increasing order,
            e.g. ``(3, 6, 9, 12)`` for UNETR; default: the last. The last block's output passes
            the final LayerNorm.
        dropout: dropout on the embedded tokens, after attention and in the MLPs.
        attention_dropout: dropout on the attention weights.

    Shapes:
        ``(B, in_channels, *spatial) -> ([(B, N, dim)] * len(output_layers), grid)``.

    Raises:
        ConfigError: ``image_size`` not divisible by ``patch_size``, ``dim`` not divisible by
            ``heads``, or an output layer outside ``1..depth``.

    Example:
        >>> enc = TokenEncoder(2, 1, image_size=16, patch_size=4, dim=8, depth=2, heads=2,
        ...                    mlp_dim=16, output_layers=(1, 2))
        >>> states, grid = enc(torch.zeros(1, 1, 8, 12))
        >>> [s.shape for s in states], grid
        ([torch.Size([1, 6, 8]), torch.Size([1, 6, 8])], (2, 3))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        *,
        image_size: int | Sequence[int],
        patch_size: int | Sequence[int],
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        output_layers: Sequence[int] | None = None,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        image = per_axis(image_size, spatial_dims, "image_size")
        self.patch_embedding = PatchEmbedding(spatial_dims, in_channels, dim, patch_size)
        patch = self.patch_embedding.patch_size
        if any(n % p for n, p in zip(image, patch, strict=True)):
            raise ConfigError(
                f"image_size {image} is not divisible by patch_size {patch}; choose an "
                "image_size that is a multiple of the patch size along every axis"
            )
        if dim % heads:
            raise ConfigError(f"transformer dim {dim} must be divisible by heads {heads}")
        layers = (
            (depth,) if output_layers is None else tuple(sorted({int(n) for n in output_layers}))
        )
        if not layers or any(not 1 <= n <= depth for n in layers):
            raise ConfigError(f"output_layers {layers} must be block numbers in 1..{depth}")
        self.output_layers, self.dim = layers, dim
        self.grid = tuple(n // p for n, p in zip(image, patch, strict=True))
        self.position_embedding = nn.Parameter(torch.zeros(1, math.prod(self.grid), dim))
        self.dropout = nn.Dropout(dropout)
        self.blocks = encoder_blocks(dim, depth, heads, mlp_dim, dropout, attention_dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.position_embedding, std=0.02)

    @property
    def patch_size(self) -> tuple[int, ...]:
        """Per-axis patch size (the input must be a multiple of it)."""
        return self.patch_embedding.patch_size

    def forward(self, x: Tensor) -> tuple[list[Tensor], tuple[int, ...]]:
        tokens, grid = self.patch_embedding(x)
        pos = interpolate_position_embedding(self.position_embedding, self.grid, grid)
        z = self.dropout(tokens + pos)
        states = []
        last = len(self.blocks)
        for number, block in enumerate(self.blocks, start=1):
            z = block(z)
            if number in self.output_layers:
                states.append(self.norm(z) if number == last else z)
        return states, grid


def tokens_to_map(tokens: Tensor, grid: Sequence[int]) -> Tensor:
    """Lay tokens ``(B, N, dim)`` out as a feature map ``(B, dim, *grid)``.

    Example:
        >>> tokens_to_map(torch.zeros(2, 6, 8), (2, 3)).shape
        torch.Size([2, 8, 2, 3])
    """
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
