"""Convolutional building blocks, N-dimensional through ``spatial_dims``.

All blocks map ``(B, C_in, *spatial) -> (B, C_out, *spatial')`` and take ``spatial_dims``
first; layer types come from :mod:`medseg.nets.ops`. They are shared by the segmentation
networks and meant for the classification networks too (ResNet: :class:`ResidualBlock`,
DenseNet: :class:`DenseBlock`, MobileNet: :class:`SeparableConv`). Pooling, up-sampling and
unpooling live in :mod:`medseg.nets.sampling`, attention in :mod:`medseg.nets.attention`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from medseg.nets.ops import (
    ActName,
    NormName,
    act_layer,
    as_tuple,
    conv_type,
    dropout_type,
    norm_layer,
    same_padding,
)


def pointwise_conv(
    spatial_dims: int, in_channels: int, out_channels: int, *, bias: bool = True
) -> nn.Module:
    """A 1x1(x1) convolution: a per-voxel linear map of the channels (heads, projections).

    Example:
        >>> pointwise_conv(2, 8, 3)
        Conv2d(8, 3, kernel_size=(1, 1), stride=(1, 1))
    """
    return conv_type(spatial_dims)(in_channels, out_channels, kernel_size=1, bias=bias)


class ConvNormAct(nn.Sequential):
    """Convolution -> normalisation -> activation (-> channel dropout).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: per-axis kernel size (odd for ``padding="same"``).
        stride: per-axis stride; with ``"same"`` padding the output size is ``ceil(n / s)``.
        dilation: per-axis dilation (atrous convolution).
        padding: ``"same"`` (keeps the size at stride 1) or explicit per-axis padding
            (``0`` for the "valid" convolutions of the original U-Net and LeNet).
        groups: convolution groups (``in_channels`` gives a depth-wise convolution).
        norm: normalisation, see :func:`medseg.nets.ops.norm_layer`.
        act: activation, see :func:`medseg.nets.ops.act_layer`.
        dropout: channel-dropout probability after the activation (0: none).
        bias: convolution bias; default: only without normalisation (a norm removes it).

    Shapes:
        ``(B, in_channels, *spatial) -> (B, out_channels, *spatial')``.

    Example:
        >>> block = ConvNormAct(3, 1, 8, stride=(1, 2, 2))
        >>> block(torch.zeros(1, 1, 4, 8, 8)).shape
        torch.Size([1, 8, 4, 4, 4])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        dilation: int | Sequence[int] = 1,
        padding: Literal["same"] | int | Sequence[int] = "same",
        groups: int = 1,
        norm: NormName = "instance",
        act: ActName = "leakyrelu",
        dropout: float = 0.0,
        bias: bool | None = None,
    ) -> None:
        kernel = as_tuple(kernel_size, spatial_dims, name="kernel_size")
        dil = as_tuple(dilation, spatial_dims, name="dilation")
        pad = (
            same_padding(kernel, dil)
            if padding == "same"
            else as_tuple(padding, spatial_dims, name="padding")
        )
        conv = conv_type(spatial_dims)(
            in_channels,
            out_channels,
            kernel_size=kernel,
            stride=as_tuple(stride, spatial_dims, name="stride"),
            padding=pad,
            dilation=dil,
            groups=groups,
            bias=(norm == "none") if bias is None else bias,
        )
        layers: list[nn.Module] = [
            conv,
            norm_layer(norm, spatial_dims, out_channels),
            act_layer(act),
        ]
        if dropout > 0:
            layers.append(dropout_type(spatial_dims)(dropout))
        super().__init__(*layers)


