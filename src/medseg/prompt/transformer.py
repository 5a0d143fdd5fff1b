"""SAM's two-way transformer (Kirillov et al. 2023), N-dimensional.

Prompt tokens and image tokens attend to each other in turn: each block runs token
self-attention, token-to-image cross-attention, an MLP on the tokens and image-to-token
cross-attention; a final token-to-image attention follows. The image embedding
``(B, C, *grid)`` is flattened to ``prod(grid)`` tokens, so the same code serves 2D and 3D.
Parameter names are SAM's, so its ``mask_decoder.transformer.*`` weights load by name.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


class Attention(nn.Module):
    """Multi-head attention whose projections may shrink the width by ``downsample_rate``
    (SAM's cross-attention uses 2 to halve the cost on the many image tokens).

    Args:
        embedding_dim: token width ``C``.
        num_heads: heads; must divide ``embedding_dim // downsample_rate``.
        downsample_rate: ``C / internal width``.

    Shapes:
        ``q (B, Nq, C)``, ``k (B, Nk, C)``, ``v (B, Nk, C)`` -> ``(B, Nq, C)``.

    Example:
        >>> import torch
        >>> tokens, image = torch.zeros(1, 3, 8), torch.zeros(1, 5, 8)
        >>> Attention(8, 2, 2)(tokens, image, image).shape
        torch.Size([1, 3, 8])
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(
                f"num_heads {num_heads} must divide the attention width {self.internal_dim}"
            )
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _heads(self, x: Tensor) -> Tensor:
        batch, tokens, width = x.shape
        return x.reshape(batch, tokens, self.num_heads, width // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = (
            self._heads(self.q_proj(q)),
            self._heads(self.k_proj(k)),
            self._heads(self.v_proj(v)),
        )
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, Nq, width / heads)
        out = out.transpose(1, 2).flatten(2)
        return self.out_proj(out)


class MLPBlock(nn.Module):
    """``lin2(act(lin1(x)))`` (SAM's ``MLPBlock``); ReLU in the two-way transformer."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.act(self.lin1(x)))


class TwoWayAttentionBlock(nn.Module):
    """One block: token self-attention, token-to-image attention, token MLP, image-to-token
    attention, each followed by a residual sum and a LayerNorm (``norm1..norm4``).

    Args:
        embedding_dim: token width.
        num_heads: attention heads.
        mlp_dim: hidden width of the token MLP.
        attention_downsample_rate: width reduction of the two cross-attentions.
        skip_first_layer_pe: the first block's self-attention replaces the tokens instead of
            adding to them, without positional encodings (as SAM).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Tokens ``queries (B, Nq, C)`` and image tokens ``keys (B, Nk, C)``, updated."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)

        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys))
        queries = self.norm3(queries + self.mlp(queries))

        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """The two-way transformer of SAM's mask decoder, for any number of spatial axes.

    Args:
        depth: number of :class:`TwoWayAttentionBlock`.
        embedding_dim: channel width ``C`` of the image embedding and the tokens.
        num_heads: attention heads.
        mlp_dim: hidden width of the token MLPs.
        attention_downsample_rate: width reduction of the cross-attentions.

    Shapes:
        ``image_embedding (B, C, *grid)``, ``image_pe (B, C, *grid)``,
        ``point_embedding (B, N, C)`` -> ``(tokens (B, N, C), image tokens (B, prod(grid), C))``.

    Example:
        >>> import torch
        >>> net = TwoWayTransformer(depth=1, embedding_dim=8, num_heads=2, mlp_dim=16)
        >>> tokens, image = net(torch.zeros(1, 8, 2, 3, 4), torch.zeros(1, 8, 2, 3, 4),
        ...                     torch.zeros(1, 5, 8))
        >>> tokens.shape, image.shape
        (torch.Size([1, 5, 8]), torch.Size([1, 24, 8]))
    """

    def __init__(
        self,
        depth: int = 2,
        embedding_dim: int = 256,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth, self.embedding_dim = depth, embedding_dim
        self.num_heads, self.mlp_dim = num_heads, mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim,
                num_heads,
                mlp_dim,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=i == 0,
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor
    ) -> tuple[Tensor, Tensor]:
        keys = image_embedding.flatten(2).transpose(1, 2)  # (B, prod(grid), C)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, query_pe=point_embedding, key_pe=key_pe)
        attn_out = self.final_attn_token_to_image(
            q=queries + point_embedding, k=keys + key_pe, v=keys
        )
        return self.norm_final_attn(queries + attn_out), keys
