"""Soft Dice losses: Dice, Milletari's squared-denominator Dice, Generalized Dice.

With probabilities ``p`` and one-hot target ``g`` per class (sums over voxels, and over the
batch too with ``batch_dice``):

* soft Dice: ``D = (2 sum p g + s) / (sum p + sum g + s)``;
* Milletari et al. 2016 (V-Net): ``D = 2 sum p g / (sum p^2 + sum g^2)``, whose gradient is
  ``dD/dp_j = 2 [g_j (sum p^2 + sum g^2) - 2 p_j sum p g] / (sum p^2 + sum g^2)^2``;
* Generalized Dice (Sudre et al. 2017): ``GD = (2 sum_l w_l sum p g + s) / (sum_l w_l
  sum (p + g) + s)``, ``w_l = 1 / (sum g_l)^2``, so small structures weigh as much as large.

The losses are ``1 - mean(D)``: 0 at a perfect (hard) prediction. ``smooth`` (``s``) may be
0; a class absent from both target and prediction then has ``D = 0`` (denominator clamped at
``1e-8``, as nnU-Net), with ``s > 0`` it has ``D = 1``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from medseg.losses.inputs import Activation, prepare, sum_voxels


def soft_dice(
    probs: Tensor,
    onehot: Tensor,
    *,
    smooth: float = 1e-5,
    batch_dice: bool = False,
    squared: bool = False,
) -> Tensor:
    """Per-class soft Dice of probabilities against a one-hot target.

    Args:
        probs: ``(B, K, *spatial)`` probabilities.
        onehot: ``(B, K, *spatial)`` target.
        smooth: added to numerator and denominator.
        batch_dice: one Dice per class over the whole batch.
        squared: Milletari's denominator ``sum p^2 + sum g^2``.

    Returns:
        ``(B, K)``, or ``(K,)`` with ``batch_dice``.

    Example:
        >>> g = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
        >>> p = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
        >>> soft_dice(p, g, smooth=0.0)
        tensor([[0.5000]])
    """
    intersection = sum_voxels(probs * onehot, batch_dice=batch_dice)
    if squared:
        denominator = sum_voxels(probs * probs, batch_dice=batch_dice) + sum_voxels(
            onehot * onehot, batch_dice=batch_dice
        )
    else:
        denominator = sum_voxels(probs, batch_dice=batch_dice) + sum_voxels(
            onehot, batch_dice=batch_dice
        )
    return (2.0 * intersection + smooth) / (denominator + smooth).clamp_min(1e-8)


def generalized_dice(
    probs: Tensor, onehot: Tensor, *, smooth: float = 1e-5, batch_dice: bool = False
) -> Tensor:
    """Generalized Dice (Sudre et al. 2017) with ``w_l = 1 / (sum g_l)^2``.

    A class absent from the target has an infinite weight; it gets the largest finite weight
    of its sample instead (as MONAI), or 0 when every class is absent.

    Returns:
        ``(B,)``, or a scalar with ``batch_dice``.

    Example:
        >>> g = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]]])
        >>> round(generalized_dice(g, g, smooth=0.0).item(), 6)
        1.0
    """
    ref = sum_voxels(onehot, batch_dice=batch_dice)
    weights = 1.0 / (ref * ref)
    absent = torch.isinf(weights)
    weights = torch.where(absent, torch.zeros_like(weights), weights)
    largest = weights.max(dim=-1, keepdim=True).values
    weights = torch.where(absent, largest.expand_as(weights), weights)
    intersection = sum_voxels(probs * onehot, batch_dice=batch_dice)
    total = sum_voxels(probs, batch_dice=batch_dice) + ref
    numerator = 2.0 * (weights * intersection).sum(dim=-1) + smooth
    return numerator / ((weights * total).sum(dim=-1) + smooth).clamp_min(1e-8)


class OverlapLoss(nn.Module):
    """Base of the overlap losses: ``1 - mean(score(probs, onehot))`` on logits.

    Holds the options every overlap loss shares and turns ``(logits, target)`` into
    probabilities and a one-hot target (:func:`medseg.losses.inputs.prepare`); a subclass
    adds its own options and defines :meth:`score`, the per-class (or per-sample) overlap.

    Args:
        include_background: keep channel 0 (softmax only; see
            :func:`medseg.losses.inputs.prepare`).
        smooth: added to numerator and denominator (0 allowed).
        batch_dice: one score per class over the batch (nnU-Net's ``batch_dice``), else one
            per sample and class, averaged.
        activation: ``softmax`` or ``sigmoid``.
        ignore_index: label whose voxels are left out.
    """

    def __init__(
        self,
        *,
        include_background: bool = False,
        smooth: float = 1e-5,
        batch_dice: bool = False,
        activation: Activation = "softmax",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.include_background = include_background
        self.smooth = smooth
        self.batch_dice = batch_dice
        self.activation = activation
        self.ignore_index = ignore_index

    def score(self, probs: Tensor, onehot: Tensor) -> Tensor:
        """The overlap of ``(B, K, *spatial)`` probabilities and one-hot target, in [0, 1]."""
        raise NotImplementedError

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        probs, onehot, _ = prepare(
            logits,
            target,
            activation=self.activation,
            ignore_index=self.ignore_index,
            include_background=self.include_background,
        )
        return 1.0 - self.score(probs, onehot).mean()


class DiceLoss(OverlapLoss):
    """``1 - mean soft Dice`` on logits; ``loss(logits, target)``.

    Args:
        squared_denominator: Milletari's ``sum p^2 + sum g^2``.
        **options: ``include_background`` (default False), ``smooth``, ``batch_dice``,
            ``activation``, ``ignore_index``, as :class:`OverlapLoss`.

    Example:
        >>> logits = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])  # confident, correct
        >>> round(DiceLoss()(logits, torch.tensor([[[[0, 1]]]])).item(), 3)
        0.0
    """

    def __init__(self, *, squared_denominator: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.squared_denominator = squared_denominator

    def score(self, probs: Tensor, onehot: Tensor) -> Tensor:
        return soft_dice(
            probs,
            onehot,
            smooth=self.smooth,
            batch_dice=self.batch_dice,
            squared=self.squared_denominator,
        )


class GeneralizedDiceLoss(OverlapLoss):
    """``1 - mean Generalized Dice`` on logits (Sudre et al. 2017); see :func:`generalized_dice`.

    The background is included by default, as in the paper and MONAI's
    ``GeneralizedDiceLoss``: the class weights only act between several classes, so without
    the background a binary task reduces to plain Dice.

    Args:
        include_background: keep channel 0 (softmax only); default True.
        **options: ``smooth``, ``batch_dice``, ``activation``, ``ignore_index``, as
            :class:`OverlapLoss`.

    Example:
        >>> logits = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])  # confident, correct
        >>> round(GeneralizedDiceLoss()(logits, torch.tensor([[[[0, 1]]]])).item(), 3)
        0.0
    """

    def __init__(self, *, include_background: bool = True, **options: Any) -> None:
        super().__init__(include_background=include_background, **options)

    def score(self, probs: Tensor, onehot: Tensor) -> Tensor:
        return generalized_dice(probs, onehot, smooth=self.smooth, batch_dice=self.batch_dice)
