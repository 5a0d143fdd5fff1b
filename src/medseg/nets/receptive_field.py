"""Theoretical receptive field of each stage of a U-Net-skeleton network, per axis.

The receptive field (RF) of a feature voxel is the extent of input voxels it can depend on.
Walking the layers from the input, with ``r`` the RF size and ``j`` the jump (input voxels
between neighbouring voxels of the current feature map), both per axis, starting at
``r = 1, j = 1``:

* a convolution or pooling with kernel ``k``, stride ``s``, dilation ``d``:
  ``r += (k - 1) * d * j`` then ``j *= s`` (Araujo et al. 2019, "Computing receptive fields
  of convolutional neural networks", Distill);
* an up-sampling by ``s``: a transposed convolution with kernel = stride = ``s`` (medseg's
  ``Upsample(mode="transpose")``) maps every fine voxel to one coarse voxel, so ``r`` is
  unchanged and ``j /= s``; linear interpolation (``mode="interpolate"``) reads 2 coarse
  voxels along each up-sampled axis, so ``r += j`` there, then ``j /= s``.

The decoder rows follow the deepest path (bottleneck, then every decoder level); the skip
connections see less context, so the decoder's last row is the RF of the network's output.
The 1x1 heads add nothing. Residual shortcuts (1x1) are left out: the main path dominates.
``r`` is the extent inside an unbounded input; at the image border the zero padding is
part of it. Sizes in mm are ``r * spacing``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from torch import nn

from medseg.errors import ConfigError
from medseg.nets.encoder_decoder import UNetDecoder, UNetEncoder
from medseg.nets.sampling import Upsample

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_LAYERS += (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


@dataclass(frozen=True)
class StageField:
    """The receptive field after one stage.

    Attributes:
        stage: ``encoder i`` (resolution stage i, 0 = full resolution) or ``decoder i``
            (decoder level i; ``decoder 0`` is the network's output).
        size: RF size in input voxels per axis.
        jump: input voxels between neighbouring voxels of the stage's output, per axis.
        size_mm: ``size * spacing`` per axis.
    """

    stage: str
    size: tuple[int, ...]
    jump: tuple[float, ...]
    size_mm: tuple[float, ...]


def _per_axis(value: int | Sequence[int], dims: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, Sequence) else (int(value),) * dims


def layer_update(
    size: Sequence[float], jump: Sequence[float], kernel: Sequence[int], stride: Sequence[int],
    dilation: Sequence[int] | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:  # fmt: skip
    """One convolution or pooling: ``r += (k - 1) * d * j``, ``j *= s`` per axis.

    Example:
        >>> layer_update((1, 1), (1, 1), (3, 3), (2, 2))
        ((3, 3), (2, 2))
    """
    dilation = dilation or (1,) * len(size)
    new_size = tuple(
        r + (k - 1) * d * j for r, k, d, j in zip(size, kernel, dilation, jump, strict=True)
    )
    return new_size, tuple(j * s for j, s in zip(jump, stride, strict=True))


def _layers(module: nn.Module) -> Iterator[nn.Module]:
    """Conv and pooling layers in registration (= forward) order, without shortcuts."""
    if isinstance(module, _LAYERS):
        yield module
        return
    for name, child in module.named_children():
        if name != "shortcut":
            yield from _layers(child)


def _walk(module: nn.Module, size: tuple, jump: tuple) -> tuple[tuple, tuple]:
    dims = len(size)
    for layer in _layers(module):
        kernel = _per_axis(layer.kernel_size, dims)
        stride = _per_axis(layer.stride if layer.stride is not None else kernel, dims)
        dilation = _per_axis(getattr(layer, "dilation", 1), dims)
        size, jump = layer_update(size, jump, kernel, stride, dilation)
    return size, jump


def _upsample(up: nn.Module, size: tuple, jump: tuple) -> tuple[tuple, tuple]:
    if not isinstance(up, Upsample):
        raise ConfigError(f"receptive field: unknown up-sampling module {type(up).__name__}")
    if up.mode == "interpolate":
        size = tuple(r + (j if s > 1 else 0) for r, j, s in zip(size, jump, up.scale, strict=True))
    return size, tuple(j / s for j, s in zip(jump, up.scale, strict=True))


def _field(stage: str, size: tuple, jump: tuple, spacing: Sequence[float]) -> StageField:
    return StageField(
        stage,
        tuple(int(round(r)) for r in size),
        tuple(float(j) for j in jump),
        tuple(float(r) * float(s) for r, s in zip(size, spacing, strict=True)),
    )


def receptive_fields(
    network: nn.Module, spatial_dims: int, *, spacing: Sequence[float] | None = None
) -> list[StageField]:
    """Receptive field of every encoder stage and decoder level of a U-Net-skeleton network.

    Args:
        network: a network with an ``encoder`` (:class:`UNetEncoder`) and optionally a
            ``decoder`` (:class:`UNetDecoder`): U-Net, residual, attention and dilated
            U-Nets, the multi-scale and VAE U-Nets; or a ``UNetEncoder`` itself. The layers'
            own kernel sizes, strides and dilations are read, so anisotropic plans need
            nothing special. Works on the ``meta`` device (no weights are touched).
        spatial_dims: 2 or 3 (1 also works).
        spacing: voxel size in mm per axis (array order); default 1 mm.

    Returns:
        One :class:`StageField` per encoder stage (highest resolution first), then per decoder
        level (deepest first; the last is the output's RF).

    Raises:
        ConfigError: the network has no U-Net encoder, or spacing has the wrong length.

    Example:
        >>> from medseg.nets.unet import UNet
        >>> net = UNet(2, 1, 2, features=(4, 8, 16), strides=[1, 2, 2])
        >>> [f.size for f in receptive_fields(net, 2)]
        [(5, 5), (11, 11), (23, 23), (31, 31), (35, 35)]
    """
    encoder = network if isinstance(network, UNetEncoder) else getattr(network, "encoder", None)
    if not isinstance(encoder, UNetEncoder):
        raise ConfigError(
            f"receptive field: {type(network).__name__} has no U-Net encoder (UNetEncoder); "
            "it is computed for U-Net-skeleton networks (unet, residual_unet, attention_unet, ...)"
        )
    spacing = tuple(float(s) for s in (spacing or (1.0,) * spatial_dims))
    if len(spacing) != spatial_dims:
        raise ConfigError(f"receptive field: spacing {spacing} for {spatial_dims}D")
    size, jump = (1,) * spatial_dims, (1,) * spatial_dims
    rows = []
    for i, stage in enumerate(encoder.stages):
        size, jump = _walk(stage, size, jump)
        rows.append(_field(f"encoder {i}", size, jump, spacing))
    decoder = getattr(network, "decoder", None)
    if isinstance(decoder, UNetDecoder):
        levels = len(decoder.stages)
        for step, (up, stage) in enumerate(zip(decoder.ups, decoder.stages, strict=True)):
            size, jump = _walk(stage, *_upsample(up, size, jump))
            rows.append(_field(f"decoder {levels - 1 - step}", size, jump, spacing))
    return rows
