"""A weighted sum of a segmentation loss and a classification loss, for networks with both
outputs (:class:`medseg.nets.unet_multitask.UNetMultitask`).

``MultitaskLoss(seg_loss, cls_loss, weights)(outputs, (seg_target, class_target))`` with
``outputs`` a :class:`~medseg.nets.unet_multitask.MultitaskOutput`; each loss is a module or a
registered loss name (``"dice_ce"``, ``"classification_ce"``). A list of segmentation outputs
(deep supervision) goes through :class:`~medseg.losses.deep_supervision.DeepSupervisionLoss`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.losses.deep_supervision import DeepSupervisionLoss


def _loss(loss: str | nn.Module) -> nn.Module:
    if isinstance(loss, str):
        from medseg.losses.registry import build_loss  # the registry imports this module

        return build_loss(loss)
    return loss


class MultitaskLoss(nn.Module):
    """``w_seg * seg_loss(seg_logits, seg_target) + w_cls * cls_loss(cls_logits, cls_target)``.

    Args:
        seg_loss: segmentation loss (module or registered name), default ``dice_ce``.
        cls_loss: classification loss (module or registered name), default
            ``classification_ce``.
        weights: ``(w_seg, w_cls)``, non-negative, not both 0.

    ``forward`` also stores the two terms (detached floats) in :attr:`last_terms`, for logs.

    Raises:
        ConfigError: weights of the wrong length, negative or both zero.

    Example:
        >>> import torch
        >>> from medseg.nets.unet_multitask import MultitaskOutput
        >>> loss = MultitaskLoss(weights=(1.0, 0.5))
        >>> out = MultitaskOutput(torch.zeros(2, 3, 4, 4), torch.zeros(2, 2))
        >>> target = (torch.zeros(2, 1, 4, 4, dtype=torch.long), torch.tensor([0, 1]))
        >>> loss(out, target) > 0
        tensor(True)
    """

    def __init__(
        self,
        seg_loss: str | nn.Module = "dice_ce",
        cls_loss: str | nn.Module = "classification_ce",
        weights: Sequence[float] = (1.0, 1.0),
    ) -> None:
        super().__init__()
        weights = tuple(float(w) for w in weights)
        if len(weights) != 2 or min(weights) < 0 or max(weights) == 0:
            raise ConfigError(
                f"multitask weights must be two non-negative numbers, not both 0; got {weights}"
            )
        self.seg_loss = DeepSupervisionLoss(_loss(seg_loss))
        self.cls_loss = _loss(cls_loss)
        self.weights = weights
        self.last_terms: dict[str, float] = {}

    def forward(self, outputs: Any, target: Sequence[Tensor]) -> Tensor:
        segmentation, classification = outputs
        seg_target, cls_target = target
        seg = self.seg_loss(segmentation, seg_target)
        cls = self.cls_loss(classification, cls_target)
        self.last_terms = {"seg_loss": float(seg.detach()), "cls_loss": float(cls.detach())}
        return self.weights[0] * seg + self.weights[1] * cls
