"""An Inception-v1 (GoogLeNet) classifier and its block.

The block runs four branches in parallel and concatenates them: 1x1; 1x1 reduce -> 3x3;
1x1 reduce -> 5x5 (or two 3x3, the Inception-v2 factorisation); 3x3 max-pool -> 1x1
projection. Every convolution is conv -> norm -> ReLU, as torchvision's ``BasicConv2d``.
See :mod:`medseg.nets.classifier_base` for the shared interface.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.nets.blocks import ConvNormAct
from medseg.nets.classifier_base import Classifier, linear_head
from medseg.nets.ops import NormName, max_pool_type

#: GoogLeNet's nine blocks: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection);
#: ``"pool"`` marks the 3/2 max-pools between the groups 3, 4 and 5.
GOOGLENET_BLOCKS: tuple[tuple[int, ...] | str, ...] = (
    (64, 96, 128, 16, 32, 32),  # 3a -> 256
    (128, 128, 192, 32, 96, 64),  # 3b -> 480
    "pool",
    (192, 96, 208, 16, 48, 64),  # 4a -> 512
    (160, 112, 224, 24, 64, 64),  # 4b -> 512
    (128, 128, 256, 24, 64, 64),  # 4c -> 512
    (112, 144, 288, 32, 64, 64),  # 4d -> 528
    (256, 160, 320, 32, 128, 128),  # 4e -> 832
    "pool",
    (256, 160, 320, 32, 128, 128),  # 5a -> 832
    (384, 192, 384, 48, 128, 128),  # 5b -> 1024
)


class InceptionBlock(nn.Module):
    """Inception-v1 block (Szegedy et al. 2015): four parallel branches, concatenated.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        channels: ``(c1, c3_reduce, c3, c5_reduce, c5, pool_proj)``.
        factorised: two 3x3 convolutions (``c5_reduce -> c5 -> c5``) instead of the 5x5 one:
            the same receptive field with one more non-linearity (Inception-v2/v3).
        norm: normalisation after every convolution.

    Shapes:
        ``(B, in_channels, *spatial) -> (B, c1 + c3 + c5 + pool_proj, *spatial)``.

    Example:
        >>> block = InceptionBlock(3, 4, (2, 2, 3, 1, 2, 1))
        >>> block(torch.zeros(1, 4, 5, 5, 5)).shape, block.out_channels
        (torch.Size([1, 8, 5, 5, 5]), 8)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: Sequence[int],
        *,
        factorised: bool = False,
        norm: NormName = "batch",
    ) -> None:
        super().__init__()
        c1, c3r, c3, c5r, c5, pool_proj = channels

        def conv(cin: int, cout: int, kernel_size: int = 1) -> nn.Module:
            return ConvNormAct(
                spatial_dims, cin, cout, kernel_size=kernel_size, norm=norm, act="relu"
            )

        wide = [conv(c5r, c5, 3), conv(c5, c5, 3)] if factorised else [conv(c5r, c5, 5)]
        self.branches = nn.ModuleList(
            [
                conv(in_channels, c1),
                nn.Sequential(conv(in_channels, c3r), conv(c3r, c3, 3)),
                nn.Sequential(conv(in_channels, c5r), *wide),
                nn.Sequential(max_pool_type(spatial_dims)(3, 1, 1), conv(in_channels, pool_proj)),
            ]
        )
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class Inception(Classifier):
    """GoogLeNet (Inception-v1) without the auxiliary classifiers: stem (7x7/2 conv, 3/2
    max-pool, 1x1 and 3x3 convs, 3/2 max-pool), the nine :class:`InceptionBlock` s of
    :data:`GOOGLENET_BLOCKS`, global average pooling, dropout, linear. Any input size
    works (all pools are padded).

    2D, 3 -> 1000 classes: 7,005,832 parameters with the true 5x5 branch (torchvision's
    ``googlenet`` without auxiliary heads has 6,624,904 because its "5x5" branch is a 3x3
    convolution), 7,292,264 factorised.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: image channels.
        out_channels: classes (logits), or regression targets (linear output).
        width: multiplier of every channel count (e.g. 0.25 for small 3D models).
        factorised: two 3x3 convolutions instead of each 5x5.
        norm: ``batch`` (as torchvision), ``group``, ``instance`` or ``none``.
        dropout: dropout before the linear layer (torchvision's 0.2; the paper's 0.4).

    Example:
        >>> net = Inception(2, 1, 3, width=0.125)
        >>> net(torch.zeros(2, 1, 28, 28)).shape, net.num_features
        (torch.Size([2, 3]), 128)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        width: float = 1.0,
        factorised: bool = False,
        norm: NormName = "batch",
        dropout: float = 0.2,
    ) -> None:
        def scale(c: int) -> int:
            return max(1, round(c * width))

        pool = max_pool_type(spatial_dims)
        opts = {"norm": norm, "act": "relu"}
        layers: list[nn.Module] = [
            ConvNormAct(spatial_dims, in_channels, scale(64), kernel_size=7, stride=2, **opts),
            pool(3, 2, 1),
            ConvNormAct(spatial_dims, scale(64), scale(64), kernel_size=1, **opts),
            ConvNormAct(spatial_dims, scale(64), scale(192), **opts),
            pool(3, 2, 1),
        ]
        channels = scale(192)
        for spec in GOOGLENET_BLOCKS:
            if spec == "pool":
                layers.append(pool(3, 2, 1))
                continue
            block = InceptionBlock(
                spatial_dims, channels, [scale(c) for c in spec], factorised=factorised, norm=norm
            )
            layers.append(block)
            channels = block.out_channels
        super().__init__(
            spatial_dims,
            nn.Sequential(*layers),
            linear_head(channels, out_channels, dropout=dropout),
            channels,
        )
