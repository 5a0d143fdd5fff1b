"""Attention blocks: multi-head self-attention (for transformers) and the additive attention
gate of Attention U-Net.

Self-attention (Vaswani et al. 2017): ``Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V``
over tokens ``(B, N, C)``; :class:`SpatialSelfAttention` applies it to feature maps by
treating every voxel as a token. The attention gate (Oktay et al. 2018) computes, for a skip
feature ``x`` and a gating signal ``g`` at the same resolution,

    ``q = psi^T relu(W_x^T x + W_g^T g + b_g) + b_psi``,  ``alpha = sigmoid(q)``,

and returns ``alpha * x``: a per-voxel weight in ``[0, 1]`` that suppresses irrelevant regions.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from medseg.nets.blocks import pointwise_conv
from medseg.nets.ops import norm_layer


class MultiHeadSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention on tokens.

    Args:
        dim: token width ``C`` (a multiple of ``num_heads``).
        num_heads: number of heads; each attends with width ``C / num_heads``.
        qkv_bias: bias on the query/key/value projection.
        dropout: dropout on the attention weights (training only).

    Shapes:
        ``(B, N, C) -> (B, N, C)``.

    Example:
        >>> import torch
        >>> MultiHeadSelfAttention(8, num_heads=2)(torch.zeros(2, 5, 8)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(
        self, dim: int, *, num_heads: int = 8, qkv_bias: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, C / heads)
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class SpatialSelfAttention(nn.Module):
    """Pre-norm residual self-attention over all voxels of a feature map:
    ``x + attention(norm(x))``, each voxel a token. Cost grows with ``N^2`` voxels, so use it
    at a coarse level (e.g. a U-Net bottleneck).

    Shapes:
        ``(B, C, *spatial) -> (B, C, *spatial)``.

    Example:
        >>> import torch
        >>> SpatialSelfAttention(3, 8, num_heads=2)(torch.zeros(1, 8, 2, 3, 3)).shape
        torch.Size([1, 8, 2, 3, 3])
    """

    def __init__(
        self, spatial_dims: int, channels: int, *, num_heads: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm = norm_layer("group", spatial_dims, channels)
        self.attention = MultiHeadSelfAttention(channels, num_heads=num_heads, dropout=dropout)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, N, C)
        out = self.attention(tokens).transpose(1, 2).reshape(x.shape)
        return x + out


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Oktay et al. 2018, eq. 1-2).

    The gating signal ``g`` is the decoder feature already up-sampled to the skip's
    resolution (as in MONAI and most implementations; the paper instead strides ``W_x`` down
    to ``g``'s grid and resamples ``alpha`` back up).

    Args:
        spatial_dims: 1, 2 or 3.
        skip_channels: channels of ``x`` (the encoder skip).
        gating_channels: channels of ``g``.
        inter_channels: width of the additive attention space (paper: ``skip_channels / 2``).

    Shapes:
        ``x: (B, C_x, *spatial)``, ``g: (B, C_g, *spatial) -> (B, C_x, *spatial)``;
        :meth:`coefficients` gives ``alpha`` ``(B, 1, *spatial)`` for inspection.

    Example:
        >>> import torch
        >>> gate = AttentionGate(2, 4, 6, 2)
        >>> gate(torch.zeros(1, 4, 5, 5), torch.zeros(1, 6, 5, 5)).shape
        torch.Size([1, 4, 5, 5])
    """

    def __init__(
        self, spatial_dims: int, skip_channels: int, gating_channels: int, inter_channels: int
    ) -> None:
        super().__init__()
        self.w_x = pointwise_conv(spatial_dims, skip_channels, inter_channels, bias=False)
        self.w_g = pointwise_conv(spatial_dims, gating_channels, inter_channels, bias=True)  # b_g
        self.psi = pointwise_conv(spatial_dims, inter_channels, 1, bias=True)  # b_psi

    def coefficients(self, x: Tensor, g: Tensor) -> Tensor:
        """The attention coefficients ``alpha`` ``(B, 1, *spatial)``, in ``[0, 1]``."""
        return self.psi(F.relu(self.w_x(x) + self.w_g(g))).sigmoid()

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        return x * self.coefficients(x, g)
