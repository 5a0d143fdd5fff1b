"""Confusion counts of two binary masks and the overlap metrics built from them.

Every metric is a function of ``ConfusionCounts`` (TP, FP, FN, TN) and returns NaN where its
formula is 0/0, as in the "empty labelmaps" table of the seed lecture:

================================  =====================================================
reference empty, prediction not   TP = FN = 0: DSC = IoU = precision = 0, recall = NaN
prediction empty, reference not   TP = FP = 0: DSC = IoU = recall = 0, precision = NaN
both empty                        TP = FP = FN = 0: DSC, IoU, recall, precision, VS,
                                  F1, MCC = NaN; specificity, accuracy, NPV stay defined
================================  =====================================================

Formulas follow Taha & Hanbury (2015), "Metrics for evaluating 3D medical image
segmentation", and the seed lecture; MCC is NaN whenever a marginal is zero (0/0), where
scikit-learn returns 0 by convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medseg.registry import Registry

OVERLAP_METRICS = Registry("overlap metric")


@dataclass(frozen=True)
class ConfusionCounts:
    """Voxel counts of a binary prediction against a binary reference.

    Attributes:
        tp: voxels in both masks.
        fp: voxels in the prediction only.
        fn: voxels in the reference only.
        tn: voxels in neither (excluding ignored voxels).
    """

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


def confusion_counts(
    pred: np.ndarray, ref: np.ndarray, *, valid: np.ndarray | None = None
) -> ConfusionCounts:
    """Count TP, FP, FN and TN of two binary masks.

    Args:
        pred: ``(*spatial)`` prediction; non-zero is foreground.
        ref: ``(*spatial)`` reference, same shape.
        valid: optional ``(*spatial)`` bool mask; voxels where it is False are not counted
            (the ignore label).

    Returns:
        The counts as Python ints.

    Raises:
        ValueError: when the shapes differ.

    Example:
        >>> confusion_counts(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
        ConfusionCounts(tp=1, fp=1, fn=1, tn=1)
    """
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref shapes differ: {pred.shape} vs {ref.shape}")
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        pred, ref = pred & valid, ref & valid
        total = int(np.count_nonzero(valid))
    else:
        total = pred.size
    tp = int(np.count_nonzero(pred & ref))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(ref)) - tp
    return ConfusionCounts(tp, fp, fn, total - tp - fp - fn)


def _ratio(num: float, den: float) -> float:
    """``num / den`` as float, NaN when ``den`` is 0 (the 0/0 convention)."""
    return float(num) / float(den) if den else math.nan


@OVERLAP_METRICS.register("dice")
def dice(c: ConfusionCounts) -> float:
    """Dice similarity coefficient ``2TP / (2TP + FP + FN)`` (= F1); NaN when both are empty.

    Example:
        >>> dice(ConfusionCounts(tp=2, fp=1, fn=1, tn=12))
        0.6666666666666666
    """
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


@OVERLAP_METRICS.register("iou")
def iou(c: ConfusionCounts) -> float:
    """Jaccard index / IoU ``TP / (TP + FP + FN)``; NaN when both masks are empty."""
    return _ratio(c.tp, c.tp + c.fp + c.fn)


@OVERLAP_METRICS.register("precision")
def precision(c: ConfusionCounts) -> float:
    """Precision / PPV ``TP / (TP + FP)``; NaN when the prediction is empty."""
    return _ratio(c.tp, c.tp + c.fp)


@OVERLAP_METRICS.register("recall")
def recall(c: ConfusionCounts) -> float:
    """Recall / sensitivity / TPR ``TP / (TP + FN)``; NaN when the reference is empty."""
    return _ratio(c.tp, c.tp + c.fn)


@OVERLAP_METRICS.register("specificity")
def specificity(c: ConfusionCounts) -> float:
    """Specificity / TNR ``TN / (TN + FP)``; NaN only when the image has no negatives."""
    return _ratio(c.tn, c.tn + c.fp)


@OVERLAP_METRICS.register("npv")
def npv(c: ConfusionCounts) -> float:
    """Negative predictive value ``TN / (TN + FN)``; NaN when nothing is predicted negative."""
    return _ratio(c.tn, c.tn + c.fn)


@OVERLAP_METRICS.register("accuracy")
def accuracy(c: ConfusionCounts) -> float:
    """Accuracy ``(TP + TN) / (TP + FP + FN + TN)``; NaN only for zero voxels."""
    return _ratio(c.tp + c.tn, c.total)


@OVERLAP_METRICS.register("f1")
def f1(c: ConfusionCounts) -> float:
    """F1 ``2 PPV TPR / (PPV + TPR) = 2TP / (2TP + FP + FN)``, identical to Dice."""
    return dice(c)


@OVERLAP_METRICS.register("mcc")
def mcc(c: ConfusionCounts) -> float:
    """Matthews correlation ``(TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))``.

    NaN when any of the four marginals is 0 (0/0; scikit-learn returns 0 there instead).
    Products are exact Python integers, so a perfect prediction gives exactly 1.0.
    """
    numerator = c.tp * c.tn - c.fp * c.fn
    squared = (c.tp + c.fp) * (c.tp + c.fn) * (c.tn + c.fp) * (c.tn + c.fn)
    root = math.isqrt(squared)
    return _ratio(numerator, root if root * root == squared else math.sqrt(squared))


@OVERLAP_METRICS.register("vs")
def volume_similarity(c: ConfusionCounts) -> float:
    """Volume similarity ``1 - |FN - FP| / (2TP + FP + FN)``; NaN when both are empty."""
    den = 2 * c.tp + c.fp + c.fn
    return 1.0 - abs(c.fn - c.fp) / den if den else math.nan


def overlap_metrics(c: ConfusionCounts) -> dict[str, float]:
    """Every registered overlap metric of ``c``, by name (``dice``, ``iou``, ... ``vs``).

    Example:
        >>> round(overlap_metrics(ConfusionCounts(2, 1, 1, 12))["iou"], 4)
        0.5
    """
    return {name: OVERLAP_METRICS.get(name)(c) for name in OVERLAP_METRICS.names()}
