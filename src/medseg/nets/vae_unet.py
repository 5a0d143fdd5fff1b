"""Autoencoder-regularised U-Net (Myronenko 2018, BraTS winner).

A residual encoder feeds two decoders: the segmentation decoder (with skips) and, in training
mode only, a variational auto-encoder branch that reconstructs the input image from the
bottleneck alone. The reconstruction (L2) and Kullback-Leibler terms
(:class:`medseg.losses.VAELoss`: ``L = L_dice + 0.1 L_L2 + 0.1 L_KL``) regularise the shared
encoder when labelled data are scarce.

Differences from the paper, chosen so that any divisible input size works: the latent is a
feature map (``latent_channels`` means and log-variances per bottleneck voxel) instead of a
256-d vector behind a dense layer sized for one fixed 160x192x128 crop; the segmentation
decoder concatenates skips (the paper adds them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from medseg.nets.blocks import ConvNormAct, ResidualBlock, pointwise_conv
from medseg.nets.encoder_decoder import UNetDecoder, UNetEncoder
from medseg.nets.ops import ActName, NormName
from medseg.nets.sampling import Upsample
from medseg.nets.shapes import PerStage, check_divisible


class VAEOutput(NamedTuple):
    """Training-mode output of :class:`VAEUNet` (a tuple, so it unpacks positionally).

    Attributes:
        logits: ``(B, K, *spatial)`` segmentation logits.
        reconstruction: ``(B, C_in, *spatial)`` reconstructed input image.
        mu: ``(B, latent_channels, *bottleneck)`` latent means.
        logvar: ``(B, latent_channels, *bottleneck)`` latent log-variances.
    """

    logits: Tensor
    reconstruction: Tensor
    mu: Tensor
    logvar: Tensor


class VAEBranch(nn.Module):
    """Bottleneck -> latent Gaussian -> sample -> image, mirroring the encoder's strides.

    Shapes:
        ``(B, features[-1], *bottleneck) -> (reconstruction (B, out_channels, *spatial), mu,
        logvar)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        encoder: UNetEncoder,
        out_channels: int,
        *,
        latent_channels: int = 16,
        norm: NormName = "group",
        act: ActName = "relu",
    ) -> None:
        super().__init__()
        feats, strides = encoder.features, encoder.strides
        self.to_latent = ConvNormAct(
            spatial_dims, feats[-1], 2 * latent_channels, norm="none", act="none"
        )
        self.from_latent = ConvNormAct(
            spatial_dims, latent_channels, feats[-1], kernel_size=1, norm=norm, act=act
        )
        self.ups, self.stages = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(feats) - 1)):
            self.ups.append(
                Upsample(
                    spatial_dims, feats[i + 1], feats[i], scale=strides[i + 1], mode="interpolate"
                )
            )
            self.stages.append(ResidualBlock(spatial_dims, feats[i], feats[i], norm=norm, act=act))
        self.out = pointwise_conv(spatial_dims, feats[0], out_channels)

    def forward(self, bottleneck: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.to_latent(bottleneck).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation trick
        x = self.from_latent(z)
        for up, stage in zip(self.ups, self.stages, strict=True):
            x = stage(up(x))
        return self.out(x), mu, logvar


class VAEUNet(nn.Module):
    """Segmentation U-Net with a VAE regularisation branch (Myronenko 2018).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels (also the reconstruction's channels).
        out_channels: classes ``K``.
        features: channels per stage (paper: 32, 64, 128, 256).
        strides: per stage (per axis) strides, the first all 1.
        blocks_per_stage: residual blocks per encoder stage (paper: 1, 2, 2, 4); the decoders
            use one per level.
        latent_channels: channels of the latent mean and log-variance maps.
        norm: normalisation (paper: group norm, 8 groups).
        act: activation (paper: ReLU).

    Returns (``forward``):
        eval mode: logits ``(B, K, *spatial)``. Training mode: :class:`VAEOutput`
        ``(logits, reconstruction, mu, logvar)``; the VAE branch's parameters get gradients
        only through the L2/KL terms and are unused in eval mode.

    Example:
        >>> net = VAEUNet(2, 2, 3, features=(4, 8, 16), blocks_per_stage=1).train()
        >>> out = net(torch.zeros(1, 2, 8, 8))
        >>> out.logits.shape, out.reconstruction.shape
        (torch.Size([1, 3, 8, 8]), torch.Size([1, 2, 8, 8]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] = (32, 64, 128, 256),
        strides: PerStage | None = None,
        blocks_per_stage: int | Sequence[int] = (1, 2, 2, 4),
        latent_channels: int = 16,
        norm: NormName = "group",
        act: ActName = "relu",
    ) -> None:
        super().__init__()
        block = {"residual": True, "norm": norm, "act": act}
        self.encoder = UNetEncoder(
            spatial_dims,
            in_channels,
            features=features,
            strides=strides,
            blocks_per_stage=blocks_per_stage,
            **block,
        )
        self.decoder = UNetDecoder(
            spatial_dims, self.encoder, blocks_per_stage=1, upsample="interpolate", **block
        )
        self.head = pointwise_conv(spatial_dims, self.encoder.features[0], out_channels)
        self.vae = VAEBranch(
            spatial_dims,
            self.encoder,
            in_channels,
            latent_channels=latent_channels,
            norm=norm,
            act=act,
        )

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """Per-axis factor the input spatial size must be a multiple of."""
        return self.encoder.required_divisor

    def forward(self, x: Tensor) -> Tensor | VAEOutput:
        """Logits in eval mode; :class:`VAEOutput` in training mode."""
        check_divisible(x.shape[2:], self.required_divisor)
        skips = self.encoder(x)
        logits = self.head(self.decoder(skips)[0])
        if not self.training:
            return logits
        reconstruction, mu, logvar = self.vae(skips[-1])
        return VAEOutput(logits, reconstruction, mu, logvar)
