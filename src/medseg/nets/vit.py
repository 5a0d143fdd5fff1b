"""Vision Transformer (Dosovitskiy et al. 2021) for image classification, N-dimensional.

The image is cut into non-overlapping patches of ``patch_size`` voxels, each projected to a
``dim``-wide token (a strided convolution, i.e. a linear map of the flattened patch). A learnt
``[CLS]`` token is prepended, a learnt position embedding ``(1, 1 + N, dim)`` is added, and
``depth`` pre-norm encoder blocks follow:

    ``z = z + MHSA(LN(z))``,  ``z = z + MLP(LN(z))``  (MLP: Linear, GELU, Linear)

then a final LayerNorm; a linear head reads the ``[CLS]`` token (``pool="cls"``) or the mean
of the patch tokens (``pool="mean"``). Sizes ``tiny``/``small``/``base`` follow DeiT/ViT
(``base`` with 16^2 patches at 224^2 is ViT-B/16: 86,567,656 parameters for 1000 classes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.attention import MultiHeadSelfAttention
from medseg.nets.ops import conv_type, per_axis

#: ``size -> (dim, depth, heads, mlp_dim)``.
VIT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (192, 12, 3, 768),
    "small": (384, 12, 6, 1536),
    "base": (768, 12, 12, 3072),
}

Pool = Literal["cls", "mean"]


def attention_weights(attention: MultiHeadSelfAttention, tokens: Tensor) -> Tensor:
    """The softmax attention weights ``softmax(Q K^T / sqrt(d))`` of a
    :class:`~medseg.nets.attention.MultiHeadSelfAttention` on ``tokens`` ``(B, N, C)``.

    Returns:
        ``(B, heads, N, N)``; row ``i`` is how token ``i`` attends to every token (sums to 1).

    Example:
        >>> w = attention_weights(MultiHeadSelfAttention(8, num_heads=2), torch.randn(1, 5, 8))
        >>> w.shape, torch.allclose(w.sum(-1), torch.ones(1, 2, 5))
        (torch.Size([1, 2, 5, 5]), True)
    """
    batch, num, dim = tokens.shape
    heads = attention.num_heads
    qkv = attention.qkv(tokens).reshape(batch, num, 3, heads, dim // heads)
    q, k, _ = qkv.permute(2, 0, 3, 1, 4)
    return (q @ k.transpose(-2, -1) / math.sqrt(dim // heads)).softmax(dim=-1)


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block: ``z + MHSA(LN(z))`` then ``z + MLP(LN(z))``.

    Args:
        dim: token width.
        num_heads: attention heads (``dim`` must be a multiple).
        mlp_dim: hidden width of the MLP (Linear -> GELU -> Linear).
        dropout: dropout after the attention projection and in the MLP.
        attention_dropout: dropout on the attention weights.

    Shapes:
        ``(B, N, dim) -> (B, N, dim)``.

    Example:
        >>> TransformerBlock(8, 2, 16)(torch.zeros(2, 5, 8)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        *,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = MultiHeadSelfAttention(
            dim, num_heads=num_heads, qkv_bias=True, dropout=attention_dropout
        )
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attention(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


def encoder_blocks(
    dim: int, depth: int, heads: int, mlp_dim: int, dropout: float, attention_dropout: float
) -> nn.ModuleList:
    """``depth`` :class:`TransformerBlock` s with ViT's initialisation (linear weights from a
    truncated normal, std 0.02; zero biases).

    Example:
        >>> len(encoder_blocks(8, 3, 2, 16, 0.0, 0.0))
        3
    """
    blocks = nn.ModuleList(
        TransformerBlock(dim, heads, mlp_dim, dropout=dropout, attention_dropout=attention_dropout)
        for _ in range(depth)
    )
    for module in blocks.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
    return blocks


class ViTEncoder(nn.Module):
    """Everything of :class:`VisionTransformer` except the head: ``(B, C, *spatial) -> (B, dim)``.

    Holds the patch embedding, ``cls_token`` ``(1, 1, dim)``, ``position_embedding``
    ``(1, 1 + N, dim)``, the encoder ``blocks`` and the final ``norm``. :meth:`tokens` gives
    all ``1 + N`` normalised output tokens (``[CLS]`` first).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        *,
        image_size: tuple[int, ...],
        patch_size: tuple[int, ...],
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
        pool: Pool,
    ) -> None:
        super().__init__()
        self.image_size, self.patch_size, self.pool = image_size, patch_size, pool
        self.grid = tuple(n // p for n, p in zip(image_size, patch_size, strict=True))
        self.num_patches = math.prod(self.grid)
        self.patch_embedding = conv_type(spatial_dims)(
            in_channels, dim, kernel_size=patch_size, stride=patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position_embedding = nn.Parameter(torch.zeros(1, 1 + self.num_patches, dim))
        self.dropout = nn.Dropout(dropout)
        self.blocks = encoder_blocks(dim, depth, heads, mlp_dim, dropout, attention_dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.position_embedding, std=0.02)

    def embed(self, x: Tensor) -> Tensor:
        """Input tokens ``(B, 1 + N, dim)``: ``[CLS]`` + patch embeddings, plus positions."""
        if tuple(x.shape[2:]) != self.image_size:
            raise ConfigError(
                f"input spatial size {tuple(x.shape[2:])} differs from the ViT's image_size "
                f"{self.image_size}; resize/crop the input or build the network for this size"
            )
        patches = self.patch_embedding(x).flatten(2).transpose(1, 2)  # (B, N, dim)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return self.dropout(torch.cat([cls, patches], dim=1) + self.position_embedding)

    def tokens(self, x: Tensor) -> Tensor:
        """All output tokens after the final LayerNorm, ``(B, 1 + N, dim)``, ``[CLS]`` first."""
        z = self.embed(x)
        for block in self.blocks:
            z = block(z)
        return self.norm(z)

    def forward(self, x: Tensor) -> Tensor:
        z = self.tokens(x)
        return z[:, 0] if self.pool == "cls" else z[:, 1:].mean(dim=1)


class VisionTransformer(nn.Module):
    """ViT classifier: ``(B, in_channels, *image_size) -> (B, out_channels)`` logits.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: classes ``K`` (or regression targets).
        image_size: the (fixed) input size, an int or one per axis; the position embedding
            has one row per patch, so every input must have exactly this size. Default 224
            in 1D/2D (the paper's), 64 in 3D.
        patch_size: patch size, an int or one per axis; must divide ``image_size``.
        size: ``tiny`` (dim 192, depth 12, 3 heads, MLP 768), ``small`` (384/12/6/1536) or
            ``base`` (768/12/12/3072).
        dim, depth, heads, mlp_dim: override the ``size`` preset's value.
        dropout: dropout on the embedded tokens, after attention and in the MLPs.
        attention_dropout: dropout on the attention weights.
        pool: ``cls`` (the head reads the ``[CLS]`` token, as ViT) or ``mean`` (mean of the
            patch tokens; the ``[CLS]`` token still takes part in attention).

    Attributes:
        backbone: a :class:`ViTEncoder`, everything but the head (freeze it for transfer
            learning); ``backbone(x)`` gives the pooled ``(B, dim)`` features.
        head: the final ``nn.Linear(dim, out_channels)``.

    Raises:
        ConfigError: for an unknown ``size``/``pool``, ``dim`` not divisible by ``heads``,
            ``image_size`` not divisible by ``patch_size``, or (in forward) an input whose
            size is not ``image_size``.

    Example:
        >>> net = VisionTransformer(2, 1, 3, image_size=16, patch_size=4, dim=8, depth=1, heads=2)
        >>> net(torch.zeros(2, 1, 16, 16)).shape, net.backbone.position_embedding.shape
        (torch.Size([2, 3]), torch.Size([1, 17, 8]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        image_size: int | Sequence[int] | None = None,
        patch_size: int | Sequence[int] = 16,
        size: Literal["tiny", "small", "base"] = "base",
        dim: int | None = None,
        depth: int | None = None,
        heads: int | None = None,
        mlp_dim: int | None = None,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        pool: Pool = "cls",
    ) -> None:
        super().__init__()
        if size not in VIT_SIZES:
            raise ConfigError(f"ViT size must be one of {', '.join(VIT_SIZES)}; got {size!r}")
        if pool not in ("cls", "mean"):
            raise ConfigError(f"ViT pool must be 'cls' or 'mean', got {pool!r}")
        preset = VIT_SIZES[size]
        dim, depth, heads, mlp_dim = (
            p if v is None else v for v, p in zip((dim, depth, heads, mlp_dim), preset, strict=True)
        )
        if dim % heads:
            raise ConfigError(f"ViT dim {dim} must be divisible by heads {heads}")
        if image_size is None:
            image_size = 64 if spatial_dims == 3 else 224
        image = per_axis(image_size, spatial_dims, "image_size")
        patch = per_axis(patch_size, spatial_dims, "patch_size")
        if any(n % p for n, p in zip(image, patch, strict=True)):
            raise ConfigError(
                f"ViT image_size {image} is not divisible by patch_size {patch}; "
                "choose a patch size that divides every axis"
            )
        self.spatial_dims, self.dim, self.depth, self.heads = spatial_dims, dim, depth, heads
        self.backbone = ViTEncoder(
            spatial_dims,
            in_channels,
            image_size=image,
            patch_size=patch,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_dim=mlp_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
            pool=pool,
        )
        self.head = nn.Linear(dim, out_channels)

    @property
    def image_size(self) -> tuple[int, ...]:
        """The input size the network was built for."""
        return self.backbone.image_size

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """The patch size (the input must moreover be exactly :attr:`image_size`)."""
        return self.backbone.patch_size

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    @torch.no_grad()
    def attention_maps(self, x: Tensor) -> Tensor:
        """The last block's attention from the ``[CLS]`` token to each patch, per head.

        Returns:
            ``(B, heads, *grid)`` weights in ``[0, 1]``, ``grid = image_size / patch_size``;
            over the patches they sum to ``1 -`` the ``[CLS]`` token's attention to itself.
            Up-sample by ``patch_size`` to overlay on the image.

        Example:
            >>> net = VisionTransformer(3, 1, 2, image_size=8, patch_size=4, dim=8, depth=2,
            ...                         heads=2)
            >>> net.attention_maps(torch.zeros(1, 1, 8, 8, 8)).shape
            torch.Size([1, 2, 2, 2, 2])
        """
        encoder = self.backbone
        z = encoder.embed(x)
        for block in encoder.blocks[:-1]:
            z = block(z)
        last = encoder.blocks[-1]
        weights = attention_weights(last.attention, last.norm1(z))  # (B, heads, 1 + N, 1 + N)
        return weights[:, :, 0, 1:].reshape(x.shape[0], self.heads, *encoder.grid)
