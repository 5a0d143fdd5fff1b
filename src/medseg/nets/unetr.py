"""UNETR (Hatamizadeh et al. 2022): a ViT encoder on 16^d patches whose hidden states of
layers 3, 6, 9 and 12 are decoded like U-Net skips, N-dimensional.

The tokens of layer ``z_l`` are laid out as a ``(B, hidden, *grid)`` map at 1/16 of the input
and brought to 1/2, 1/4 and 1/8 by stacks of 2x transposed convolutions (each followed by a
conv block), so the four skips and the full-resolution conv block on the image form a
five-level U-Net decoder. The layout follows MONAI's ``UNETR`` (same blocks and widths, so
the same parameter count up to the ViT's query/key/value bias), written from the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.blocks import ConvStage, ResidualBlock, pointwise_conv
from medseg.nets.ops import NormName, conv_transpose_type
from medseg.nets.transformer.sizes import check_input_size
from medseg.nets.transformer.tokens import TokenEncoder, tokens_to_map

#: ``preset -> options``. ``base`` is the paper's (ViT-B, feature size 16); ``cpu`` a narrow,
#: shallow ViT for trying things out on a CPU.
UNETR_PRESETS: dict[str, dict[str, int]] = {
    "base": {"feature_size": 16, "hidden_size": 768, "mlp_dim": 3072, "num_heads": 12, "depth": 12},
    "cpu": {"feature_size": 8, "hidden_size": 96, "mlp_dim": 192, "num_heads": 4, "depth": 4},
}

#: UNETR's patch size along every axis: four 2x up-samplings bring the 1/16 tokens back.
PATCH = 16


def _conv_block(
    spatial_dims: int, in_channels: int, out_channels: int, *, residual: bool, norm: NormName
) -> nn.Module:
    """MONAI's ``UnetResBlock`` (residual) or ``UnetBasicBlock``: two 3x3 convolutions."""
    if residual:
        return ResidualBlock(spatial_dims, in_channels, out_channels, norm=norm, act="leakyrelu")
    return ConvStage(spatial_dims, in_channels, out_channels, num_blocks=2, norm=norm)


