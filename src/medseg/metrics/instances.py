"""Instance-segmentation metrics of two label maps: matching, F1, panoptic quality, AJI, count.

Inputs are ``(*spatial)`` instance label maps of one shape (any dimension), 0 = background,
each other value one instance; ids need not be consecutive nor agree between the maps. All
overlaps come from one pass over the voxels (``np.unique`` of pair codes), so images with
thousands of instances cost about as much as a few ``np.unique`` calls.

Definitions (``n_pred``, ``n_gt`` instances; ``|a|`` voxel counts):

* **Matching** (``match_instances``): pairs with ``IoU >= iou_threshold`` (StarDist's rule),
  one-to-one, greedily by decreasing IoU (ties: lower gt id, then lower pred id). For a
  threshold ``>= 0.5`` a pair above it is already unique except at IoU exactly 0.5.
* **F1** (``instance_f1``): ``tp`` matched pairs, ``fp = n_pred - tp``, ``fn = n_gt - tp``;
  ``precision = tp / n_pred``, ``recall = tp / n_gt``, ``f1 = 2 tp / (2 tp + fp + fn)``.
* **Panoptic quality** (``panoptic_quality``, Kirillov et al., CVPR 2019): matches with
  ``IoU > 0.5`` (strict, so unique); ``SQ`` = mean IoU of the matches, ``RQ = tp / (tp + fp / 2
  + fn / 2)``, ``PQ = SQ * RQ``; ``SQ = 0`` when nothing matches (as panopticapi).
* **AJI** (``aggregated_jaccard_index``, Kumar et al., IEEE TMI 2017): every gt instance takes
  the pred instance of highest IoU with it (ties: lower pred id; none if nothing overlaps),
  ``C += |g & p|``, ``U += |g | p|`` (``|g|`` alone without a partner); every pred instance
  taken by no gt adds its size to ``U``; ``AJI = C / U``. As in the original, one pred
  instance may serve several gt instances (AJI+ removes that; not done here).
* **Counting error** (``counting_error``): ``|n_pred - n_gt| / n_gt``.

Empty maps: when **both** maps are empty every score is perfect (precision, recall, F1, PQ,
SQ, RQ, AJI = 1, counting error 0): nothing to find and nothing found. An empty prediction
against a non-empty gt gives 0 for all of them (precision is set to 0, not 0/0); predictions
against an empty gt give precision, F1, PQ, AJI 0, recall 0 and counting error NaN (a
relative error of a zero count is undefined).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseg.errors import ConfigError, GeometryError

__all__ = [
    "InstanceMatching",
    "aggregated_jaccard_index",
    "counting_error",
    "instance_f1",
    "match_instances",
    "panoptic_quality",
]


@dataclass(frozen=True)
class InstanceMatching:
    """One-to-one matching of predicted and ground-truth instances.

    Attributes:
        pred_ids: ``(n_pred,)`` the predicted instance ids, increasing.
        gt_ids: ``(n_gt,)`` the ground-truth instance ids, increasing.
        pairs: ``(tp, 2)`` matched ``(pred_id, gt_id)``, by decreasing IoU.
        ious: ``(tp,)`` their IoUs.
        iou_threshold: the threshold used.
    """

    pred_ids: np.ndarray
    gt_ids: np.ndarray
    pairs: np.ndarray
    ious: np.ndarray
    iou_threshold: float

    @property
    def tp(self) -> int:
        return int(self.pairs.shape[0])

    @property
    def n_pred(self) -> int:
        return int(self.pred_ids.size)

    @property
    def n_gt(self) -> int:
        return int(self.gt_ids.size)


@dataclass(frozen=True)
class _Overlaps:
    pred_ids: np.ndarray  # (P,)
    pred_sizes: np.ndarray  # (P,)
    gt_ids: np.ndarray  # (G,)
    gt_sizes: np.ndarray  # (G,)
    pi: np.ndarray  # (K,) index into pred_ids of each overlapping pair
    gi: np.ndarray  # (K,) index into gt_ids
    inter: np.ndarray  # (K,) voxels in common
    iou: np.ndarray  # (K,)


def match_instances(
    pred: np.ndarray, gt: np.ndarray, iou_threshold: float = 0.5
) -> InstanceMatching:
    """Match predicted to ground-truth instances one-to-one (module docstring).

    Args:
        pred: ``(*spatial)`` predicted instance labels, 0 = background.
        gt: ``(*spatial)`` ground-truth instance labels.
        iou_threshold: in ``(0, 1]``; a pair matches with ``IoU >= iou_threshold``.

    Returns:
        The ``InstanceMatching``.

    Raises:
        GeometryError: different shapes.
        ConfigError: labels that are not non-negative integers, a threshold outside ``(0, 1]``.

    Example:
        >>> gt = np.array([[1, 1, 0, 2, 2]]); pred = np.array([[5, 5, 5, 0, 0]])
        >>> match_instances(pred, gt).pairs.tolist()
        [[5, 1]]
    """
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    ov = _overlaps(pred, gt)
    keep = _greedy(ov, ov.iou >= float(iou_threshold))
    return InstanceMatching(
        pred_ids=ov.pred_ids,
        gt_ids=ov.gt_ids,
        pairs=np.stack([ov.pred_ids[ov.pi[keep]], ov.gt_ids[ov.gi[keep]]], axis=1).reshape(-1, 2),
        ious=ov.iou[keep],
        iou_threshold=float(iou_threshold),
    )


def instance_f1(
    pred: np.ndarray, gt: np.ndarray, iou_threshold: float = 0.5
) -> dict[str, float | int]:
    """Instance precision, recall and F1 at an IoU threshold (module docstring).

    Args:
        pred, gt, iou_threshold: as for ``match_instances``.

    Returns:
        ``{"precision", "recall", "f1"}`` floats and ``{"tp", "fp", "fn"}`` ints.

    Raises:
        GeometryError, ConfigError: as ``match_instances``.

    Example:
        >>> gt = np.array([[1, 1, 0, 2, 2]]); pred = np.array([[5, 5, 5, 0, 0]])
        >>> instance_f1(pred, gt)["f1"], instance_f1(pred, gt)["fn"]
        (0.6666666666666666, 1)
    """
    m = match_instances(pred, gt, iou_threshold)
    tp, fp, fn = m.tp, m.n_pred - m.tp, m.n_gt - m.tp
    if m.n_pred == 0 and m.n_gt == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 0, "fp": 0, "fn": 0}
    return {
        "precision": tp / m.n_pred if m.n_pred else 0.0,
        "recall": tp / m.n_gt if m.n_gt else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def panoptic_quality(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Panoptic quality of one class: ``PQ = SQ * RQ`` (module docstring).

    Args:
        pred, gt: instance label maps as for ``match_instances``.

    Returns:
        ``{"PQ", "SQ", "RQ"}``; all 1.0 when both maps are empty.

    Raises:
        GeometryError, ConfigError: as ``match_instances``.

    Example:
        >>> gt = np.array([[1, 1, 0, 2, 2]]); pred = np.array([[5, 5, 5, 0, 0]])
        >>> {k: round(v, 4) for k, v in panoptic_quality(pred, gt).items()}
        {'PQ': 0.4444, 'SQ': 0.6667, 'RQ': 0.6667}
    """
    ov = _overlaps(pred, gt)
    keep = ov.iou > 0.5  # unique: a voxel set overlaps at most one other set by more than half
    tp = int(keep.sum())
    fp, fn = ov.pred_ids.size - tp, ov.gt_ids.size - tp
    if tp + fp + fn == 0:
        return {"PQ": 1.0, "SQ": 1.0, "RQ": 1.0}
    sq = float(ov.iou[keep].mean()) if tp else 0.0
    rq = tp / (tp + 0.5 * fp + 0.5 * fn)
    return {"PQ": sq * rq, "SQ": sq, "RQ": rq}


