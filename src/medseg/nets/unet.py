"""U-Net and its plan-driven variants: residual, attention-gated and dilated (ASPP).

``UNet`` is the generic encoder-decoder with skips (Ronneberger et al. 2015; 3D: Cicek et
al. 2016; configured per stage as in nnU-Net, Isensee et al. 2021). ``ResidualUNet``,
``AttentionUNet`` and ``DilatedUNet`` are the same class with other defaults, so a plan can
reach every variant through options alone. The registry :data:`UNET_PRESETS` holds the two
papers' settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from medseg.nets.aspp import ASPP
from medseg.nets.blocks import pointwise_conv
from medseg.nets.encoder_decoder import DownsampleMode, UNetDecoder, UNetEncoder
from medseg.nets.ops import ActName, NormName
from medseg.nets.sampling import UpsampleMode
from medseg.nets.shapes import PerStage, check_divisible
from medseg.registry import Registry

#: The original papers' settings as registered builders of keyword options, e.g.
#: ``UNet(2, 1, 2, **UNET_PRESETS.build("ronneberger"))`` or :func:`unet_from_preset`. Both
#: use "same" padding (output size = input size) instead of the papers' unpadded
#: convolutions with cropped skips, and no dropout.
UNET_PRESETS = Registry("U-Net preset")


@UNET_PRESETS.register(
    "ronneberger", description="Ronneberger 2015: 2-D, 64..1024 features, max-pool, no norm"
)
def ronneberger() -> dict[str, Any]:
    """Ronneberger et al. 2015: 2 x (3x3 conv + ReLU), 2x2 max-pool, features 64..1024, 2x2
    up-convolution, no normalisation."""
    return {
        "features": (64, 128, 256, 512, 1024),
        "downsample": "maxpool",
        "upsample": "transpose",
        "norm": "none",
        "act": "relu",
    }


@UNET_PRESETS.register(
    "cicek", description="Cicek 2016 (3D U-Net): 3 down-samplings, batch norm, max-pool"
)
def cicek() -> dict[str, Any]:
    """Cicek et al. 2016 (3D U-Net): 3 down-samplings, batch norm, ReLU, 2x2x2 max-pool and
    up-convolution. (The paper's stage widths are 32/64, 64/128, 128/256, 256/512 for the two
    convolutions; here each stage has one width.)"""
    return {
        "features": (64, 128, 256, 512),
        "downsample": "maxpool",
        "upsample": "transpose",
        "norm": "batch",
        "act": "relu",
    }


class UNet(nn.Module):
    """Generic U-Net: ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)`` logits.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: classes ``K`` (logits; softmax/sigmoid/argmax outside the network).
        features: channels per stage, default ``(32, 64, 128, 256, 320)`` (doubling, 320 cap).
        kernel_sizes: per stage (per axis) kernel sizes, or one int.
        strides: per stage (per axis) strides, first all 1 (e.g. ``[1, (1, 2, 2), 2, 2]``
            pools only in-plane first). Default: 1, then 2 along every axis.
        dilations: per stage (per axis) dilations of the encoder convolutions.
        blocks_per_stage: conv (or residual) blocks per encoder stage.
        decoder_blocks_per_stage: conv blocks per decoder level (default: as the encoder;
            MONAI's ``AttentionUnet`` uses 1).
        residual: residual blocks.
        downsample: ``conv`` (strided convolution), ``maxpool`` or ``avgpool``.
        upsample: ``transpose`` or ``interpolate`` (1x1 conv + linear interpolation).
        norm: ``instance`` | ``batch`` | ``group`` | ``none``.
        act: ``leakyrelu`` | ``relu`` | ``elu`` | ``gelu``.
        dropout: channel-dropout probability in every block.
        deep_supervision: add a 1x1 head on every decoder level; in training mode
            ``forward`` then returns a list of logits, highest resolution first (see
            :class:`medseg.losses.DeepSupervisionLoss`); in eval mode only the full-resolution
            logits.
        attention_gates: additive attention gates on the skips (Oktay et al. 2018).
        aspp_rates: if given, an ASPP block with these dilation rates at the bottleneck.

    Raises:
        ConfigError: on inconsistent per-stage settings.
        ValueError: (in ``forward``) when the input size is not a multiple of
            :attr:`required_divisor`.

    Example:
        >>> import torch
        >>> net = UNet(3, 1, 3, features=(8, 16, 32), strides=[1, (1, 2, 2), 2])
        >>> net.required_divisor
        (2, 4, 4)
        >>> net(torch.zeros(1, 1, 4, 8, 8)).shape
        torch.Size([1, 3, 4, 8, 8])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] | None = None,
        kernel_sizes: PerStage = 3,
        strides: PerStage | None = None,
        dilations: PerStage = 1,
        blocks_per_stage: int | Sequence[int] = 2,
        decoder_blocks_per_stage: int | Sequence[int] | None = None,
        residual: bool = False,
        downsample: DownsampleMode = "conv",
        upsample: UpsampleMode = "transpose",
        norm: NormName = "instance",
        act: ActName = "leakyrelu",
        dropout: float = 0.0,
        deep_supervision: bool = False,
        attention_gates: bool = False,
        aspp_rates: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        block = {"residual": residual, "norm": norm, "act": act, "dropout": dropout}
        self.encoder = UNetEncoder(
            spatial_dims,
            in_channels,
            features=features,
            kernel_sizes=kernel_sizes,
            strides=strides,
            dilations=dilations,
            blocks_per_stage=blocks_per_stage,
            downsample=downsample,
            **block,
        )
        bottom = self.encoder.features[-1]
        self.aspp = (
            None
            if aspp_rates is None
            else ASPP(spatial_dims, bottom, bottom, rates=aspp_rates, norm=norm, act=act)
        )
        self.decoder = UNetDecoder(
            spatial_dims,
            self.encoder,
            blocks_per_stage=decoder_blocks_per_stage,
            upsample=upsample,
            attention_gates=attention_gates,
            **block,
        )
        self.deep_supervision = deep_supervision
        levels = self.decoder.features if deep_supervision else self.decoder.features[:1]
        self.heads = nn.ModuleList(pointwise_conv(spatial_dims, f, out_channels) for f in levels)

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """Per-axis factor the input spatial size must be a multiple of."""
        return self.encoder.required_divisor

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Logits ``(B, K, *spatial)``; a list (highest resolution first) in training mode with
        deep supervision."""
        check_divisible(x.shape[2:], self.required_divisor)
        skips = self.encoder(x)
        if self.aspp is not None:
            skips = [*skips[:-1], self.aspp(skips[-1])]
        features = self.decoder(skips)
        if self.training and self.deep_supervision:
            return [head(f) for head, f in zip(self.heads, features, strict=True)]
        return self.heads[0](features[0])


class ResidualUNet(UNet):
    """U-Net with residual blocks (one residual block = two convolutions per stage by
    default). Options as :class:`UNet`."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
    ) -> None:
        options = {"residual": True, "blocks_per_stage": 1, **options}
        super().__init__(spatial_dims, in_channels, out_channels, **options)


