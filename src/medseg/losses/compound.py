"""Dice + cross-entropy, nnU-Net's default loss (Isensee et al. 2021).

    ``L = dice_weight * (1 - mean soft Dice) + ce_weight * CE``

Dice handles the class imbalance and optimises the evaluation metric; CE gives smooth,
well-behaved gradients early in training and for every voxel. nnU-Net's Dice term excludes
the background and uses ``smooth = 1e-5``; it reports ``-Dice`` instead of ``1 - Dice``
(the same gradients, shifted by 1).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from medseg.losses.cross_entropy import cross_entropy
from medseg.losses.dice import DiceLoss
from medseg.losses.inputs import Activation


class DiceCELoss(nn.Module):
    """``dice_weight * DiceLoss + ce_weight * CE`` on logits; ``loss(logits, target)``.

    Args:
        dice_weight: weight of the Dice term.
        ce_weight: weight of the cross-entropy term.
        include_background: keep channel 0 in the Dice term (softmax only).
        smooth: Dice smoothing (0 allowed).
        batch_dice: one Dice per class over the batch (nnU-Net: for 3D full-res with small
            batches).
        class_weights: CE class weights, or None.
        activation: ``softmax`` or ``sigmoid`` (then binary CE per channel).
        ignore_index: label whose voxels are left out of both terms.

    Example:
        >>> import torch
        >>> DiceCELoss()(
        ...     torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.long)
        ... ).item() > 0
        True
    """

    def __init__(
        self,
        *,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        include_background: bool = False,
        smooth: float = 1e-5,
        batch_dice: bool = False,
        class_weights: Sequence[float] | None = None,
        activation: Activation = "softmax",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.dice = DiceLoss(
            include_background=include_background,
            smooth=smooth,
            batch_dice=batch_dice,
            activation=activation,
            ignore_index=ignore_index,
        )
        self.dice_weight, self.ce_weight = dice_weight, ce_weight
        self.class_weights = class_weights
        self.activation = activation
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        ce = cross_entropy(
            logits,
            target,
            activation=self.activation,
            class_weights=self.class_weights,
            ignore_index=self.ignore_index,
        )
        return self.dice_weight * self.dice(logits, target) + self.ce_weight * ce