def aggregated_jaccard_index(pred: np.ndarray, gt: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017; module docstring).

    Args:
        pred, gt: instance label maps as for ``match_instances``.

    Returns:
        AJI in ``[0, 1]``; 1.0 when both maps are empty.

    Raises:
        GeometryError, ConfigError: as ``match_instances``.

    Example:
        >>> gt = np.array([[1, 1, 0, 2, 2]]); pred = np.array([[5, 5, 5, 0, 0]])
        >>> aggregated_jaccard_index(pred, gt)  # C = 2, U = 3 + 2
        0.4
    """
    ov = _overlaps(pred, gt)
    if ov.pred_ids.size == 0 and ov.gt_ids.size == 0:
        return 1.0
    # best pred per gt: sort pairs by gt, then IoU descending, then pred index; take the first
    order = np.lexsort((ov.pi, -ov.iou, ov.gi))
    _, first = np.unique(ov.gi[order], return_index=True)
    best = order[first]
    inter = int(ov.inter[best].sum())
    union = int(ov.gt_sizes.sum())  # every gt once (alone or in its union)
    union += int((ov.pred_sizes[ov.pi[best]] - ov.inter[best]).sum())  # partners' other voxels
    unused = np.ones(ov.pred_ids.size, dtype=bool)
    unused[ov.pi[best]] = False
    union += int(ov.pred_sizes[unused].sum())
    return inter / union


def counting_error(pred: np.ndarray | int, gt: np.ndarray | int) -> float:
    """Relative counting error ``|n_pred - n_gt| / n_gt``.

    Args:
        pred, gt: instance label maps (the count is the number of distinct non-zero labels)
            or the counts themselves (non-negative ints).

    Returns:
        The error (0 = exact count); 0.0 when both counts are 0, NaN when only ``n_gt`` is.

    Raises:
        ConfigError: labels that are not non-negative integers, or negative counts.

    Example:
        >>> counting_error(np.array([[1, 0, 2, 3]]), 4)
        0.25
    """
    n_pred, n_gt = _count(pred, "pred"), _count(gt, "gt")
    if n_gt == 0:
        return 0.0 if n_pred == 0 else float("nan")
    return abs(n_pred - n_gt) / n_gt


def _count(value: np.ndarray | int, name: str) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{name}: a count must be >= 0, got {value}")
        return int(value)
    labels = _labels(value, name)
    return int(np.count_nonzero(np.unique(labels)))


def _labels(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as an int64 label map, checked."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ConfigError(f"{name}: an instance label map needs integer labels, got floats")
    elif array.dtype.kind not in "biu":
        raise ConfigError(f"{name}: an instance label map needs integer labels, got {array.dtype}")
    if array.size and array.min() < 0:
        raise ConfigError(
            f"{name}: instance labels must be >= 0 (0 = background), found {array.min()}"
        )
    return array.astype(np.int64, copy=False)


def _dense(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instance ids, their sizes, and the map relabelled 0 (background), 1..n."""
    ids, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    dense = inverse.reshape(labels.shape)
    if ids.size and ids[0] == 0:
        return ids[1:], sizes[1:], dense
    return ids, sizes, dense + 1


