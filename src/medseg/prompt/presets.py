"""Sizes of the small promptable models :func:`~medseg.prompt.model.build_promptable` builds.

Each preset names an image encoder (a medseg U-Net encoder or ViT with a SAM-style neck) and
the widths of the prompt encoder and mask decoder. SAM itself (ViT-B/L/H, width 256, 1024^2
input) is far too large to train on a CPU; these keep its structure at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from medseg.errors import ConfigError
from medseg.nets.encoder_decoder import UNetEncoder
from medseg.nets.ops import per_axis
from medseg.nets.vit import ViTEncoder
from medseg.prompt.neck import UNetImageEncoder, ViTImageEncoder
from medseg.registry import Registry

#: name -> builder of a :class:`PromptPreset`.
PROMPT_PRESETS = Registry("promptable-model preset")


@dataclass(frozen=True)
class PromptPreset:
    """Sizes of one promptable model.

    Attributes:
        encoder: ``unet`` (a ``UNetEncoder`` with stride 2 after the first stage) or ``vit``.
        features: U-Net stage widths, or ``(vit_dim, vit_depth, vit_heads, vit_mlp_dim)``.
        patch_size: ViT patch size (ignored for ``unet``).
        embed_dim: width ``C`` of the image embedding, prompt tokens and decoder.
        depth: two-way transformer blocks; ``num_heads``, ``mlp_dim``: their attention heads
            and MLP width.
        iou_hidden_dim: hidden width of the IoU head.
        mask_in_chans: hidden channels of the mask-prompt down-scaling.
    """

    encoder: str
    features: tuple[int, ...]
    embed_dim: int
    depth: int
    num_heads: int
    mlp_dim: int
    iou_hidden_dim: int
    mask_in_chans: int
    patch_size: int = 16


@PROMPT_PRESETS.register("tiny", description="U-Net encoder stride 4, width 16: tests, doctests")
def tiny() -> PromptPreset:
    """Seconds to build and run, for tests."""
    return PromptPreset("unet", (4, 8, 16), 16, 1, 2, 32, 16, 4)


@PROMPT_PRESETS.register("cpu", description="U-Net encoder stride 16, width 64, 2 blocks")
def cpu() -> PromptPreset:
    """A model that trains on a CPU: stride-16 U-Net encoder (16..128 features), width 64."""
    return PromptPreset("unet", (16, 32, 64, 128, 128), 64, 2, 4, 256, 64, 16)


@PROMPT_PRESETS.register("vit", description="ViT encoder (dim 192, depth 4), patches 16, width 128")
def vit() -> PromptPreset:
    """A small ViT image encoder as SAM's (16-voxel patches, no [CLS] in the embedding)."""
    return PromptPreset("vit", (192, 4, 3, 768), 128, 2, 8, 512, 128, 16)


def build_image_encoder(
    spec: PromptPreset,
    spatial_dims: int,
    image_size: int | Sequence[int] | None,
    in_channels: int,
) -> tuple[nn.Module, tuple[int, ...], tuple[int, ...]]:
    """The image encoder of a preset, the checked image size and the embedding grid.

    Raises:
        ConfigError: when the encoder's stride does not divide ``image_size``.
    """
    if image_size is None:
        image_size = 256 if spatial_dims == 2 else 64
    size = per_axis(image_size, spatial_dims, "image_size")
    unet = None
    if spec.encoder == "vit":
        stride = (spec.patch_size,) * spatial_dims
    else:
        unet = UNetImageEncoder(
            UNetEncoder(spatial_dims, in_channels, features=spec.features), spec.embed_dim
        )
        stride = unet.stride
    if any(n % s for n, s in zip(size, stride, strict=True)):
        raise ConfigError(
            f"image_size {size} must be divisible by the image encoder's stride {stride}"
        )
    grid = tuple(n // s for n, s in zip(size, stride, strict=True))
    if unet is not None:
        return unet, size, grid
    dim, depth, heads, mlp_dim = spec.features
    backbone = ViTEncoder(
        spatial_dims,
        in_channels,
        image_size=size,
        patch_size=stride,
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_dim=mlp_dim,
        dropout=0.0,
        attention_dropout=0.0,
        pool="mean",
    )
    return ViTImageEncoder(backbone, spec.embed_dim), size, grid
