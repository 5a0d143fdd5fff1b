"""Soft Jaccard (IoU) loss.

With probabilities ``p`` and one-hot target ``g`` per class (sums over voxels, and over the
batch too with ``batch_dice``):

    ``J = (sum p g + s) / (sum p + sum g - sum p g + s)``,  loss ``= 1 - mean(J)``.

At a hard (0/1) prediction ``J`` is the IoU, which relates to Dice by ``J = D / (2 - D)``:
the two rank predictions alike but IoU penalises a partial overlap more (Rahman & Wang 2016
name it the IoU loss; MONAI: ``DiceLoss(jaccard=True)``, whose denominator is squared).
"""

from __future__ import annotations

from torch import Tensor

from medseg.losses.dice import OverlapLoss
from medseg.losses.inputs import sum_voxels


def soft_jaccard(
    probs: Tensor, onehot: Tensor, *, smooth: float = 1e-5, batch_dice: bool = False
) -> Tensor:
    """Per-class soft Jaccard index of probabilities against a one-hot target.

    Returns:
        ``(B, K)``, or ``(K,)`` with ``batch_dice``.

    Example:
        >>> import torch
        >>> g = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> p = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
        >>> soft_jaccard(p, g, smooth=0.0)   # 1 shared of 3 covered voxels
        tensor([[0.3333]])
    """
    intersection = sum_voxels(probs * onehot, batch_dice=batch_dice)
    union = (
        sum_voxels(probs, batch_dice=batch_dice)
        + sum_voxels(onehot, batch_dice=batch_dice)
        - intersection
    )
    return (intersection + smooth) / (union + smooth).clamp_min(1e-8)


class JaccardLoss(OverlapLoss):
    """``1 - mean soft Jaccard`` (IoU) on logits; ``loss(logits, target)``.

    Options ``include_background`` (default False), ``smooth``, ``batch_dice``,
    ``activation``, ``ignore_index`` as :class:`medseg.losses.dice.OverlapLoss`.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])  # confident, correct
        >>> round(JaccardLoss()(logits, torch.tensor([[[[0, 1]]]])).item(), 3)
        0.0
    """

    def score(self, probs: Tensor, onehot: Tensor) -> Tensor:
        return soft_jaccard(probs, onehot, smooth=self.smooth, batch_dice=self.batch_dice)


__all__ = ["JaccardLoss", "soft_jaccard"]
