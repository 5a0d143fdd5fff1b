"""Per-image losses for the classifiers: ``loss(outputs, targets)`` on ``(B, K)`` outputs.

Registered in :data:`medseg.losses.LOSSES` with ``task="classification"`` (``classification_ce``,
``margin``) or ``task="regression"`` (``mse``, ``l1``). Each casts the outputs to float32 (they
may come out of mixed precision) and returns a scalar, the mean over the batch; the values
are exactly those of ``torch.nn.functional.cross_entropy`` / ``mse_loss`` / ``l1_loss``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ClassificationCrossEntropy(nn.Module):
    """Cross-entropy of ``(B, K)`` logits against ``(B,)`` int class indices.

    Args:
        weight: optional per-class weights ``(K,)`` (e.g. inverse class frequencies); the
            loss is then the weighted mean ``sum w_y l / sum w_y``, as in torch.

    Shapes:
        ``outputs (B, K)`` float logits, ``targets (B,)`` int64 ``-> ()``.

    Example:
        >>> loss = ClassificationCrossEntropy()
        >>> round(loss(torch.zeros(2, 4), torch.tensor([0, 3])).item(), 4)  # log(4)
        1.3863
    """

    weight: Tensor | None

    def __init__(self, *, weight: Tensor | Sequence[float] | None = None) -> None:
        super().__init__()
        weights = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        self.register_buffer("weight", weights, persistent=False)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.to(outputs.device)
        return F.cross_entropy(outputs.float(), targets, weight=weight)


class MSELoss(nn.Module):
    """Mean squared error of ``(B, K)`` regression outputs against ``(B, K)`` float targets.

    Example:
        >>> MSELoss()(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])).item()
        2.5
    """

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.mse_loss(outputs.float(), targets)


class L1Loss(nn.Module):
    """Mean absolute error of ``(B, K)`` regression outputs against ``(B, K)`` float targets.

    Example:
        >>> L1Loss()(torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, 0.0]])).item()
        1.5
    """

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.l1_loss(outputs.float(), targets)
