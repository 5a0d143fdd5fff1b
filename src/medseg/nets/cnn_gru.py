"""CNN + bidirectional GRU: a classifier of image sequences (slices of a volume, frames).

A CNN encoder (:mod:`medseg.nets.encoders`: a small plain CNN or any registered classifier's
backbone) turns each element of the sequence into a feature vector; a bidirectional GRU reads
the sequence of vectors; a linear head classifies the whole sequence (from the GRU's last
forward and backward states) or, with ``per_element=True``, every element (from the GRU
output at that position). The seeds' chest X-ray table compares ResNet152V2 + GRU and
+ Bi-GRU; this is that architecture with a configurable encoder.

Input ``(B, C, T, *spatial)``: ``T`` elements, each a ``spatial_dims``-dimensional image
(``spatial_dims=2``: a stack of slices or a video of 2D frames).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.encoders import build_encoder


class CNNGRU(nn.Module):
    """``(B, C, T, *spatial) -> (B, K)`` sequence logits, or ``(B, K, T)`` per element.

    Args:
        spatial_dims: dimensions of each element (2: slices/frames).
        in_channels: image channels.
        out_channels: classes ``K``.
        encoder: ``"plain"`` or a registered classifier (``"resnet18"``, ...), shared by
            every element.
        encoder_config: the encoder's options (``plain``: ``features``, ``norm``).
        hidden_size: GRU state size per direction.
        num_layers: stacked GRU layers.
        bidirectional: read the sequence both ways (the seeds' Bi-GRU).
        per_element: one prediction per element ``(B, K, T)`` (channels second, so
            ``F.cross_entropy(out, labels)`` with ``labels`` ``(B, T)`` works).
        dropout: dropout on the encoder features and before the head.

    Example:
        >>> net = CNNGRU(2, 1, 3, encoder_config={"features": (4, 8)}, hidden_size=8)
        >>> net(torch.zeros(2, 1, 5, 16, 16)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        encoder: str = "plain",
        encoder_config: Mapping[str, Any] | None = None,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = True,
        per_element: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if hidden_size < 1 or num_layers < 1:
            raise ConfigError(
                f"cnn_gru needs hidden_size and num_layers >= 1, got {hidden_size}, {num_layers}"
            )
        self.spatial_dims = spatial_dims
        self.encoder = build_encoder(encoder, spatial_dims, in_channels, encoder_config)
        self.backbone = self.encoder.backbone
        self.gru = nn.GRU(
            self.encoder.num_features,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
        )
        self.dropout = nn.Dropout(dropout)
        self.directions = 2 if bidirectional else 1
        self.head = nn.Linear(self.directions * hidden_size, out_channels)
        self.per_element = per_element

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 3 + self.spatial_dims:
            raise ValueError(
                f"CNNGRU expects (B, C, T, *spatial) with {self.spatial_dims} spatial axes, "
                f"got shape {tuple(x.shape)}"
            )
        if min(x.shape[3:]) < self.encoder.min_input_size:
            raise ValueError(
                f"CNNGRU elements of size {tuple(x.shape[3:])} are too small for the encoder: "
                f"it needs at least {self.encoder.min_input_size} per axis"
            )

    def element_features(self, x: Tensor) -> Tensor:
        """Encoder features of every element: ``(B, C, T, *spatial) -> (B, T, F)``."""
        self._check_input(x)
        b, c, t = x.shape[:3]
        frames = x.movedim(2, 1).reshape(b * t, c, *x.shape[3:])
        return self.encoder(frames).view(b, t, -1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K)``, or ``(B, K, T)`` with ``per_element``."""
        outputs, last = self.gru(self.dropout(self.element_features(x)))
        if self.per_element:
            return self.head(self.dropout(outputs)).movedim(2, 1)
        # last layer's final states: forward (read to T) and backward (read back to 1)
        final = torch.cat(list(last[-self.directions :]), dim=1)
        return self.head(self.dropout(final))
