"""Boxes: inclusive-corner convention, IoU by hand in 2D/3D, NMS against a brute-force reference."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError
from medseg.metrics import boxes as boxes_module
from medseg.metrics.boxes import (
    batched_nms,
    box_area,
    box_iou,
    boxes_from_labels,
    boxes_from_mask,
    check_boxes,
    nms,
)


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(boxes_module, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0


def test_one_voxel_box_has_volume_one_and_iou_one_with_itself() -> None:
    box = np.array([[3, 5, 3, 5]])
    assert box_area(box).tolist() == [1]
    assert box_iou(box, box).item() == 1.0


def test_iou_2d_by_hand() -> None:
    # a: rows 0..3, cols 0..3 (16 px); b: rows 2..5, cols 1..6 (24 px); overlap rows 2..3 x
    # cols 1..3 = 6 px; union 16 + 24 - 6 = 34
    a = np.array([[0, 0, 3, 3]])
    b = np.array([[2, 1, 5, 6]])
    assert box_iou(a, b).item() == pytest.approx(6 / 34, abs=1e-12)
    # touching edges (a's hi 3, c's lo 4) do not overlap; sharing one row does
    assert box_iou(a, np.array([[4, 0, 6, 3]])).item() == 0.0
    assert box_iou(a, np.array([[3, 0, 6, 3]])).item() == pytest.approx(4 / (16 + 16 - 4))


def test_iou_3d_by_hand() -> None:
    # a: 2x3x4 = 24 voxels; b shifted by (1, 1, 2): overlap 1x2x2 = 4; union 24 + 24 - 4
    a = np.array([[0, 0, 0, 1, 2, 3]])
    b = np.array([[1, 1, 2, 2, 3, 5]])
    assert box_area(a).tolist() == [24]
    assert box_iou(a, b).item() == pytest.approx(4 / 44, abs=1e-12)


def test_iou_matrix_shape_symmetry_and_float_boxes() -> None:
    rng = np.random.default_rng(0)
    lo = rng.uniform(0, 20, (7, 3))
    a = np.concatenate([lo, lo + rng.uniform(0, 10, (7, 3))], axis=1)
    lo = rng.uniform(0, 20, (5, 3))
    b = np.concatenate([lo, lo + rng.uniform(0, 10, (5, 3))], axis=1)
    iou = box_iou(torch.tensor(a), torch.tensor(b))
    assert iou.shape == (7, 5) and iou.dtype == torch.float64
    assert torch.allclose(iou, box_iou(b, a).T)
    assert ((iou >= 0) & (iou <= 1)).all()
    # a continuous box [lo, hi + 1): float IoU of a half-shifted unit box is 1/3
    half = box_iou(np.array([[0.0, 0.0]]), np.array([[0.5, 0.5]])).item()
    assert half == pytest.approx(0.5 / 1.5)


def test_boxes_with_hi_below_lo_are_refused() -> None:
    with pytest.raises(ConfigError, match="box 1 has x1 < x0 on axis 1"):
        check_boxes(np.array([[0, 0, 1, 1], [0, 5, 3, 4]]), 2)
    with pytest.raises(ConfigError, match="x1 < x0"):
        box_iou(np.array([[0, 0, 1, 1]]), np.array([[2, 2, 1, 3]]))
    with pytest.raises(ConfigError, match="x1 < x0"):
        nms(np.array([[4, 0, 3, 1]]), np.array([1.0]), 0.5)


def test_boxes_of_wrong_width_or_nan_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"expected shape \(N, 6\)"):
        check_boxes(np.zeros((2, 4)), 3)
    with pytest.raises(ConfigError, match="non-finite"):
        check_boxes(np.array([[0, 0, np.nan, 1]]), 2)
    with pytest.raises(ConfigError, match="2 scores for 1 boxes"):
        nms(np.array([[0, 0, 1, 1]]), np.array([1.0, 2.0]), 0.5)


def _brute_force_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Textbook NMS with plain Python IoU (inclusive corners)."""

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        d = len(a) // 2
        inter, va, vb = 1.0, 1.0, 1.0
        for k in range(d):
            inter *= max(0.0, min(a[d + k], b[d + k]) - max(a[k], b[k]) + 1)
            va *= a[d + k] - a[k] + 1
            vb *= b[d + k] - b[k] + 1
        return inter / (va + vb - inter)

    remaining = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    while remaining:
        best = remaining.pop(0)
        keep.append(best)
        remaining = [i for i in remaining if iou(boxes[best], boxes[i]) <= threshold]
    return keep


