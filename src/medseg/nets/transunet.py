"""TransUNet (Chen et al. 2021): a CNN encoder, a ViT on its 1/16 feature map, and a
cascaded up-sampler with skips from the CNN, N-dimensional.

The hybrid encoder of "R50-ViT-B/16": a ResNet-50 v2 stem and three stages (3-4-9 bottleneck
units, GroupNorm, weight-standardised convolutions; :mod:`medseg.nets.resnet_v2`) bring the
image to 1/16; each voxel of that map becomes a token (patch size 1), and 12 ViT-B blocks
(768 wide, 12 heads, MLP 3072) follow. The cascaded up-sampler lays the tokens out as a map,
applies a 3x3 conv to ``head_channels`` (512), then four times: 2x (multi-)linear
up-sampling, concatenation of the CNN feature at that scale (1/8, 1/4, 1/2; none at full
size) and two 3x3 conv-norm-ReLU, to widths 256-128-64-16; a 3x3 convolution gives the logits.
Structure and widths follow the official code (``vit_seg_modeling.py``): 105.3 M parameters
for 9 classes at 224^2 with 3 input channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.blocks import ConvNormAct
from medseg.nets.ops import NormName, conv_type, interpolation_mode
from medseg.nets.resnet_v2 import ResNetV2Encoder
from medseg.nets.transformer.sizes import check_input_size
from medseg.nets.transformer.tokens import TokenEncoder, tokens_to_map

#: ``preset -> options``: ``r50_vit_b16`` is the paper's; ``cpu`` a small CNN (width 16, one
#: unit per stage) and a narrow, shallow ViT (128 wide, 4 blocks) for CPUs.
TRANSUNET_PRESETS: dict[str, dict[str, Any]] = {
    "r50_vit_b16": {
        "width": 64,
        "block_units": (3, 4, 9),
        "dim": 768,
        "depth": 12,
        "heads": 12,
        "mlp_dim": 3072,
        "head_channels": 512,
        "decoder_channels": (256, 128, 64, 16),
        "norm": "batch",
    },
    "cpu": {
        "width": 16,
        "block_units": (1, 1, 1),
        "dim": 128,
        "depth": 4,
        "heads": 4,
        "mlp_dim": 256,
        "head_channels": 64,
        "decoder_channels": (64, 32, 16, 8),
        "norm": "group",
    },
}


class CascadedUpsampler(nn.Module):
    """TransUNet's decoder ("CUP"): a 3x3 conv on the token map, then per level a 2x
    (multi-)linear up-sampling (``align_corners=True``, as the official
    ``UpsamplingBilinear2d``), the skip concatenated (if any) and two 3x3 conv-norm-ReLU.

    Shapes:
        ``x: (B, in_channels, *grid)``, ``skips[i]: (B, skip_channels[i], *grid * 2**(i+1))``
        (or None) -> ``(B, decoder_channels[-1], *grid * 2**len(decoder_channels))``.

    Example:
        >>> cup = CascadedUpsampler(2, 8, 8, (4, 4), (4, 0), norm="batch")
        >>> cup(torch.zeros(1, 8, 2, 2), [torch.zeros(1, 4, 4, 4), None]).shape
        torch.Size([1, 4, 8, 8])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        head_channels: int,
        decoder_channels: Sequence[int],
        skip_channels: Sequence[int],
        *,
        norm: NormName,
    ) -> None:
        super().__init__()
        block = {"norm": norm, "act": "relu"}
        self.conv_more = ConvNormAct(spatial_dims, in_channels, head_channels, **block)
        widths = (head_channels, *decoder_channels)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                ConvNormAct(spatial_dims, w_in + skip, w_out, **block),
                ConvNormAct(spatial_dims, w_out, w_out, **block),
            )
            for w_in, w_out, skip in zip(widths[:-1], widths[1:], skip_channels, strict=True)
        )
        self.mode = interpolation_mode(spatial_dims)

    def forward(self, x: Tensor, skips: Sequence[Tensor | None]) -> Tensor:
        x = self.conv_more(x)
        for block, skip in zip(self.blocks, skips, strict=True):
            x = F.interpolate(x, scale_factor=2.0, mode=self.mode, align_corners=True)
            x = block(x if skip is None else torch.cat([x, skip], dim=1))
        return x