def _overlaps(pred: np.ndarray, gt: np.ndarray) -> _Overlaps:
    """Sizes of every instance and intersections of every overlapping pair."""
    p, g = _labels(pred, "pred"), _labels(gt, "gt")
    if p.shape != g.shape:
        raise GeometryError(f"prediction shape {p.shape} differs from ground truth {g.shape}")
    pred_ids, pred_sizes, p_dense = _dense(p)
    gt_ids, gt_sizes, g_dense = _dense(g)
    both = (p_dense > 0) & (g_dense > 0)
    codes = p_dense[both].astype(np.int64) * (gt_ids.size + 1) + g_dense[both]
    pairs, inter = np.unique(codes, return_counts=True)
    pi, gi = pairs // (gt_ids.size + 1) - 1, pairs % (gt_ids.size + 1) - 1
    iou = inter / (pred_sizes[pi] + gt_sizes[gi] - inter)
    return _Overlaps(pred_ids, pred_sizes, gt_ids, gt_sizes, pi, gi, inter, iou)


def _greedy(ov: _Overlaps, candidate: np.ndarray) -> np.ndarray:
    """Indices of the pairs kept by one-to-one greedy matching, by decreasing IoU."""
    index = np.flatnonzero(candidate)
    index = index[np.lexsort((ov.pi[index], ov.gi[index], -ov.iou[index]))]
    free_pred = np.ones(ov.pred_ids.size, dtype=bool)
    free_gt = np.ones(ov.gt_ids.size, dtype=bool)
    keep = []
    for k in index.tolist():  # candidate pairs only: at most a few per instance
        if free_pred[ov.pi[k]] and free_gt[ov.gi[k]]:
            free_pred[ov.pi[k]] = free_gt[ov.gi[k]] = False
            keep.append(k)
    return np.array(keep, dtype=np.int64)