class AttentionUNet(UNet):
    """Attention U-Net (Oktay et al. 2018): additive attention gates filter every skip with
    ``alpha = sigmoid(psi^T relu(W_x^T x + W_g^T g + b_g) + b_psi)``. Options as :class:`UNet`."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
    ) -> None:
        options = {"attention_gates": True, **options}
        super().__init__(spatial_dims, in_channels, out_channels, **options)


class DilatedUNet(UNet):
    """Dilated (atrous) U-Net: only two down-samplings; the deeper stages keep the 1/4
    resolution and grow their receptive field with dilations (1, 1, 2, 4), and an ASPP block
    (rates 2, 4, 6) aggregates context at the bottleneck (Chen et al., DeepLab v3). Input
    divisible by 4. Options as :class:`UNet`."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
    ) -> None:
        defaults = {
            "features": (32, 64, 128, 256),
            "strides": [1, 2, 2, 1],
            "dilations": [1, 1, 2, 4],
            "aspp_rates": (2, 4, 6),
        }
        super().__init__(spatial_dims, in_channels, out_channels, **{**defaults, **options})


def unet_from_preset(
    preset: str, spatial_dims: int, in_channels: int, out_channels: int, **overrides: Any
) -> UNet:
    """A :class:`UNet` with a paper's settings (:data:`UNET_PRESETS`), optionally overridden.

    Raises:
        ConfigError: for an unknown preset.

    Example:
        >>> net = unet_from_preset("cicek", 3, 1, 3, features=(4, 8, 16, 32))
        >>> net.required_divisor
        (8, 8, 8)
    """
    options = {**UNET_PRESETS.build(preset), **overrides}
    return UNet(spatial_dims, in_channels, out_channels, **options)