class TransUNet(nn.Module):
    """TransUNet: ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)`` logits.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels (the official code repeats a grey image to 3 channels
            for its ImageNet weights; here the stem takes ``in_channels`` directly).
        out_channels: classes ``K``.
        preset: ``cpu`` (default; small) or ``r50_vit_b16`` (the paper's R50-ViT-B/16).
        image_size: the nominal input size of the position embedding (default 224 in 1D/2D
            as the paper, 96 in 3D); other multiples of 16 get it interpolated.
        width, block_units: the CNN's stem width and bottleneck units per stage (3 stages).
        dim, depth, heads, mlp_dim: the ViT's width, blocks, heads and MLP width.
        head_channels: width of the decoder's first 3x3 conv on the token map.
        decoder_channels: the 4 decoder levels' widths (1/8, 1/4, 1/2, full size).
        num_skips: CNN skips used, 0-3 (the paper's best: 3, at 1/8, 1/4 and 1/2).
        norm: the decoder's normalisation: ``batch`` in the paper; ``group`` (8 groups) in
            ``cpu``, defined on the 1-voxel token map of a 16^d input, where ``instance``
            is not.
            Every option left None takes the preset's value.
        dropout: dropout in the ViT (the official training uses 0.1).

    Raises:
        ConfigError: unknown preset, ``block_units`` without 3 stages, ``decoder_channels``
            without 4 levels, ``num_skips`` outside 0-3, ``dim`` not divisible by ``heads``;
            in ``forward``, an input not divisible by 16 (an ``InputSizeError``, also a
            ``ValueError``, naming the nearest valid sizes).

    Example:
        >>> net = TransUNet(3, 1, 2, image_size=32)
        >>> net.required_divisor, net(torch.zeros(1, 1, 16, 32, 32)).shape
        ((16, 16, 16), torch.Size([1, 2, 16, 32, 32]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        preset: Literal["cpu", "r50_vit_b16"] = "cpu",
        image_size: int | Sequence[int] | None = None,
        width: int | None = None,
        block_units: Sequence[int] | None = None,
        dim: int | None = None,
        depth: int | None = None,
        heads: int | None = None,
        mlp_dim: int | None = None,
        head_channels: int | None = None,
        decoder_channels: Sequence[int] | None = None,
        num_skips: int = 3,
        norm: NormName | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        given = {
            "width": width,
            "block_units": block_units,
            "dim": dim,
            "depth": depth,
            "heads": heads,
            "mlp_dim": mlp_dim,
            "head_channels": head_channels,
            "decoder_channels": decoder_channels,
            "norm": norm,
        }
        config = _resolve(preset, {k: v for k, v in given.items() if v is not None}, num_skips)
        self.cnn = ResNetV2Encoder(
            spatial_dims, in_channels, width=config["width"], block_units=config["block_units"]
        )
        nominal = (96 if spatial_dims == 3 else 224) if image_size is None else image_size
        if isinstance(nominal, int):
            nominal = (nominal,) * spatial_dims
        self.vit = TokenEncoder(
            spatial_dims,
            self.cnn.channels[-1],
            image_size=tuple(n // 16 for n in nominal),  # the 1/16 CNN map, patch size 1
            patch_size=1,
            dim=config["dim"],
            depth=config["depth"],
            heads=config["heads"],
            mlp_dim=config["mlp_dim"],
            dropout=dropout,
        )
        # CNN skips at 1/8, 1/4, 1/2 for the first num_skips decoder levels, none at full size
        skip_channels = [*self.cnn.channels[2::-1][:num_skips], 0, 0, 0, 0][:4]
        self.decoder = CascadedUpsampler(
            spatial_dims,
            config["dim"],
            config["head_channels"],
            config["decoder_channels"],
            skip_channels,
            norm=config["norm"],
        )
        self.head = conv_type(spatial_dims)(
            config["decoder_channels"][-1], out_channels, kernel_size=3, padding=1
        )
        self.num_skips, self.spatial_dims = num_skips, spatial_dims

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """16 along every axis (the CNN's total stride)."""
        return (16,) * self.spatial_dims

    def forward(self, x: Tensor) -> Tensor:
        check_input_size(x.shape[2:], self.required_divisor)
        features = self.cnn(x)  # 1/2, 1/4, 1/8, 1/16
        (tokens,), grid = self.vit(features[-1])
        skips: list[Tensor | None] = [*features[2::-1][: self.num_skips], None, None, None, None]
        return self.head(self.decoder(tokens_to_map(tokens, grid), skips[:4]))


def _resolve(preset: str, overrides: dict[str, Any], num_skips: int) -> dict[str, Any]:
    """The preset's options with the overrides, checked."""
    if preset not in TRANSUNET_PRESETS:
        raise ConfigError(
            f"TransUNet preset must be one of {', '.join(TRANSUNET_PRESETS)}; got {preset!r}"
        )
    config = {**TRANSUNET_PRESETS[preset], **overrides}
    if len(config["block_units"]) != 3 or min(config["block_units"]) < 1:
        raise ConfigError(
            f"TransUNet block_units must be 3 positive counts, got {config['block_units']}"
        )
    if len(config["decoder_channels"]) != 4:
        raise ConfigError(
            f"TransUNet decoder_channels must have 4 levels, got {config['decoder_channels']}"
        )
    if not 0 <= num_skips <= 3:
        raise ConfigError(f"TransUNet num_skips must be 0, 1, 2 or 3, got {num_skips}")
    if config["dim"] % config["heads"]:
        raise ConfigError(
            f"TransUNet dim {config['dim']} must be divisible by heads {config['heads']}"
        )
    if config["norm"] not in ("instance", "batch", "group"):
        raise ConfigError(
            f"TransUNet norm must be instance, batch or group; got {config['norm']!r}"
        )
    return config
