"""Swin-Unet (Cao et al. 2021): a pure-transformer U-shaped segmentation network, N-D.

The image is cut into ``patch_size`` patches, each embedded as a ``embed_dim``-wide token
(strided convolution + LayerNorm). The encoder has ``len(depths)`` stages of Swin blocks
(Liu et al. 2021; W-MSA and SW-MSA alternating) at widths ``C, 2C, 4C, ...``, with patch
merging (2x down-sampling) between them; the deepest stage is the bottleneck. The decoder
mirrors it: patch expanding (2x up-sampling, width halved), concatenation with the encoder
skip at that level and a linear ``2C -> C``, then Swin blocks. A final patch expanding by the
patch size restores the image grid and a 1x1 convolution gives the logits.

The skip at each level is the encoder stage's input (the patch embedding, or the merged
tokens), before its Swin blocks, as in the official code (HuCaoFighting/Swin-Unet); the
parameter count matches it exactly (27,168,900 for ``tiny`` with 3 input channels and 9
classes).

Input sizes: the grid must halve ``len(depths) - 1`` times after the patch embedding, and at
every stage be tiled by the windows. :attr:`SwinUNet.required_divisor` states the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.ops import conv_type, per_axis
from medseg.nets.transformer.patch_merging import PatchExpanding, PatchMerging
from medseg.nets.transformer.sizes import check_input_size
from medseg.nets.transformer.swin_block import SwinBlock, WindowSizeError

#: Named settings. ``tiny``: Swin-Unet's (2D, 224^2, window 7; 27.2 M parameters for 9
#: classes). ``cpu``: small and quick, patch 2 with 3 stages and window 4 padded where it
#: does not tile the grid, so any multiple of 8 fits (e.g. 3D patches (40, 56, 40)).
SWIN_UNET_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "patch_size": 4,
        "window": 7,
        "embed_dim": 96,
        "depths": (2, 2, 2, 2),
        "heads": (3, 6, 12, 24),
        "pad_to_window": False,
    },
    "cpu": {
        "patch_size": 2,
        "window": 4,
        "embed_dim": 48,
        "depths": (2, 2, 2),
        "heads": (3, 6, 12),
        "pad_to_window": True,
    },
}


class SwinStage(nn.Sequential):
    """``depth`` Swin blocks at one resolution, unshifted and shifted alternating.

    Shapes:
        ``(B, *spatial, C) -> (B, *spatial, C)``.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        window: Sequence[int],
        *,
        mlp_ratio: float,
        pad_to_window: bool,
        drop_path: Sequence[float],
    ) -> None:
        super().__init__(
            *(
                SwinBlock(
                    dim,
                    heads,
                    window,
                    shift=i % 2 == 1,
                    mlp_ratio=mlp_ratio,
                    pad_to_window=pad_to_window,
                    drop_path=drop_path[i],
                )
                for i in range(depth)
            )
        )


