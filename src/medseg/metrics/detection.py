"""Detection metrics: COCO average precision of boxes, and (re-exported from
``medseg.metrics.instances``) the instance metrics of label maps.

**Average precision** (``average_precision``, ``coco_map``) follows pycocotools' ``COCOeval``
for one class, ``iouType="bbox"``, area range "all", no crowd annotations, and gives the same
numbers (tested against it):

1. per image, predictions are sorted by decreasing score (stable) and only the first
   ``max_dets`` (COCO's default ``maxDets=100``) are kept;
2. each prediction, in that order, is matched to the still unmatched ground-truth box with
   the largest IoU ``>= iou_threshold`` (ties: the later box, as COCO); unmatched predictions
   are false positives;
3. all images' predictions are pooled and sorted by score (stable, in image order); the
   precision curve is made non-increasing from the right and read at the 101 recall levels
   ``0, 0.01, ..., 1`` (the first point at recall ``>= r``, 0 past the last recall reached);
   AP is their mean. (pycocotools adds ``2e-16`` to the precision's denominator, so its
   perfect AP is ``1 - 2e-16``; here it is exactly 1.)

Boxes follow ``medseg.metrics.boxes`` (inclusive ``hi``), which is COCO's ``(x, y, w, h)``
with ``w = hi - lo + 1``, so the IoUs agree. 3D boxes use the same definition with volumes.

Edge cases: no prediction at all while some ground truth exists gives **AP 0** (every recall
level has precision 0). No ground-truth box in any image makes AP **undefined: NaN** (recall
is 0/0; COCO reports -1 for it) -- there is nothing to detect, whatever was predicted. An
image with predictions and no ground truth contributes false positives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.errors import ConfigError
from medseg.metrics.boxes import box_iou, check_boxes
from medseg.metrics.instances import (
    InstanceMatching,
    aggregated_jaccard_index,
    counting_error,
    instance_f1,
    match_instances,
    panoptic_quality,
)

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "COCO_RECALL_LEVELS",
    "InstanceMatching",
    "aggregated_jaccard_index",
    "average_precision",
    "coco_map",
    "counting_error",
    "instance_f1",
    "match_instances",
    "panoptic_quality",
]

#: IoU thresholds of COCO's mAP, built exactly as pycocotools does (0.50:0.05:0.95).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: The 101 recall levels of COCO's interpolated precision.
COCO_RECALL_LEVELS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)

ArrayList = Sequence[np.ndarray]


def average_precision(
    pred_boxes: ArrayList,
    pred_scores: ArrayList,
    gt_boxes: ArrayList,
    *,
    iou_threshold: float,
    max_dets: int = 100,
) -> float:
    """COCO average precision of one class over a list of images (see the module docstring).

    Args:
        pred_boxes: per image, ``(N_i, 2 * D)`` predicted boxes (array or tensor).
        pred_scores: per image, ``(N_i,)`` scores (higher = more confident).
        gt_boxes: per image, ``(G_i, 2 * D)`` ground-truth boxes.
        iou_threshold: a prediction matches a ground-truth box with IoU ``>=`` this.
        max_dets: predictions kept per image, by score (COCO: 100).

    Returns:
        AP in ``[0, 1]``; 0 when there are no predictions, NaN when there is no ground truth.

    Raises:
        ConfigError: lists of different lengths, bad boxes (``check_boxes``), scores of the
            wrong length or not finite, a threshold outside ``(0, 1]``.

    Example:
        >>> gt = [np.array([[0, 0, 9, 9], [20, 20, 29, 29]])]
        >>> pred = [np.array([[0, 0, 9, 9], [50, 50, 59, 59]])]
        >>> average_precision(pred, [np.array([0.9, 0.8])], gt, iou_threshold=0.5)  # 51 / 101
        0.504950495049505
    """
    return float(_coco_ap(pred_boxes, pred_scores, gt_boxes, [iou_threshold], max_dets)[0])


def coco_map(
    pred_boxes: ArrayList, pred_scores: ArrayList, gt_boxes: ArrayList, *, max_dets: int = 100
) -> dict[str, float]:
    """COCO's box metrics of one class: AP at IoU 0.5, at 0.75, and their mean over 0.50:0.95.

    Args:
        pred_boxes, pred_scores, gt_boxes, max_dets: as for ``average_precision``.

    Returns:
        ``{"AP50": ..., "AP75": ..., "mAP": ...}`` (``mAP`` = mean of the 10 APs at
        ``COCO_IOU_THRESHOLDS``); NaN values when there is no ground truth.

    Raises:
        ConfigError: as ``average_precision``.

    Example:
        >>> gt = [np.array([[0, 0, 9, 9]])]
        >>> coco_map([np.array([[0, 0, 9, 8]])], [np.array([1.0])], gt)  # IoU 0.9
        {'AP50': 1.0, 'AP75': 1.0, 'mAP': 0.9}
    """
    aps = _coco_ap(pred_boxes, pred_scores, gt_boxes, list(COCO_IOU_THRESHOLDS), max_dets)
    return {"AP50": float(aps[0]), "AP75": float(aps[5]), "mAP": float(np.mean(aps))}


def _coco_ap(
    pred_boxes: ArrayList,
    pred_scores: ArrayList,
    gt_boxes: ArrayList,
    thresholds: list[float],
    max_dets: int,
) -> np.ndarray:
    """AP at each threshold (NaN without ground truth)."""
    images = _check_inputs(pred_boxes, pred_scores, gt_boxes, thresholds, max_dets)
    scores_all, matched_all, n_gt = [], [], 0
    for boxes, scores, gt in images:
        order = np.argsort(-scores, kind="mergesort")[:max_dets]
        boxes, scores = boxes[order], scores[order]
        n_gt += len(gt)
        ious = box_iou(boxes, gt).numpy() if len(boxes) and len(gt) else None
        matched_all.append([_greedy_match(ious, len(boxes), t) for t in thresholds])
        scores_all.append(scores)
    if n_gt == 0:
        return np.full(len(thresholds), np.nan)
    scores = np.concatenate(scores_all) if scores_all else np.zeros(0)
    order = np.argsort(-scores, kind="mergesort")
    aps = []
    for t in range(len(thresholds)):
        tp = np.concatenate([m[t] for m in matched_all])[order]
        aps.append(_interpolated_ap(tp, n_gt))
    return np.array(aps)


def _greedy_match(ious: np.ndarray | None, n_pred: int, threshold: float) -> np.ndarray:
    """Which predictions (already in score order) match a ground-truth box, COCO's way."""
    tp = np.zeros(n_pred, dtype=bool)
    if ious is None:
        return tp
    free = np.ones(ious.shape[1], dtype=bool)
    limit = min(threshold, 1 - 1e-10)
    for d in range(n_pred):
        candidates = np.where(free & (ious[d] >= limit), ious[d], -1.0)
        best = candidates.shape[0] - 1 - int(np.argmax(candidates[::-1]))  # ties: the last
        if candidates[best] >= 0:
            free[best] = False
            tp[d] = True
    return tp


