"""Losses by name: ``build_loss("dice_ce", batch_dice=True)``; every registered loss is
called as ``loss(outputs, target)``.

Segmentation losses (``task="segmentation"``) take logits ``(B, K, *spatial)`` and target
labels ``(B, 1, *spatial)`` or one-hot ``(B, K, *spatial)``. Shared option names:
``include_background``, ``smooth`` (0 allowed), ``batch_dice``, ``activation`` (``softmax`` |
``sigmoid``), ``ignore_index``; focal: ``gamma``, ``alpha`` (None: no class weighting);
Tversky: ``alpha`` (FP weight), ``beta`` (FN weight).

Classifier losses (``task="classification"`` or ``"regression"``, :mod:`medseg.losses.
classification`) take per-image outputs ``(B, K)`` and targets ``(B,)`` class indices or
``(B, K)`` values. ``cox`` (``task="survival"``) takes log-risks ``(N, 1)`` and a target
``(N, 2)`` of times and event flags; ``multitask`` (``task="multitask"``) takes a
``(segmentation, class)`` output and a ``(seg_target, class_target)`` pair.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from medseg.losses.boundary import BoundaryLoss
from medseg.losses.classification import ClassificationCrossEntropy, L1Loss, MSELoss
from medseg.losses.compound import DiceCELoss
from medseg.losses.cox import CoxLoss
from medseg.losses.cross_entropy import CrossEntropyLoss, WeightedCrossEntropyLoss
from medseg.losses.dice import DiceLoss, GeneralizedDiceLoss
from medseg.losses.focal import FocalLoss
from medseg.losses.jaccard import JaccardLoss
from medseg.losses.margin import MarginLoss
from medseg.losses.multitask import MultitaskLoss
from medseg.losses.tversky import TverskyLoss
from medseg.registry import Registry

LOSSES = Registry("loss")

for _name, _builder, _task, _description in [
    ("ce", CrossEntropyLoss, "segmentation", "Cross-entropy per voxel, optional class weights"),
    (
        "weighted_ce",
        WeightedCrossEntropyLoss,
        "segmentation",
        "Cross-entropy with U-Net border weight maps (Ronneberger 2015)",
    ),
    ("dice", DiceLoss, "segmentation", "Soft Dice, 1 - mean Dice over classes"),
    ("iou", JaccardLoss, "segmentation", "Soft Jaccard (IoU), 1 - mean IoU over classes"),
    (
        "generalized_dice",
        GeneralizedDiceLoss,
        "segmentation",
        "Generalized Dice, classes weighted by 1 / volume^2 (Sudre 2017)",
    ),
    ("focal", FocalLoss, "segmentation", "Focal loss, down-weights easy voxels (Lin 2017)"),
    (
        "tversky",
        TverskyLoss,
        "segmentation",
        "Tversky loss, separate FP and FN weights (Salehi 2017)",
    ),
    (
        "boundary",
        BoundaryLoss,
        "segmentation",
        "Boundary loss on signed distance maps (Kervadec 2019)",
    ),
    ("dice_ce", DiceCELoss, "segmentation", "Soft Dice + cross-entropy (nnU-Net's default)"),
    (
        "classification_ce",
        ClassificationCrossEntropy,
        "classification",
        "Cross-entropy of (B, K) logits against (B,) class indices, optional class weights",
    ),
    (
        "margin",
        MarginLoss,
        "classification",
        "Capsule margin loss on (B, K) capsule lengths (Sabour 2017)",
    ),
    ("mse", MSELoss, "regression", "Mean squared error of (B, K) outputs"),
    ("l1", L1Loss, "regression", "Mean absolute error of (B, K) outputs"),
    (
        "cox",
        CoxLoss,
        "survival",
        "Negative Cox partial log-likelihood (Breslow ties) of (N, 1) log-risks; "
        "target (N, 2) time, event",
    ),
]:
    LOSSES.register(_name, description=_description, task=_task)(_builder)

LOSSES.register(
    "multitask",
    description="Weighted segmentation + classification loss of a (segmentation, class) output",
    task="multitask",
    options=["cls_loss", "seg_loss", "weights"],
)(MultitaskLoss)


@LOSSES.register(
    "milletari_dice",
    description="V-Net Dice with a squared denominator (Milletari 2016)",
    task="segmentation",
    options=["activation", "batch_dice", "ignore_index", "include_background", "smooth"],
)
def milletari_dice(**options: Any) -> DiceLoss:
    """Milletari et al. 2016 (V-Net) Dice: squared denominator ``sum p^2 + sum g^2``.

    Options as :class:`DiceLoss` (``smooth`` defaults to 1e-5; the paper has none).
    """
    return DiceLoss(squared_denominator=True, **options)


def list_losses(task: str | None = None) -> list[str]:
    """Registered loss names, sorted: all, or those of one ``task`` (``"segmentation"``,
    ``"classification"``, ``"regression"``).

    Example:
        >>> "dice_ce" in list_losses(), list_losses("regression")
        (True, ['l1', 'mse'])
    """
    return LOSSES.names(task=task)


def loss_options(name: str) -> list[str]:
    """The keyword options a registered loss accepts.

    Raises:
        ConfigError: for an unknown loss name (listing the valid ones).

    Example:
        >>> loss_options("classification_ce")
        ['weight']
    """
    return LOSSES.options(name)


def build_loss(name: str, **config: Any) -> nn.Module:
    """Build a registered loss.

    Raises:
        ConfigError: for an unknown name or option, naming the valid ones.

    Example:
        >>> build_loss("focal", gamma=0.0).gamma
        0.0
    """
    return LOSSES.build(name, **config)
