"""The U-Net skeleton: an encoder of resolution stages and a decoder built from it.

The decoder reads the encoder's ``features``, ``strides`` and ``kernel_sizes``, so the two
cannot disagree: decoder level ``i`` up-samples by ``strides[i + 1]`` from ``features[i + 1]``
to ``features[i]`` channels, (optionally gates) and concatenates the encoder skip ``i``, and
applies a conv stage with ``kernel_sizes[i]``. U-Net, Attention U-Net, the dilated U-Net,
the multi-scale network and the VAE U-Net are all this skeleton plus heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.attention import AttentionGate
from medseg.nets.blocks import ConvStage
from medseg.nets.ops import ActName, NormName, avg_pool_type, max_pool_type
from medseg.nets.sampling import Upsample, UpsampleMode
from medseg.nets.shapes import (
    PerStage,
    default_strides,
    expand_per_stage,
    required_divisor,
    stage_features,
)

DownsampleMode = Literal["conv", "maxpool", "avgpool"]


class UNetEncoder(nn.Module):
    """Contracting path: one :class:`~medseg.nets.blocks.ConvStage` per resolution stage.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        features: channels per stage; default :func:`~medseg.nets.shapes.stage_features`
            with ``len(strides)`` stages (5 when ``strides`` is also None).
        kernel_sizes: per stage (per axis) kernel sizes, or one int for all.
        strides: per stage (per axis) down-sampling factors; the first must be 1 (the first
            skip is at full resolution). Default: 1 then 2 along every axis.
        dilations: per stage (per axis) dilation of the stage's convolutions.
        blocks_per_stage: conv blocks (or residual blocks) per stage, an int or one per stage.
        residual: residual blocks instead of plain conv-norm-act blocks.
        downsample: ``conv`` (strided first convolution, nnU-Net), ``maxpool`` or ``avgpool``
            (pool by the stride, then stride-1 convolutions, original U-Net).
        norm: normalisation of every block.
        act: activation of every block.
        dropout: channel-dropout probability in every block.

    Shapes:
        ``(B, in_channels, *spatial)`` -> list of skips, ``skips[i]`` is
        ``(B, features[i], *spatial / prod(strides[:i + 1]))``, highest resolution first.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        *,
        features: Sequence[int] | None = None,
        kernel_sizes: PerStage = 3,
        strides: PerStage | None = None,
        dilations: PerStage = 1,
        blocks_per_stage: int | Sequence[int] = 2,
        residual: bool = False,
        downsample: DownsampleMode = "conv",
        norm: NormName = "instance",
        act: ActName = "leakyrelu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if features is None:
            features = stage_features(
                5 if strides is None or isinstance(strides, int) else len(strides)
            )
        self.features = tuple(int(f) for f in features)
        n = len(self.features)
        if n < 2:
            raise ConfigError(f"a U-Net needs at least 2 stages, got features {self.features}")
        self.strides = expand_per_stage(
            default_strides(n, spatial_dims) if strides is None else strides,
            n,
            spatial_dims,
            name="strides",
        )
        if any(s != 1 for s in self.strides[0]):
            raise ConfigError(
                f"the first stage's stride must be 1 (full-resolution skip), got {self.strides[0]}"
            )
        self.kernel_sizes = expand_per_stage(kernel_sizes, n, spatial_dims, name="kernel_sizes")
        self.dilations = expand_per_stage(dilations, n, spatial_dims, name="dilations")
        self.blocks_per_stage = _per_stage_int(blocks_per_stage, n, "blocks_per_stage")
        if downsample not in ("conv", "maxpool", "avgpool"):
            raise ConfigError(f"downsample must be conv, maxpool or avgpool, got {downsample!r}")
        self.stages = nn.ModuleList()
        channels = in_channels
        for i, out in enumerate(self.features):
            stride = self.strides[i]
            pools = downsample != "conv" and any(s > 1 for s in stride)
            stage = ConvStage(
                spatial_dims,
                channels,
                out,
                num_blocks=self.blocks_per_stage[i],
                kernel_size=self.kernel_sizes[i],
                stride=1 if pools else stride,
                dilation=self.dilations[i],
                residual=residual,
                norm=norm,
                act=act,
                dropout=dropout,
            )
            if pools:
                pool = (max_pool_type if downsample == "maxpool" else avg_pool_type)(spatial_dims)
                stage = nn.Sequential(pool(kernel_size=stride, stride=stride), stage)
            self.stages.append(stage)
            channels = out

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """Per-axis factor the input size must be a multiple of."""
        return required_divisor(self.strides)

    def forward(self, x: Tensor) -> list[Tensor]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class UNetDecoder(nn.Module):
    """Expanding path, built from a :class:`UNetEncoder`.

    Args:
        spatial_dims: 1, 2 or 3.
        encoder: the encoder whose features, strides and kernel sizes this decoder mirrors.
        blocks_per_stage: conv blocks per decoder level: an int, or one per level (highest
            resolution first, ``num_stages - 1`` entries); default: the encoder's.
        residual: residual blocks.
        upsample: ``transpose`` (transposed convolution) or ``interpolate`` (1x1 conv +
            linear interpolation), see :class:`~medseg.nets.sampling.Upsample`.
        attention_gates: gate each skip with an :class:`~medseg.nets.attention.AttentionGate`
            whose gating signal is the up-sampled decoder feature (Attention U-Net).
        norm: normalisation.
        act: activation.
        dropout: channel-dropout probability.

    Shapes:
        skips (as the encoder returns them) -> list of decoder features, ``out[i]`` is
        ``(B, features[i], *skip_i_spatial)`` for ``i < num_stages - 1``, highest first.
    """

    def __init__(
        self,
        spatial_dims: int,
        encoder: UNetEncoder,
        *,
        blocks_per_stage: int | Sequence[int] | None = None,
        residual: bool = False,
        upsample: UpsampleMode = "transpose",
        attention_gates: bool = False,
        norm: NormName = "instance",
        act: ActName = "leakyrelu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        feats, strides, kernels = encoder.features, encoder.strides, encoder.kernel_sizes
        if blocks_per_stage is None:
            blocks = encoder.blocks_per_stage[:-1]
        else:
            blocks = _per_stage_int(blocks_per_stage, len(feats) - 1, "decoder blocks_per_stage")
        self.features = feats[:-1]
        self.ups, self.gates, self.stages = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(feats) - 1)):  # deepest decoder level first
            self.ups.append(
                Upsample(spatial_dims, feats[i + 1], feats[i], scale=strides[i + 1], mode=upsample)
            )
            if attention_gates:
                self.gates.append(
                    AttentionGate(spatial_dims, feats[i], feats[i], max(feats[i] // 2, 1))
                )
            self.stages.append(
                ConvStage(
                    spatial_dims,
                    2 * feats[i],
                    feats[i],
                    num_blocks=blocks[i],
                    kernel_size=kernels[i],
                    residual=residual,
                    norm=norm,
                    act=act,
                    dropout=dropout,
                )
            )

    def forward(self, skips: Sequence[Tensor]) -> list[Tensor]:
        x = skips[-1]
        outputs = []
        for level, (up, stage) in enumerate(zip(self.ups, self.stages, strict=True)):
            skip = skips[-2 - level]
            x = up(x, size=skip.shape[2:])
            if len(self.gates):
                skip = self.gates[level](skip, x)
            x = stage(torch.cat([skip, x], dim=1))
            outputs.append(x)
        return outputs[::-1]


def _per_stage_int(value: int | Sequence[int], num_stages: int, name: str) -> list[int]:
    if isinstance(value, int):
        return [value] * num_stages
    out = [int(v) for v in value]
    if len(out) != num_stages:
        raise ConfigError(f"{name} has {len(out)} entries, expected {num_stages}")
    return out