def _interpolated_ap(tp: np.ndarray, n_gt: int) -> float:
    """101-point interpolated AP of score-sorted match flags (pycocotools ``accumulate``)."""
    tps = np.cumsum(tp, dtype=np.float64)
    fps = np.cumsum(~tp, dtype=np.float64)
    recall = tps / n_gt
    precision = tps / (tps + fps)  # pycocotools adds 2e-16 here; dropped so perfect AP is 1.0
    precision = np.maximum.accumulate(precision[::-1])[::-1] if precision.size else precision
    index = np.searchsorted(recall, COCO_RECALL_LEVELS, side="left")
    q = np.zeros(COCO_RECALL_LEVELS.size)
    valid = index < precision.size
    q[valid] = precision[index[valid]]
    return float(q.mean())


def _check_inputs(
    pred_boxes: ArrayList,
    pred_scores: ArrayList,
    gt_boxes: ArrayList,
    thresholds: list[float],
    max_dets: int,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    if not len(pred_boxes) == len(pred_scores) == len(gt_boxes):
        raise ConfigError(
            f"average precision: {len(pred_boxes)} prediction lists, {len(pred_scores)} score "
            f"lists and {len(gt_boxes)} ground-truth lists; give one of each per image"
        )
    for t in thresholds:
        if not 0.0 < float(t) <= 1.0:
            raise ConfigError(f"iou_threshold must be in (0, 1], got {t!r}")
    if not isinstance(max_dets, (int, np.integer)) or max_dets < 1:
        raise ConfigError(f"max_dets must be a positive integer, got {max_dets!r}")
    arrays = [
        (_numpy(b), _numpy(s), _numpy(g))
        for b, s, g in zip(pred_boxes, pred_scores, gt_boxes, strict=True)
    ]
    widths = {a.shape[1] for b, _, g in arrays for a in (b, g) if a.size and a.ndim == 2}
    if len(widths) > 1:
        raise ConfigError(f"average precision: boxes of different widths {sorted(widths)}")
    width = widths.pop() if widths else 4  # all empty: any width will do
    images = []
    for i, (boxes, scores, gt) in enumerate(arrays):
        boxes, gt = (a.reshape(-1, width) if a.size == 0 else a for a in (boxes, gt))
        check_boxes(boxes, width // 2, f"image {i} predicted boxes")
        check_boxes(gt, width // 2, f"image {i} ground-truth boxes")
        scores = scores.reshape(-1).astype(np.float64)
        if scores.size != boxes.shape[0]:
            raise ConfigError(
                f"image {i}: {scores.size} scores for {boxes.shape[0]} predicted boxes"
            )
        if not np.isfinite(scores).all():
            raise ConfigError(f"image {i}: scores must be finite")
        images.append((boxes.astype(np.float64), scores, gt.astype(np.float64)))
    return images


def _numpy(values: object) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(values)
