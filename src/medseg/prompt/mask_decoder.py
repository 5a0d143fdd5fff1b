"""SAM's mask decoder (Kirillov et al. 2023), N-dimensional.

Learnt output tokens (one IoU token, ``num_multimask_outputs + 1`` mask tokens) are
concatenated with the sparse prompt tokens and run through the two-way transformer together
with the image embedding (plus the dense prompt embedding). The updated image tokens are
up-sampled 4x by two transposed convolutions; each mask token, through its own MLP
("hypernetwork"), gives the weights of a per-voxel dot product: one mask logit map per token.
The IoU token predicts each mask's quality. Parameter names are SAM's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medseg.nets.ops import conv_transpose_type
from medseg.prompt.layers import MLP, ChannelLayerNorm


class MaskDecoder(nn.Module):
    """Predicts masks and their IoU from image and prompt embeddings.

    Args:
        transformer_dim: channel width ``C`` (divisible by 8).
        transformer: a :class:`~medseg.prompt.transformer.TwoWayTransformer` of width ``C``.
        num_multimask_outputs: masks predicted for ambiguous prompts (SAM: 3).
        iou_head_depth: layers of the IoU MLP.
        iou_head_hidden_dim: hidden width of the IoU MLP.
        spatial_dims: 2 or 3.

    Shapes:
        ``image_embeddings (B, C, *grid)`` (or ``(1, C, *grid)``, shared by every prompt set),
        ``image_pe (1, C, *grid)``, ``sparse_prompt_embeddings (B, N, C)``,
        ``dense_prompt_embeddings (B, C, *grid)`` -> ``masks (B, M, *4 grid)``,
        ``iou_pred (B, M)`` with ``M = num_multimask_outputs`` if ``multimask_output``
        else 1.

    Example:
        >>> from medseg.prompt.transformer import TwoWayTransformer
        >>> decoder = MaskDecoder(16, TwoWayTransformer(1, 16, 2, 32), spatial_dims=3,
        ...                       iou_head_hidden_dim=16)
        >>> masks, iou = decoder(torch.zeros(1, 16, 2, 2, 2), torch.zeros(1, 16, 2, 2, 2),
        ...                      torch.zeros(2, 3, 16), torch.zeros(2, 16, 2, 2, 2), True)
        >>> masks.shape, iou.shape
        (torch.Size([2, 3, 8, 8, 8]), torch.Size([2, 3]))
    """

    def __init__(
        self,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        *,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        self.transformer_dim, self.transformer = transformer_dim, transformer
        self.num_multimask_outputs, self.spatial_dims = num_multimask_outputs, spatial_dims
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        up = conv_transpose_type(spatial_dims)
        self.output_upscaling = nn.Sequential(
            up(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            ChannelLayerNorm(transformer_dim // 4),
            nn.GELU(),
            up(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
    ) -> tuple[Tensor, Tensor]:
        """Masks ``(B, M, *4 grid)`` and predicted IoU ``(B, M)`` (see class)."""
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        # token 0 is the single-mask output, tokens 1.. the multimask outputs (as SAM)
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, chosen], iou_pred[:, chosen]

    def predict_masks(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """All ``num_mask_tokens`` masks and IoU predictions, before the multimask choice."""
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.expand(batch, -1, -1), sparse_prompt_embeddings], 1)
        # one image embedding shared by all prompt sets (SAM's use), or one per prompt set
        if image_embeddings.shape[0] not in (1, batch):
            raise ValueError(
                f"{image_embeddings.shape[0]} image embeddings for {batch} prompt sets: "
                "give one embedding, or one per prompt set"
            )
        src = image_embeddings.expand(batch, *image_embeddings.shape[1:])
        src = src + dense_prompt_embeddings
        pos_src = image_pe.expand(batch, *image_pe.shape[1:])
        channels, grid = src.shape[1], src.shape[2:]

        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens]

        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(batch, channels, *grid))
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, num_mask_tokens, C / 8)
        masks = (hyper_in @ upscaled.flatten(2)).reshape(batch, -1, *upscaled.shape[2:])
        return masks, self.iou_prediction_head(iou_token_out)
