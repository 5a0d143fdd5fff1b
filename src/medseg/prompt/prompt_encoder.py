"""SAM's prompt encoder (Kirillov et al. 2023), N-dimensional.

Points and box corners become sparse tokens: a random-Fourier-feature encoding of the
position (Tancik et al. 2020) plus a learnt embedding of the kind (negative / positive point,
low / high box corner, padding). A low-resolution mask prompt becomes a dense embedding
through two stride-2 convolutions. Coordinates are voxel indices in **array axis order**
(2D ``(y, x)``, 3D ``(z, y, x)``); SAM uses ``(x, y)``, so loading SAM's weights reverses the
rows of ``pe_layer.positional_encoding_gaussian_matrix`` and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.nets.ops import conv_type
from medseg.prompt.layers import ChannelLayerNorm


class FourierPositionEncoding(nn.Module):
    """Random Fourier features of positions normalised to ``[0, 1]`` (SAM's
    ``PositionEmbeddingRandom``): ``[sin(2 pi (2p - 1) G), cos(2 pi (2p - 1) G)]``.

    Args:
        num_pos_feats: columns of ``G``; the encoding has ``2 * num_pos_feats`` channels.
        spatial_dims: rows of ``G`` (one per axis, array order).
        scale: standard deviation of ``G``'s entries.

    Example:
        >>> pe = FourierPositionEncoding(4, spatial_dims=3)
        >>> pe((2, 3, 5)).shape, pe.encode(torch.rand(1, 7, 3)).shape
        (torch.Size([8, 2, 3, 5]), torch.Size([1, 7, 8]))
    """

    def __init__(self, num_pos_feats: int, *, spatial_dims: int = 2, scale: float = 1.0) -> None:
        super().__init__()
        # a buffer, as SAM's: saved in the state dict, never trained
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn(spatial_dims, num_pos_feats)
        )

    def encode(self, coords: Tensor) -> Tensor:
        """``(*, D)`` positions in ``[0, 1]`` -> ``(*, 2 * num_pos_feats)`` features."""
        projected = 2 * math.pi * ((2 * coords - 1) @ self.positional_encoding_gaussian_matrix)
        return torch.cat([projected.sin(), projected.cos()], dim=-1)

    def forward(self, size: Sequence[int]) -> Tensor:
        """The encoding of every voxel centre of a grid: ``(2 * num_pos_feats, *size)``."""
        device = self.positional_encoding_gaussian_matrix.device
        axes = [(torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n for n in size]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (*size, D)
        return self.encode(grid).movedim(-1, 0)

    def forward_with_coords(self, coords: Tensor, image_size: Sequence[int]) -> Tensor:
        """``(B, N, D)`` voxel coordinates (already shifted to centres) -> ``(B, N, C)``."""
        extent = torch.as_tensor(tuple(image_size), dtype=torch.float32, device=coords.device)
        return self.encode(coords.float() / extent)


class PromptEncoder(nn.Module):
    """Embeds point, box and mask prompts for :class:`~medseg.prompt.mask_decoder.MaskDecoder`.

    Args:
        embed_dim: token / embedding width ``C``.
        image_embedding_size: ``grid``, the image embedding's spatial size.
        input_image_size: the image size the coordinates refer to (array order).
        mask_in_chans: hidden channels of the mask down-scaling.
        spatial_dims: 2 or 3 (``D``).

    Attributes:
        mask_input_size: ``4 * grid``, the size of a mask prompt (and of the decoder's
            low-resolution logits).

    Shapes:
        ``points``: ``(coords (B, N, D), labels (B, N))``, labels 1 positive, 0 negative,
        -1 padding; ``boxes``: ``(B, 2 D)`` as ``(lo_0..lo_{D-1}, hi_0..hi_{D-1})``; ``masks``:
        ``(B, 1, *mask_input_size)`` logits. Returns sparse ``(B, N', C)`` (``N'`` = points,
        plus one padding token when there is no box, plus 2 per box) and dense
        ``(B, C, *grid)``.

    Example:
        >>> enc = PromptEncoder(8, (4, 4, 4), (32, 32, 32), spatial_dims=3)
        >>> sparse, dense = enc((torch.rand(2, 3, 3) * 31, torch.ones(2, 3)), None, None)
        >>> sparse.shape, dense.shape
        (torch.Size([2, 4, 8]), torch.Size([2, 8, 4, 4, 4]))
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, ...],
        input_image_size: tuple[int, ...],
        mask_in_chans: int = 16,
        *,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        if len(image_embedding_size) != spatial_dims or len(input_image_size) != spatial_dims:
            raise ValueError(
                f"image_embedding_size {tuple(image_embedding_size)} and input_image_size "
                f"{tuple(input_image_size)} need {spatial_dims} entries (spatial_dims)"
            )
        self.embed_dim, self.spatial_dims = embed_dim, spatial_dims
        self.image_embedding_size = tuple(int(n) for n in image_embedding_size)
        self.input_image_size = tuple(int(n) for n in input_image_size)
        self.pe_layer = FourierPositionEncoding(embed_dim // 2, spatial_dims=spatial_dims)
        # 0 negative point, 1 positive point, 2 low box corner, 3 high box corner
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = tuple(4 * n for n in self.image_embedding_size)
        conv = conv_type(spatial_dims)
        self.mask_downscaling = nn.Sequential(
            conv(1, mask_in_chans // 4, kernel_size=2, stride=2),
            ChannelLayerNorm(mask_in_chans // 4),
            nn.GELU(),
            conv(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            ChannelLayerNorm(mask_in_chans),
            nn.GELU(),
            conv(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> Tensor:
        """The positional encoding of every image-embedding voxel, ``(1, C, *grid)``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, coords: Tensor, labels: Tensor, pad: bool) -> Tensor:
        coords = coords.float() + 0.5  # shift to voxel centres
        if pad:  # SAM adds one padding token when there is no box
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, coords.shape[2])], 1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        encoding = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        labels = labels[..., None]
        # masks instead of in-place indexing, so autograd sees a plain expression
        encoding = encoding * (labels != -1)
        encoding = encoding + self.not_a_point_embed.weight * (labels == -1)
        encoding = encoding + self.point_embeddings[0].weight * (labels == 0)
        return encoding + self.point_embeddings[1].weight * (labels == 1)

    def _embed_boxes(self, boxes: Tensor) -> Tensor:
        corners = (boxes.float() + 0.5).reshape(-1, 2, self.spatial_dims)
        encoding = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        kinds = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return encoding + kinds

    def forward(
        self,
        points: tuple[Tensor, Tensor] | None,
        boxes: Tensor | None,
        masks: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Sparse ``(B, N', C)`` and dense ``(B, C, *grid)`` prompt embeddings (see class)."""
        if points is not None:
            batch = points[0].shape[0]
        elif boxes is not None:
            batch = boxes.shape[0]
        else:
            batch = 1 if masks is None else masks.shape[0]
        weight = self.no_mask_embed.weight
        sparse = weight.new_empty(batch, 0, self.embed_dim)
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, boxes is None)], 1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = weight.reshape(1, -1, *(1,) * self.spatial_dims)
            dense = dense.expand(batch, -1, *self.image_embedding_size)
        return sparse, dense
