"""Tversky loss (Salehi et al. 2017): Dice with separate false-positive and false-negative
weights.

    ``TI = (TP + s) / (TP + alpha FP + beta FN + s)``,  loss ``= 1 - mean(TI)``,

``TP = sum p g``, ``FP = sum p (1 - g)``, ``FN = sum (1 - p) g`` per class. ``alpha = beta =
0.5`` is the soft Dice; ``beta > alpha`` favours recall (the paper's ``alpha = 0.3, beta =
0.7`` for small lesions).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from medseg.losses.dice import OverlapLoss
from medseg.losses.inputs import sum_voxels


def tversky_index(
    probs: Tensor,
    onehot: Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    smooth: float = 1e-5,
    batch_dice: bool = False,
) -> Tensor:
    """Per-class Tversky index, ``(B, K)`` or ``(K,)`` with ``batch_dice``.

    Example:
        >>> import torch
        >>> g = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> p = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])   # TP 1, FP 1, FN 1
        >>> tversky_index(p, g, alpha=0.3, beta=0.7, smooth=0.0)   # 1 / (1 + 0.3 + 0.7)
        tensor([[0.5000]])
    """
    tp = sum_voxels(probs * onehot, batch_dice=batch_dice)
    fp = sum_voxels(probs * (1.0 - onehot), batch_dice=batch_dice)
    fn = sum_voxels((1.0 - probs) * onehot, batch_dice=batch_dice)
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth).clamp_min(1e-8)


class TverskyLoss(OverlapLoss):
    """``1 - mean Tversky index`` on logits; ``loss(logits, target)``.

    Args:
        alpha: false-positive weight.
        beta: false-negative weight.
        **options: ``include_background`` (default False), ``smooth``, ``batch_dice`` (one
            index per class over the batch), ``activation``, ``ignore_index``, as
            :class:`medseg.losses.dice.OverlapLoss`.
    """

    def __init__(self, *, alpha: float = 0.3, beta: float = 0.7, **options: Any) -> None:
        super().__init__(**options)
        self.alpha, self.beta = alpha, beta

    def score(self, probs: Tensor, onehot: Tensor) -> Tensor:
        return tversky_index(
            probs,
            onehot,
            alpha=self.alpha,
            beta=self.beta,
            smooth=self.smooth,
            batch_dice=self.batch_dice,
        )