class SeparableConv(nn.Sequential):
    """Depth-wise separable convolution (MobileNet): a ``k x k`` depth-wise convolution (one
    filter per input channel) then a 1x1 point-wise convolution, each with norm and activation.

    It has ``C_in * k^d + C_in * C_out`` weights instead of ``C_in * C_out * k^d``. Use
    ``norm="none", act="none"`` for the bare factorised convolution.

    Shapes:
        ``(B, in_channels, *spatial) -> (B, out_channels, *spatial')``.

    Example:
        >>> SeparableConv(2, 4, 8)(torch.zeros(1, 4, 6, 6)).shape
        torch.Size([1, 8, 6, 6])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        dilation: int | Sequence[int] = 1,
        norm: NormName = "batch",
        act: ActName = "relu",
    ) -> None:
        depthwise = ConvNormAct(
            spatial_dims,
            in_channels,
            in_channels,
            kernel_size=kernel_size,
            stride=stride,
            dilation=dilation,
            groups=in_channels,
            norm=norm,
            act=act,
        )
        pointwise = ConvNormAct(
            spatial_dims, in_channels, out_channels, kernel_size=1, norm=norm, act=act
        )
        super().__init__(depthwise, pointwise)


class ResidualBlock(nn.Module):
    """Two convolutions with an identity (or 1x1 projection) shortcut (He et al. 2016).

    ``y = act(norm(conv(act(norm(conv(x))))) + shortcut(x))``; the first convolution carries
    the stride. The shortcut is a strided 1x1 convolution + norm when the channels or the
    size change, the identity otherwise.

    Shapes:
        ``(B, in_channels, *spatial) -> (B, out_channels, *spatial / stride)``.

    Example:
        >>> ResidualBlock(2, 4, 8, stride=2)(torch.zeros(1, 4, 8, 8)).shape
        torch.Size([1, 8, 4, 4])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        dilation: int | Sequence[int] = 1,
        norm: NormName = "instance",
        act: ActName = "leakyrelu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        opts = {"kernel_size": kernel_size, "dilation": dilation, "norm": norm}
        self.conv1 = ConvNormAct(
            spatial_dims, in_channels, out_channels, stride=stride, act=act, dropout=dropout, **opts
        )
        self.conv2 = ConvNormAct(spatial_dims, out_channels, out_channels, act="none", **opts)
        strides = as_tuple(stride, spatial_dims, name="stride")
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels or any(s != 1 for s in strides):
            self.shortcut = ConvNormAct(
                spatial_dims,
                in_channels,
                out_channels,
                kernel_size=1,
                stride=strides,
                norm=norm,
                act="none",
            )
        self.act = act_layer(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ConvStage(nn.Sequential):
    """``num_blocks`` conv-norm-act blocks (or residual blocks); the first one carries the
    stride and changes the channels. One resolution level of a U-Net encoder or decoder.

    Example:
        >>> ConvStage(2, 1, 8, num_blocks=2, stride=2)(torch.zeros(1, 1, 8, 8)).shape
        torch.Size([1, 8, 4, 4])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        num_blocks: int = 2,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        dilation: int | Sequence[int] = 1,
        residual: bool = False,
        norm: NormName = "instance",
        act: ActName = "leakyrelu",
        dropout: float = 0.0,
    ) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        block = ResidualBlock if residual else ConvNormAct
        opts = {
            "kernel_size": kernel_size,
            "dilation": dilation,
            "norm": norm,
            "act": act,
            "dropout": dropout,
        }
        layers = [block(spatial_dims, in_channels, out_channels, stride=stride, **opts)]
        layers += [
            block(spatial_dims, out_channels, out_channels, **opts) for _ in range(num_blocks - 1)
        ]
        super().__init__(*layers)


class DenseLayer(nn.Module):
    """One DenseNet layer: norm -> act -> conv (pre-activation), optionally with a 1x1
    "bottleneck" to ``4 * growth_rate`` channels first (DenseNet-BC). Returns only the
    ``growth_rate`` new channels; :class:`DenseBlock` concatenates them."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        growth_rate: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        bottleneck: bool = False,
        norm: NormName = "batch",
        act: ActName = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        if bottleneck:
            layers += [norm_layer(norm, spatial_dims, channels), act_layer(act)]
            layers.append(pointwise_conv(spatial_dims, channels, 4 * growth_rate, bias=False))
            channels = 4 * growth_rate
        kernel = as_tuple(kernel_size, spatial_dims, name="kernel_size")
        layers += [norm_layer(norm, spatial_dims, channels), act_layer(act)]
        layers.append(
            conv_type(spatial_dims)(
                channels,
                growth_rate,
                kernel,
                padding=same_padding(kernel, (1,) * spatial_dims),
                bias=False,
            )
        )
        if dropout > 0:
            layers.append(dropout_type(spatial_dims)(dropout))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class DenseBlock(nn.Module):
    """Dense block (Huang et al. 2017): layer ``l`` sees the concatenation of the block input
    and all earlier layers' outputs; the block returns that full concatenation.

    Shapes:
        ``(B, C, *spatial) -> (B, C + num_layers * growth_rate, *spatial)``; ``out_channels``
        holds the output channel count.

    Example:
        >>> block = DenseBlock(2, 4, growth_rate=3, num_layers=2)
        >>> block(torch.zeros(1, 4, 5, 5)).shape, block.out_channels
        (torch.Size([1, 10, 5, 5]), 10)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        *,
        growth_rate: int = 16,
        num_layers: int = 4,
        kernel_size: int | Sequence[int] = 3,
        bottleneck: bool = False,
        norm: NormName = "batch",
        act: ActName = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(
                spatial_dims,
                in_channels + i * growth_rate,
                growth_rate,
                kernel_size=kernel_size,
                bottleneck=bottleneck,
                norm=norm,
                act=act,
                dropout=dropout,
            )
            for i in range(num_layers)
        )
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)
