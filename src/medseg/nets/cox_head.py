"""A CNN with one log-risk output for survival analysis (Cox proportional hazards).

Mobadersany et al. (PNAS 2018, the seeds' pathology example) put a Cox model on a CNN: the
network maps an image to a log-risk ``eta``; the hazard is ``h(t | x) = h0(t) exp(eta(x))``,
trained with the negative Cox partial log-likelihood
(:func:`medseg.losses.cox.cox_partial_likelihood_loss`) and scored with Harrell's C-index
(:func:`medseg.metrics.survival.concordance_index`). See ``docs/survival.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from medseg.nets.encoders import build_encoder


class CoxHead(nn.Module):
    """Encoder -> dropout -> linear without bias: ``(B, C, *spatial) -> (B, out_channels)``
    log-risks (``out_channels=1`` for one endpoint; several give independent Cox models).

    The linear layer has no bias: the partial likelihood does not change when a constant is
    added to every log-risk, so a bias would never be trained.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: log-risk outputs (usually 1).
        encoder: ``"plain"`` or a registered CNN classifier (``"resnet18"``, ...).
        encoder_config: the encoder's options.
        dropout: dropout before the linear layer.

    Example:
        >>> import torch
        >>> net = CoxHead(2, 1, 1, encoder_config={"features": (4, 8)})
        >>> net(torch.zeros(3, 1, 16, 16)).shape
        torch.Size([3, 1])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int = 1,
        *,
        encoder: str = "plain",
        encoder_config: Mapping[str, Any] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = build_encoder(encoder, spatial_dims, in_channels, encoder_config)
        self.backbone = self.encoder.backbone
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.encoder.num_features, out_channels, bias=False)
        )
        self.spatial_dims = spatial_dims
        self.min_input_size = (self.encoder.min_input_size,) * spatial_dims

    def features(self, x: Tensor) -> Tensor:
        """The encoder's last feature map (the Grad-CAM target)."""
        return self.encoder.features(x)

    def forward(self, x: Tensor) -> Tensor:
        """Log-risks ``(B, out_channels)``."""
        if x.dim() != 2 + self.spatial_dims:
            raise ValueError(
                f"CoxHead expects (B, C, *spatial) with {self.spatial_dims} spatial axes, "
                f"got shape {tuple(x.shape)}"
            )
        return self.head(self.encoder(x))
