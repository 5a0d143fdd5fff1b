"""Detection AP against pycocotools; instance metrics (F1, PQ, AJI, count) by hand and by a
slow reference."""

from __future__ import annotations

import contextlib
import doctest
import io
import math

import numpy as np
import pytest

from medseg.errors import ConfigError, GeometryError
from medseg.metrics import detection, instances
from medseg.metrics.detection import (
    aggregated_jaccard_index,
    average_precision,
    coco_map,
    counting_error,
    instance_f1,
    match_instances,
    panoptic_quality,
)


@pytest.mark.parametrize("module", [detection, instances])
def test_docstring_examples_hold(module: object) -> None:
    result = doctest.testmod(module, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- AP against pycocotools


def _random_case(seed: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Images with jittered copies of the gt, random false positives, tied scores, an image
    without gt and one without predictions, one with more than 100 predictions."""
    rng = np.random.default_rng(seed)
    preds, scores, gts = [], [], []
    for image in range(8):
        n_gt = 0 if image == 2 else int(rng.integers(1, 8))
        lo = rng.integers(0, 80, (n_gt, 2))
        gt = np.concatenate([lo, lo + rng.integers(2, 20, (n_gt, 2))], axis=1)
        hits = gt[rng.random(n_gt) < 0.7] + rng.integers(-2, 3, (1, 4))
        hits[:, 2:] = np.maximum(hits[:, 2:], hits[:, :2])
        n_fp = 110 if image == 5 else int(rng.integers(0, 5))
        lo = rng.integers(0, 80, (n_fp, 2))
        fp = np.concatenate([lo, lo + rng.integers(0, 20, (n_fp, 2))], axis=1)
        pred = np.concatenate([hits, fp]) if image != 3 else np.zeros((0, 4), np.int64)
        gts.append(gt)
        preds.append(pred)
        scores.append(np.round(rng.random(len(pred)), 1))  # ties on purpose
    return preds, scores, gts


def _coco_stats(preds: list[np.ndarray], scores: list[np.ndarray], gts: list[np.ndarray]):
    """COCOeval's (mAP, AP50, AP75) with our inclusive (y0, x0, y1, x1) boxes as COCO xywh."""
    coco_module = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")

    def xywh(box: np.ndarray) -> list[float]:
        y0, x0, y1, x1 = (float(v) for v in box)
        return [x0, y0, x1 - x0 + 1, y1 - y0 + 1]  # inclusive hi: width is hi - lo + 1

    annotations = [
        {"id": k + 1, "image_id": i, "category_id": 1, "bbox": b, "area": b[2] * b[3]}
        | {"iscrowd": 0}
        for k, (i, b) in enumerate((i, xywh(box)) for i, gt in enumerate(gts) for box in gt)
    ]
    ground_truth = coco_module.COCO()
    ground_truth.dataset = {
        "images": [{"id": i} for i in range(len(gts))],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "cell"}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        results = [
            {"image_id": i, "category_id": 1, "bbox": xywh(box), "score": float(s)}
            for i, (pred, score) in enumerate(zip(preds, scores, strict=True))
            for box, s in zip(pred, score, strict=True)
        ]
        evaluation = cocoeval.COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats[0], evaluation.stats[1], evaluation.stats[2]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ap_equals_pycocotools_on_random_boxes(seed: int) -> None:
    preds, scores, gts = _random_case(seed)
    expected_map, expected_50, expected_75 = _coco_stats(preds, scores, gts)
    ours = coco_map(preds, scores, gts)
    assert ours["mAP"] == pytest.approx(expected_map, abs=1e-12)
    assert ours["AP50"] == pytest.approx(expected_50, abs=1e-12)
    assert ours["AP75"] == pytest.approx(expected_75, abs=1e-12)
    assert average_precision(preds, scores, gts, iou_threshold=0.5) == ours["AP50"]
    assert 0.0 < ours["mAP"] < ours["AP50"] <= 1.0


def test_ap_of_perfect_predictions_is_one_and_3d_works() -> None:
    gts = [np.array([[0, 0, 0, 4, 4, 4], [10, 10, 10, 12, 13, 14]])]
    assert coco_map(gts, [np.array([0.9, 0.3])], gts)["mAP"] == pytest.approx(1.0)
    shifted = [gts[0] + np.array([0, 0, 1, 0, 0, 1])]  # shifted by 1 voxel: IoU 100/150, 48/72
    ap = coco_map(shifted, [np.array([0.9, 0.3])], gts)
    assert ap["AP50"] == pytest.approx(1.0) and ap["AP75"] == 0.0


def test_ap_without_predictions_is_zero_and_without_ground_truth_nan() -> None:
    gts = [np.array([[0, 0, 5, 5]]), np.zeros((0, 4))]
    empty = [np.zeros((0, 4)), np.zeros((0, 4))]
    no_scores = [np.zeros(0), np.zeros(0)]
    assert average_precision(empty, no_scores, gts, iou_threshold=0.5) == 0.0
    assert coco_map(empty, no_scores, gts) == {"AP50": 0.0, "AP75": 0.0, "mAP": 0.0}
    preds = [np.array([[0, 0, 5, 5]]), np.zeros((0, 4))]
    nan = average_precision(preds, [np.array([1.0]), np.zeros(0)], empty, iou_threshold=0.5)
    assert math.isnan(nan)


def test_ap_false_positives_in_images_without_ground_truth_lower_precision() -> None:
    gts = [np.array([[0, 0, 5, 5]]), np.zeros((0, 4))]
    preds = [np.array([[0, 0, 5, 5]]), np.array([[0, 0, 5, 5]])]
    # the false positive scores higher: precision 1/2 at the only recall level reached
    ap = average_precision(preds, [np.array([0.5]), np.array([0.9])], gts, iou_threshold=0.5)
    assert ap == pytest.approx(0.5)


def test_ap_keeps_only_max_dets_per_image() -> None:
    gt = [np.array([[0, 0, 5, 5]])]
    preds = [np.array([[50, 50, 55, 55], [0, 0, 5, 5]])]
    scores = [np.array([0.9, 0.1])]
    assert average_precision(preds, scores, gt, iou_threshold=0.5, max_dets=1) == 0.0
    assert average_precision(preds, scores, gt, iou_threshold=0.5, max_dets=2) == pytest.approx(0.5)


def test_ap_bad_input_is_refused() -> None:
    gt = [np.array([[0, 0, 5, 5]])]
    with pytest.raises(ConfigError, match="x1 < x0"):
        average_precision([np.array([[5, 0, 0, 5]])], [np.array([1.0])], gt, iou_threshold=0.5)
    with pytest.raises(ConfigError, match="one of each per image"):
        average_precision([], [], gt, iou_threshold=0.5)
    with pytest.raises(ConfigError, match="2 scores for 1"):
        average_precision(gt, [np.array([1.0, 2.0])], gt, iou_threshold=0.5)
    with pytest.raises(ConfigError, match="iou_threshold"):
        average_precision(gt, [np.array([1.0])], gt, iou_threshold=0.0)


# ---------------------------------------------------------------- instance metrics by hand


def _hand_case() -> tuple[np.ndarray, np.ndarray]:
    """4x8 maps. gt: g1 cols 0-1, g2 cols 2-3, g3 cols 6-7 (8 px each). pred: p1 = cols 0-1 +
    col 2 rows 0-1 (10 px, IoU 0.8 with g1, 2/16 with g2); p2 = col 2 rows 2-3 + col 3 (6 px,
    IoU 0.75 with g2); p3 = col 5 (4 px, no overlap)."""
    gt = np.zeros((4, 8), dtype=np.int32)
    gt[:, 0:2], gt[:, 2:4], gt[:, 6:8] = 1, 2, 3
    pred = np.zeros((4, 8), dtype=np.int32)
    pred[:, 0:2], pred[0:2, 2] = 11, 11
    pred[2:4, 2], pred[:, 3] = 12, 12
    pred[:, 5] = 13
    return pred, gt


def test_instance_metrics_by_hand() -> None:
    pred, gt = _hand_case()
    m = match_instances(pred, gt)
    assert m.pairs.tolist() == [[11, 1], [12, 2]] and m.ious.tolist() == [0.8, 0.75]
    f1 = instance_f1(pred, gt)
    assert (f1["tp"], f1["fp"], f1["fn"]) == (2, 1, 1)
    assert f1["precision"] == f1["recall"] == f1["f1"] == pytest.approx(2 / 3)
    pq = panoptic_quality(pred, gt)
    assert pq["SQ"] == pytest.approx(0.775) and pq["RQ"] == pytest.approx(2 / 3)
    assert pq["PQ"] == pytest.approx(0.775 * 2 / 3)
    # AJI: C = 8 + 6, U = 10 + 8 + 8 (g3 alone) + 4 (p3 unused)
    assert aggregated_jaccard_index(pred, gt) == pytest.approx(14 / 30)
    assert counting_error(pred, gt) == 0.0
    assert instance_f1(pred, gt, iou_threshold=0.78)["tp"] == 1


def test_one_prediction_over_two_instances_at_iou_exactly_half() -> None:
    gt = np.zeros((4, 4), dtype=np.int32)
    gt[:, :2], gt[:, 2:] = 1, 2
    pred = np.full((4, 4), 7)
    assert panoptic_quality(pred, gt) == {"PQ": 0.0, "SQ": 0.0, "RQ": 0.0}  # needs IoU > 0.5
    f1 = instance_f1(pred, gt)  # IoU >= 0.5 matches one of them, one-to-one
    assert (f1["tp"], f1["fp"], f1["fn"]) == (1, 0, 1)
    assert aggregated_jaccard_index(pred, gt) == pytest.approx(16 / 32)  # pred counted twice
    assert counting_error(pred, gt) == 0.5


def test_empty_prediction_and_empty_maps() -> None:
    _, gt = _hand_case()
    empty = np.zeros_like(gt)
    f1 = instance_f1(empty, gt)
    assert (f1["precision"], f1["recall"], f1["f1"], f1["fn"]) == (0.0, 0.0, 0.0, 3)
    assert panoptic_quality(empty, gt)["PQ"] == 0.0
    assert aggregated_jaccard_index(empty, gt) == 0.0
    assert counting_error(empty, gt) == 1.0
    assert instance_f1(empty, empty)["f1"] == 1.0
    assert panoptic_quality(empty, empty)["PQ"] == 1.0
    assert aggregated_jaccard_index(empty, empty) == 1.0
    assert counting_error(empty, empty) == 0.0
    assert math.isnan(counting_error(gt, empty))
    assert instance_f1(gt, empty)["precision"] == 0.0


def _reference(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, int]:
    """Slow reference: PQ and AJI from boolean masks of every pair, tp at IoU > 0.5."""
    p_ids = [i for i in np.unique(pred) if i]
    g_ids = [i for i in np.unique(gt) if i]
    iou = np.zeros((len(g_ids), len(p_ids)))
    inter = np.zeros_like(iou)
    union = np.zeros_like(iou)
    for a, g in enumerate(g_ids):
        for b, p in enumerate(p_ids):
            inter[a, b] = np.sum((gt == g) & (pred == p))
            union[a, b] = np.sum((gt == g) | (pred == p))
            iou[a, b] = inter[a, b] / union[a, b]
    matched = iou > 0.5
    tp = int(matched.sum())
    rq = tp / (tp + 0.5 * (len(p_ids) - tp) + 0.5 * (len(g_ids) - tp))
    pq = (iou[matched].mean() if tp else 0.0) * rq
    c, u, used = 0.0, 0.0, set()
    for a, g in enumerate(g_ids):
        if iou[a].max(initial=0.0) > 0:
            b = int(np.argmax(iou[a]))
            c, u = c + inter[a, b], u + union[a, b]
            used.add(b)
        else:
            u += np.sum(gt == g)
    u += sum(np.sum(pred == p) for b, p in enumerate(p_ids) if b not in used)
    return pq, c / u, tp


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_instance_metrics_equal_slow_reference_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # blocky random label maps: many partial overlaps, ids not consecutive
    gt = np.kron(rng.integers(0, 12, (6, 6)), np.ones((4, 4), dtype=np.int64)) * 3
    pred = np.roll(gt, (1, 2), axis=(0, 1)) + 100 * (rng.random(gt.shape) < 0.05)
    pq, aji, tp = _reference(pred, gt)
    assert panoptic_quality(pred, gt)["PQ"] == pytest.approx(pq, abs=1e-12)
    assert aggregated_jaccard_index(pred, gt) == pytest.approx(aji, abs=1e-12)
    assert instance_f1(pred, gt, iou_threshold=0.500001)["tp"] == tp


def test_instance_metrics_bad_input_is_refused() -> None:
    gt = np.zeros((4, 4), dtype=np.int32)
    with pytest.raises(GeometryError, match="differs"):
        panoptic_quality(np.zeros((4, 5), dtype=np.int32), gt)
    with pytest.raises(ConfigError, match="integer labels"):
        instance_f1(np.full((4, 4), 0.5), gt)
    with pytest.raises(ConfigError, match=">= 0"):
        aggregated_jaccard_index(gt - 1, gt)
    with pytest.raises(ConfigError, match="iou_threshold"):
        match_instances(gt, gt, iou_threshold=1.5)


def test_metrics_are_fast_on_hundreds_of_instances() -> None:
    # 512x512 with ~1000 instances must not need an O(N*M) loop over voxels (correctness only:
    # matching a map with itself is perfect)
    labels = np.kron(np.arange(1024).reshape(32, 32), np.ones((16, 16), dtype=np.int64))
    assert panoptic_quality(labels, labels)["PQ"] == 1.0
    assert aggregated_jaccard_index(labels, labels) == 1.0
    shifted = instance_f1(labels + 5, labels)  # ids shifted; background block becomes id 5
    assert (shifted["tp"], shifted["fp"], shifted["fn"]) == (1023, 1, 0)