def _options(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if preset not in SWIN_UNET_PRESETS:
        raise ConfigError(
            f"unknown Swin-UNet preset {preset!r}; valid presets: "
            f"{', '.join(sorted(SWIN_UNET_PRESETS))}"
        )
    given = {k: v for k, v in overrides.items() if v is not None}
    return {**SWIN_UNET_PRESETS[preset], **given}


def _check_stages(embed_dim: int, depths: Sequence[int], heads: Sequence[int]) -> None:
    if len(depths) < 2 or len(heads) != len(depths) or min(depths) < 1:
        raise ConfigError(
            f"depths {tuple(depths)} and heads {tuple(heads)} need one entry per stage, at "
            "least 2 stages, and at least one block per stage"
        )
    for stage, count in enumerate(heads):
        width = embed_dim * 2**stage
        if count < 1 or width % count:
            raise ConfigError(
                f"stage {stage} has width {width} (embed_dim * 2^{stage}), which heads[{stage}]"
                f" = {count} does not divide; choose heads dividing the stage widths"
            )


class SwinUNet(nn.Module):
    """Swin-Unet: ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)`` logits.

    Args:
        spatial_dims: 2 or 3 (1 works too).
        in_channels: image channels.
        out_channels: classes ``K``.
        preset: ``cpu`` (default) or ``tiny`` (:data:`SWIN_UNET_PRESETS`); the options below
            override its values.
        patch_size: patch edge per axis (int or per-axis).
        window: window edge per axis (int or per-axis).
        embed_dim: token width ``C`` of the first stage (doubles per stage).
        depths: Swin blocks per stage (the last stage is the bottleneck); the decoder reuses
            them level by level.
        heads: attention heads per stage.
        mlp_ratio: MLP hidden width over the token width.
        pad_to_window: pad token grids the windows do not tile (padding masked out of the
            attention) instead of refusing such input sizes.
        drop_path_rate: stochastic depth, rising linearly to this over the encoder blocks.

    Raises:
        ConfigError: for an unknown preset or inconsistent stages; (in ``forward``) a
            :class:`~medseg.nets.transformer.swin_block.WindowSizeError` (also a
            ``ValueError``) for an input size that is not a multiple of
            :attr:`required_divisor`, naming the nearest valid sizes.

    Example:
        >>> import torch
        >>> net = SwinUNet(3, 1, 2, embed_dim=12)
        >>> net.required_divisor
        (8, 8, 8)
        >>> net(torch.zeros(1, 1, 8, 16, 8)).shape
        torch.Size([1, 2, 8, 16, 8])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        preset: str = "cpu",
        patch_size: int | Sequence[int] | None = None,
        window: int | Sequence[int] | None = None,
        embed_dim: int | None = None,
        depths: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
        mlp_ratio: float = 4.0,
        pad_to_window: bool | None = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        given = {"patch_size": patch_size, "window": window, "embed_dim": embed_dim}
        given |= {"depths": depths, "heads": heads, "pad_to_window": pad_to_window}
        options = _options(preset, given)
        self.patch_size = per_axis(options["patch_size"], spatial_dims, "patch_size")
        self.window = per_axis(options["window"], spatial_dims, "window")
        self.pad_to_window = bool(options["pad_to_window"])
        dim, depths, heads = options["embed_dim"], tuple(options["depths"]), options["heads"]
        _check_stages(dim, depths, heads)
        self.num_stages = len(depths)
        widths = [dim * 2**i for i in range(self.num_stages)]
        rates = [drop_path_rate * i / max(1, sum(depths) - 1) for i in range(sum(depths))]
        per_stage = [rates[sum(depths[:i]) : sum(depths[: i + 1])] for i in range(len(depths))]

        def stage(level: int) -> SwinStage:
            return SwinStage(
                widths[level],
                depths[level],
                heads[level],
                self.window,
                mlp_ratio=mlp_ratio,
                pad_to_window=self.pad_to_window,
                drop_path=per_stage[level],
            )

        conv = conv_type(spatial_dims)
        self.patch_embed = conv(in_channels, dim, self.patch_size, stride=self.patch_size)
        self.embed_norm = nn.LayerNorm(dim)
        self.encoder = nn.ModuleList(stage(i) for i in range(self.num_stages))
        self.merges = nn.ModuleList(PatchMerging(spatial_dims, w) for w in widths[:-1])
        self.bottleneck_norm = nn.LayerNorm(widths[-1])
        # decoder, deepest level first: expand from level i + 1 to i, fuse the skip, blocks
        self.expands = nn.ModuleList(PatchExpanding(spatial_dims, w) for w in widths[:0:-1])
        self.fuse = nn.ModuleList(nn.Linear(2 * w, w) for w in widths[-2::-1])
        self.decoder = nn.ModuleList(stage(i) for i in range(self.num_stages - 2, -1, -1))
        self.decoder_norm = nn.LayerNorm(dim)
        self.final_expand = PatchExpanding(spatial_dims, dim, scale=self.patch_size, out_dim=dim)
        self.head = conv(dim, out_channels, 1, bias=False)

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """Per-axis factor the input size must be a multiple of:
        ``patch * 2^(stages - 1)`` (the merges), times the window unless ``pad_to_window``
        (then every stage's grid is tiled by padding, or is one window when it is smaller).
        Every multiple is accepted."""
        down = 2 ** (self.num_stages - 1)
        windows = (1,) * len(self.window) if self.pad_to_window else self.window
        return tuple(p * down * w for p, w in zip(self.patch_size, windows, strict=True))

    def check_input_size(self, spatial: Sequence[int]) -> None:
        """Raise :class:`WindowSizeError` naming the nearest valid sizes per axis."""
        rule = "patch * 2^(stages - 1)" + ("" if self.pad_to_window else " * window")
        check_input_size(spatial, self.required_divisor, rule=rule, error=WindowSizeError)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K, *spatial)``."""
        self.check_input_size(x.shape[2:])
        channels_last = (0, *range(2, x.dim()), 1)  # explicit: ONNX refuses negative axes
        tokens = self.embed_norm(self.patch_embed(x).permute(channels_last))  # (B, *grid, C)
        skips = []
        for level, blocks in enumerate(self.encoder):
            if level > 0:
                tokens = self.merges[level - 1](tokens)
            skips.append(tokens)  # the stage's input, as the official code
            tokens = blocks(tokens)
        tokens = self.bottleneck_norm(tokens)
        for expand, fuse, blocks, skip in zip(
            self.expands, self.fuse, self.decoder, skips[-2::-1], strict=True
        ):
            tokens = blocks(fuse(torch.cat([expand(tokens), skip], dim=-1)))
        tokens = self.final_expand(self.decoder_norm(tokens))
        return self.head(tokens.permute(0, x.dim() - 1, *range(1, x.dim() - 1)))