def _random_boxes(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    lo = rng.integers(0, 30, (n, dims))
    return np.concatenate([lo, lo + rng.integers(0, 12, (n, dims))], axis=1)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7])
def test_nms_equals_brute_force_reference(dims: int, threshold: float) -> None:
    rng = np.random.default_rng(dims * 10 + int(threshold * 10))
    for _ in range(5):
        boxes = _random_boxes(rng, 60, dims)
        scores = rng.integers(0, 20, 60) / 20.0  # ties on purpose
        kept = nms(boxes, scores, threshold).tolist()
        assert kept == _brute_force_nms(boxes, scores, threshold)


def test_batched_nms_equals_per_class_reference() -> None:
    rng = np.random.default_rng(1)
    boxes = _random_boxes(rng, 80, 2)
    scores = rng.uniform(size=80)
    classes = rng.integers(0, 3, 80)
    expected: list[int] = []
    for c in range(3):
        index = np.flatnonzero(classes == c)
        expected += index[_brute_force_nms(boxes[index], scores[index], 0.4)].tolist()
    expected.sort(key=lambda i: -scores[i])
    assert batched_nms(boxes, scores, classes, 0.4).tolist() == expected
    # identical boxes of two classes both survive; of one class only the better one
    same = np.array([[0, 0, 5, 5], [0, 0, 5, 5]])
    assert batched_nms(same, np.array([0.2, 0.9]), np.array([0, 1]), 0.5).tolist() == [1, 0]
    assert batched_nms(same, np.array([0.2, 0.9]), np.array([1, 1]), 0.5).tolist() == [1]


def test_nms_of_no_boxes_is_empty() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).numel() == 0
    assert batched_nms(np.zeros((0, 6)), np.zeros(0), np.zeros(0), 0.5).numel() == 0


def test_boxes_from_labels_2d_and_3d() -> None:
    labels = np.zeros((6, 7), dtype=np.int32)
    labels[1:3, 2:6] = 4
    labels[5, 0] = 9
    boxes, ids = boxes_from_labels(labels, 2)
    assert ids.tolist() == [4, 9]
    assert boxes.tolist() == [[1, 2, 2, 5], [5, 0, 5, 0]]
    assert box_area(boxes).tolist() == [8, 1]
    volume = np.zeros((4, 5, 6), dtype=np.uint8)
    volume[1:4, 0:2, 3:6] = 2
    boxes, ids = boxes_from_labels(volume, 3)
    assert boxes.tolist() == [[1, 0, 3, 3, 1, 5]] and ids.tolist() == [2]
    with pytest.raises(ConfigError, match="3 axes"):
        boxes_from_labels(labels, 3)
    with pytest.raises(ConfigError, match=">= 0"):
        boxes_from_labels(-labels, 2)


def test_boxes_from_mask_splits_components() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[0:2, 0:3] = True
    mask[5:8, 4:6] = True
    mask[2, 3] = True  # touches the first component diagonally: joined with 8-, not 4-connectivity
    assert boxes_from_mask(mask).tolist() == [[0, 0, 2, 3], [5, 4, 7, 5]]
    assert len(boxes_from_mask(mask, connectivity=4)) == 3
    assert boxes_from_mask(np.zeros((3, 3, 3))).shape == (0, 6)


def test_nms_row_by_row_path_equals_full_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    boxes = _random_boxes(rng, 50, 2)
    scores = rng.uniform(size=50)
    full = nms(boxes, scores, 0.3).tolist()
    monkeypatch.setattr(boxes_module, "_FULL_MATRIX", 10)  # 50 boxes: IoU rows on demand
    assert nms(boxes, scores, 0.3).tolist() == full == _brute_force_nms(boxes, scores, 0.3)
