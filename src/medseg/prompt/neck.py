"""Image encoders for the promptable model: a SAM-style neck on medseg backbones.

:class:`EncoderNeck` maps any feature map to the prompt model's ``embed_dim`` as SAM's image
encoder neck does (1x1 conv, channel LayerNorm, 3x3 conv, channel LayerNorm; parameters
``0..3``). :func:`unet_image_encoder` turns a (trained) medseg ``UNet``'s encoder into the
image encoder, optionally frozen; :class:`ViTImageEncoder` does the same for a medseg ViT.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.encoder_decoder import UNetEncoder
from medseg.nets.ops import conv_type
from medseg.nets.vit import ViTEncoder
from medseg.prompt.layers import ChannelLayerNorm


class EncoderNeck(nn.Sequential):
    """``(B, in_channels, *grid) -> (B, embed_dim, *grid)``: conv 1x1, channel LayerNorm,
    conv 3x3, channel LayerNorm, all convolutions without bias (SAM's neck, N-D).

    Example:
        >>> import torch
        >>> EncoderNeck(3, 8, 16)(torch.zeros(1, 8, 2, 3, 4)).shape
        torch.Size([1, 16, 2, 3, 4])
    """

    def __init__(self, spatial_dims: int, in_channels: int, embed_dim: int) -> None:
        conv = conv_type(spatial_dims)
        super().__init__(
            conv(in_channels, embed_dim, kernel_size=1, bias=False),
            ChannelLayerNorm(embed_dim),
            conv(embed_dim, embed_dim, kernel_size=3, padding=1, bias=False),
            ChannelLayerNorm(embed_dim),
        )


def _freeze(module: nn.Module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    module.eval()


def _is_frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


class UNetImageEncoder(nn.Module):
    """A medseg :class:`~medseg.nets.encoder_decoder.UNetEncoder`'s stages up to ``stage``,
    then an :class:`EncoderNeck`: ``(B, C_in, *spatial) -> (B, embed_dim, *spatial / stride)``.

    A frozen backbone (every parameter ``requires_grad=False``) runs without autograd and
    stays in eval mode when the model is put in training mode (so batch-norm statistics do
    not move either); the neck always trains.

    Attributes:
        backbone: the ``UNetEncoder``.
        neck: the :class:`EncoderNeck`.
        stage: index of the stage whose features are used.
        stride: per-axis down-sampling factor of those features.
    """

    def __init__(
        self, encoder: UNetEncoder, embed_dim: int = 256, *, stage: int = -1, freeze: bool = False
    ) -> None:
        super().__init__()
        num_stages = len(encoder.stages)
        if not -num_stages <= stage < num_stages:
            raise ConfigError(
                f"stage {stage} does not exist: the encoder has stages 0..{num_stages - 1}"
            )
        self.stage = stage % num_stages
        self.backbone = encoder
        spatial_dims = len(encoder.strides[0])
        self.stride = tuple(
            math.prod(axis) for axis in zip(*encoder.strides[: self.stage + 1], strict=True)
        )
        self.neck = EncoderNeck(spatial_dims, encoder.features[self.stage], embed_dim)
        if freeze:
            _freeze(self.backbone)

    def train(self, mode: bool = True) -> UNetImageEncoder:
        super().train(mode)
        if _is_frozen(self.backbone):
            self.backbone.eval()  # frozen means frozen: no batch-norm statistics updates
        return self

    def _features(self, image: Tensor) -> Tensor:
        x = image
        for stage in self.backbone.stages[: self.stage + 1]:
            x = stage(x)
        return x

    def forward(self, image: Tensor) -> Tensor:
        if _is_frozen(self.backbone):
            with torch.no_grad():
                features = self._features(image)
        else:
            features = self._features(image)
        return self.neck(features)


def unet_image_encoder(
    unet_or_encoder: nn.Module,
    embed_dim: int = 256,
    *,
    stage: int = -1,
    freeze: bool = False,
) -> UNetImageEncoder:
    """The image encoder of a promptable model from a medseg U-Net's encoder.

    Args:
        unet_or_encoder: a medseg ``UNet`` (or any network with a ``UNetEncoder`` as
            ``.encoder``), or a ``UNetEncoder``; its modules are shared, not copied.
        embed_dim: width of the image embedding (the prompt model's ``C``).
        stage: encoder stage whose features are embedded (default: the deepest; use a
            shallower one for a finer grid, e.g. stride 8).
        freeze: set ``requires_grad=False`` on the U-Net encoder (the neck still trains).

    Returns:
        A :class:`UNetImageEncoder`; its grid is the input size divided by ``.stride``.

    Raises:
        ConfigError: if the module has no ``UNetEncoder``, or ``stage`` does not exist.

    Example:
        >>> from medseg.nets.unet import UNet
        >>> unet = UNet(2, 1, 2, features=(4, 8, 16))
        >>> encoder = unet_image_encoder(unet, 32, freeze=True)
        >>> encoder(torch.zeros(1, 1, 32, 32)).shape, encoder.stride
        (torch.Size([1, 32, 8, 8]), (4, 4))
    """
    encoder = unet_or_encoder
    if not isinstance(encoder, UNetEncoder):
        encoder = getattr(unet_or_encoder, "encoder", None)
    if not isinstance(encoder, UNetEncoder):
        raise ConfigError(
            f"unet_image_encoder needs a medseg UNet or UNetEncoder, got "
            f"{type(unet_or_encoder).__name__} (no UNetEncoder as .encoder)"
        )
    return UNetImageEncoder(encoder, embed_dim, stage=stage, freeze=freeze)


class ViTImageEncoder(nn.Module):
    """A medseg :class:`~medseg.nets.vit.ViTEncoder`'s patch tokens as a feature map, then an
    :class:`EncoderNeck` (as SAM's ViT image encoder): ``(B, C_in, *image_size) ->
    (B, embed_dim, *image_size / patch_size)``. The ``[CLS]`` token is dropped."""

    def __init__(self, vit: ViTEncoder, embed_dim: int = 256) -> None:
        super().__init__()
        self.backbone = vit
        dim = vit.patch_embedding.out_channels
        self.neck = EncoderNeck(len(vit.grid), dim, embed_dim)

    def forward(self, image: Tensor) -> Tensor:
        tokens = self.backbone.tokens(image)[:, 1:]  # (B, prod(grid), dim)
        features = tokens.transpose(1, 2).reshape(image.shape[0], -1, *self.backbone.grid)
        return self.neck(features)
