"""A U-Net that also classifies the image: segmentation + a classification head on the
bottleneck.

The encoder's deepest feature map is globally average-pooled and passed through a small MLP,
so one network predicts per-voxel labels and an image-level class (e.g. "tumour present",
a grade, the normal/TB label of a chest X-ray) from shared features. Train it with
:class:`medseg.losses.multitask.MultitaskLoss` (a weighted sum of a segmentation loss and a
classification loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from medseg.nets.ops import adaptive_avg_pool
from medseg.nets.shapes import check_divisible
from medseg.nets.unet import UNet


class MultitaskOutput(NamedTuple):
    """What :class:`UNetMultitask` returns: ``segmentation`` logits ``(B, K, *spatial)`` (a
    list, highest resolution first, in training mode with deep supervision) and
    ``classification`` logits ``(B, num_classes)``."""

    segmentation: Tensor | list[Tensor]
    classification: Tensor


class UNetMultitask(UNet):
    """U-Net + bottleneck classifier: ``(B, C, *spatial) ->`` :class:`MultitaskOutput`.

    Args:
        spatial_dims, in_channels, out_channels: as :class:`UNet` (``out_channels``: the
            segmentation classes).
        num_classes: image-level classes of the classification head.
        head_hidden: hidden widths of the head's MLP (``()``: a single linear layer).
        head_dropout: dropout before every linear layer of the head.
        **options: every :class:`UNet` option (features, strides, norm, ...).

    Example:
        >>> net = UNetMultitask(2, 1, 3, num_classes=4, features=(4, 8, 16))
        >>> out = net(torch.zeros(2, 1, 16, 16))
        >>> out.segmentation.shape, out.classification.shape
        (torch.Size([2, 3, 16, 16]), torch.Size([2, 4]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        num_classes: int = 2,
        head_hidden: Sequence[int] = (64,),
        head_dropout: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels, **options)
        layers: list[nn.Module] = [adaptive_avg_pool(spatial_dims, 1), nn.Flatten(1)]
        width = self.encoder.features[-1]
        for hidden in [*head_hidden, num_classes]:
            if head_dropout > 0:
                layers.append(nn.Dropout(head_dropout))
            layers.append(nn.Linear(width, int(hidden)))
            layers.append(nn.ReLU(inplace=True))
            width = int(hidden)
        self.classifier = nn.Sequential(*layers[:-1])  # no ReLU after the output layer
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> MultitaskOutput:  # type: ignore[override]
        """:class:`MultitaskOutput` (segmentation logits, class logits)."""
        check_divisible(x.shape[2:], self.required_divisor)
        skips = self.encoder(x)
        if self.aspp is not None:
            skips = [*skips[:-1], self.aspp(skips[-1])]
        classification = self.classifier(skips[-1])
        features = self.decoder(skips)
        if self.training and self.deep_supervision:
            segmentation: Tensor | list[Tensor] = [
                head(f) for head, f in zip(self.heads, features, strict=True)
            ]
        else:
            segmentation = self.heads[0](features[0])
        return MultitaskOutput(segmentation, classification)


def split_outputs(outputs: Any) -> tuple[Any, torch.Tensor | None]:
    """``(segmentation, classification)`` of a :class:`MultitaskOutput`; ``(outputs, None)``
    for a plain segmentation output."""
    if isinstance(outputs, MultitaskOutput):
        return outputs.segmentation, outputs.classification
    return outputs, None