def _up(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    """A bias-free 2x transposed convolution (kernel 2, stride 2)."""
    return conv_transpose_type(spatial_dims)(
        in_channels, out_channels, kernel_size=2, stride=2, bias=False
    )


class ProjectionUpBlock(nn.Sequential):
    """A token map ``(B, hidden, *grid)`` up-sampled ``1 + num_layers`` times by 2, to
    ``out_channels``; with ``conv_block`` each further up-sampling is followed by a conv block
    (MONAI's ``UnetrPrUpBlock``).

    Example:
        >>> block = ProjectionUpBlock(2, 8, 4, 1, conv_block=True, residual=True, norm="instance")
        >>> block(torch.zeros(1, 8, 2, 2)).shape
        torch.Size([1, 4, 8, 8])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        *,
        conv_block: bool,
        residual: bool,
        norm: NormName,
    ) -> None:
        layers = [_up(spatial_dims, in_channels, out_channels)]
        for _ in range(num_layers):
            step = [_up(spatial_dims, out_channels, out_channels)]
            if conv_block:
                step.append(
                    _conv_block(
                        spatial_dims, out_channels, out_channels, residual=residual, norm=norm
                    )
                )
            layers.append(nn.Sequential(*step))
        super().__init__(*layers)


class SkipUpBlock(nn.Module):
    """Up-sample by 2 (transposed convolution), concatenate the skip, conv block (MONAI's
    ``UnetrUpBlock``).

    Shapes:
        ``x: (B, in_channels, *spatial)``, ``skip: (B, out_channels, *spatial * 2)`` ->
        ``(B, out_channels, *spatial * 2)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        residual: bool,
        norm: NormName,
    ) -> None:
        super().__init__()
        self.up = _up(spatial_dims, in_channels, out_channels)
        self.conv = _conv_block(
            spatial_dims, 2 * out_channels, out_channels, residual=residual, norm=norm
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNETR(nn.Module):
    """UNETR: ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)`` logits.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: classes ``K``.
        preset: ``cpu`` (default: feature size 8, ViT 96 wide, 4 blocks, 4 heads, MLP 192) or
            ``base`` (the paper's: feature size 16, ViT-B 768 wide, 12 blocks, 12 heads,
            MLP 3072).
        image_size: the nominal input size of the position embedding (default 96 in 3D, as
            the paper's BTCV patches, 224 otherwise); other multiples of 16 get it
            interpolated.
        feature_size, hidden_size, mlp_dim, num_heads, depth: override the preset's value.
        skip_layers: the 3 (1-based) ViT blocks decoded as skips at 1/2, 1/4 and 1/8 of the
            input; the last block feeds the bottom of the decoder. Default: evenly spaced,
            ``(3, 6, 9)`` for depth 12 (the paper's ``z3, z6, z9``; MONAI's code takes the
            outputs of blocks 4, 7 and 10).
        norm: ``instance`` | ``batch`` | ``group`` in the conv blocks.
        conv_block: conv blocks after the further up-samplings of the skips.
        res_block: residual conv blocks (else two plain conv-norm-act).
        dropout: dropout in the ViT.

    Raises:
        ConfigError: an unknown preset or norm, ``hidden_size`` not divisible by
            ``num_heads``, an ``image_size`` not divisible by 16, or bad ``skip_layers``;
            in ``forward``, an input size not divisible by :attr:`required_divisor` (an
            ``InputSizeError``, also a ``ValueError``, naming the nearest valid sizes).

    Example:
        >>> net = UNETR(2, 1, 3, image_size=32)
        >>> net.required_divisor, net(torch.zeros(1, 1, 32, 48)).shape
        ((16, 16), torch.Size([1, 3, 32, 48]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        preset: Literal["cpu", "base"] = "cpu",
        image_size: int | Sequence[int] | None = None,
        feature_size: int | None = None,
        hidden_size: int | None = None,
        mlp_dim: int | None = None,
        num_heads: int | None = None,
        depth: int | None = None,
        skip_layers: Sequence[int] | None = None,
        norm: NormName = "instance",
        conv_block: bool = True,
        res_block: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        config = _resolve(preset, feature_size, hidden_size, mlp_dim, num_heads, depth, norm)
        features, hidden, total = config["feature_size"], config["hidden_size"], config["depth"]
        skips = _skip_layers(skip_layers, total)
        self.vit = TokenEncoder(
            spatial_dims,
            in_channels,
            image_size=(96 if spatial_dims == 3 else 224) if image_size is None else image_size,
            patch_size=PATCH,
            dim=hidden,
            depth=total,
            heads=config["num_heads"],
            mlp_dim=config["mlp_dim"],
            output_layers=(*skips, total),
            dropout=dropout,
        )
        block = {"residual": res_block, "norm": norm}
        self.encoder1 = _conv_block(spatial_dims, in_channels, features, **block)
        # skip i (1/2, 1/4, 1/8 of the input): width features * 2**i, 3 - i extra up-samplings
        self.skip_blocks = nn.ModuleList(
            ProjectionUpBlock(
                spatial_dims, hidden, features * 2**i, 3 - i, conv_block=conv_block, **block
            )
            for i in (1, 2, 3)
        )
        widths = (hidden, 8 * features, 4 * features, 2 * features, features)
        self.decoder = nn.ModuleList(
            SkipUpBlock(spatial_dims, w_in, w_out, **block)
            for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.head = pointwise_conv(spatial_dims, features, out_channels)
        self.spatial_dims, self.skip_layers = spatial_dims, skips

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """The patch size, 16 along every axis."""
        return self.vit.patch_size

    def forward(self, x: Tensor) -> Tensor:
        check_input_size(x.shape[2:], self.required_divisor)
        states, grid = self.vit(x)
        maps = [tokens_to_map(state, grid) for state in states]  # 3 skips, then the last
        skips = [self.encoder1(x)]
        skips += [block(m) for block, m in zip(self.skip_blocks, maps[:3], strict=True)]
        y = maps[3]
        for up, skip in zip(self.decoder, reversed(skips), strict=True):
            y = up(y, skip)
        return self.head(y)


def _resolve(
    preset: str,
    feature_size: int | None,
    hidden_size: int | None,
    mlp_dim: int | None,
    num_heads: int | None,
    depth: int | None,
    norm: str,
) -> dict[str, int]:
    """The preset's options with the given overrides, checked."""
    if preset not in UNETR_PRESETS:
        raise ConfigError(f"UNETR preset must be one of {', '.join(UNETR_PRESETS)}; got {preset!r}")
    if norm not in ("instance", "batch", "group"):
        raise ConfigError(f"UNETR norm must be instance, batch or group; got {norm!r}")
    given: dict[str, Any] = {
        "feature_size": feature_size,
        "hidden_size": hidden_size,
        "mlp_dim": mlp_dim,
        "num_heads": num_heads,
        "depth": depth,
    }
    config = {**UNETR_PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
    if min(config.values()) < 1:
        raise ConfigError(f"UNETR sizes must be positive, got {config}")
    if config["depth"] < 4:
        raise ConfigError(
            f"UNETR needs depth >= 4 (3 skips + the last block), got {config['depth']}"
        )
    return config


def _skip_layers(skip_layers: Sequence[int] | None, depth: int) -> tuple[int, int, int]:
    """Three increasing blocks below ``depth``; default ``depth / 4 * (1, 2, 3)``."""
    if skip_layers is None:
        step = depth // 4
        return (step, 2 * step, 3 * step)
    layers = tuple(int(n) for n in skip_layers)
    if len(layers) != 3 or list(layers) != sorted(set(layers)) or not 1 <= layers[0] < depth:
        raise ConfigError(
            f"UNETR skip_layers must be 3 increasing block numbers in 1..{depth - 1}, "
            f"got {tuple(skip_layers)}"
        )
    if layers[-1] >= depth:
        raise ConfigError(
            f"UNETR skip_layers must be 3 increasing block numbers in 1..{depth - 1}, got {layers}"
        )
    return layers  # type: ignore[return-value]
