"""Segment everything with an oracle predictor, box NMS and stability score by hand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.prompt.everything import (
    InstanceMask,
    box_iou,
    box_nms,
    instance_label_map,
    mask_boxes,
    point_grid,
    segment_everything,
    stability_score,
)


@dataclass
class Result:
    logits: torch.Tensor
    iou: torch.Tensor


class PointOracle:
    """Answers a point with the connected component of the label image (= the image) there.

    Proposals: the component (predicted IoU 0.95), its dilation by one voxel (0.9) and its
    erosion (0.85); the background component gets 0.5. Logits are +10 inside and -10 outside.
    """

    def __init__(self, spatial_dims: int, image_size: tuple[int, ...]) -> None:
        self.spatial_dims, self.image_size = spatial_dims, image_size
        self.calls = 0

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        return image[:, :1]

    def predict(self, embedding, *, points, point_labels, multimask=True, **_):
        self.calls += 1
        labels = embedding[0, 0].numpy().astype(int)
        components, _ = ndimage.label(labels > 0)
        background, _ = ndimage.label(labels == 0)
        logits, ious = [], []
        for point in points[:, 0].round().long().tolist():
            index = tuple(point)
            if labels[index] > 0:
                obj = components == components[index]
                score = 0.95
            else:
                obj, score = background == background[index], 0.5
            proposals = [obj, ndimage.binary_dilation(obj), ndimage.binary_erosion(obj)]
            logits.append(np.stack([np.where(p, 10.0, -10.0) for p in proposals]))
            ious.append([score, score - 0.05, score - 0.1])
        return Result(torch.tensor(np.stack(logits)), torch.tensor(ious))


def ball(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def test_four_discs_found_once_each() -> None:
    shape = (128, 128)
    centres = [(30, 30), (30, 95), (95, 30), (92, 92)]
    radii = [14, 10, 18, 12]
    discs = [ball(shape, c, r) for c, r in zip(centres, radii, strict=True)]
    image = torch.tensor(sum(discs), dtype=torch.float32)[None]
    oracle = PointOracle(2, shape)
    masks = segment_everything(oracle, image, points_per_side=16, points_per_batch=50)
    assert oracle.calls == 6  # 256 points in batches of 50
    assert len(masks) == 4
    for disc in discs:
        best = max(
            np.logical_and(m.mask, disc).sum() / np.logical_or(m.mask, disc).sum() for m in masks
        )
        assert best > 0.8
    assert all(m.score == pytest.approx(0.95) and m.stability == 1.0 for m in masks)
    for m in masks:  # the point lies in its mask, the box bounds it tightly
        assert m.mask[tuple(int(round(p)) for p in m.point)]
        rows, cols = np.nonzero(m.mask)
        assert m.box == (rows.min(), cols.min(), rows.max(), cols.max())
    labels = instance_label_map(masks, shape)
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2, 3, 4]
    assert np.array_equal(labels > 0, sum(discs) > 0)


def test_filters_drop_low_iou_and_small_masks() -> None:
    shape = (32, 32)
    image = torch.tensor(ball(shape, (16, 16), 6) | ball(shape, (5, 5), 1.5), dtype=torch.float32)
    oracle = PointOracle(2, shape)
    assert segment_everything(oracle, image[None], points_per_side=8, pred_iou_thresh=0.96) == []
    big = segment_everything(oracle, image[None], points_per_side=8, min_area=40)
    assert len(big) == 1 and big[0].area == ball(shape, (16, 16), 6).sum()
    small = ball(shape, (5, 5), 1.5)
    every = segment_everything(oracle, image[None], points_per_side=8)
    # the small disc's dilation (21 voxels) has a box too unlike the disc's (box IoU 9/25)
    # to be suppressed, as in SAM; it comes last, by its lower score
    areas = [m.area for m in every]
    assert sorted(areas[:2]) == [small.sum(), 113]
    assert areas[2] == ndimage.binary_dilation(small).sum() == 21
    assert [m.score for m in every] == pytest.approx([0.95, 0.95, 0.9])


def test_three_d_grid_and_blobs() -> None:
    shape = (16, 16, 16)
    blobs = [ball(shape, (4, 4, 4), 3), ball(shape, (11, 11, 11), 4)]
    image = torch.tensor(blobs[0] | blobs[1], dtype=torch.float32)[None]
    masks = segment_everything(
        PointOracle(3, shape), image, points_per_side=(4, 8, 8), pred_iou_thresh=0.92
    )
    assert len(masks) == 2
    assert {m.area for m in masks} == {int(b.sum()) for b in blobs}
    assert all(len(m.box) == 6 and len(m.point) == 3 for m in masks)


def test_point_grid_cell_centres() -> None:
    grid = point_grid((6, 10, 4), (3, 5, 1))
    assert grid.shape == (15, 3)
    assert sorted(set(grid[:, 0])) == [0.5, 2.5, 4.5]
    assert sorted(set(grid[:, 1])) == [0.5, 2.5, 4.5, 6.5, 8.5]
    assert set(grid[:, 2]) == {1.5}
    with pytest.raises(ConfigError, match="points_per_side"):
        point_grid((6, 10), (3, 5, 1))


def test_stability_score_by_hand() -> None:
    logits = torch.tensor([[[2.0, 0.5], [-0.5, -2.0]], [[5.0, 5.0], [5.0, -5.0]]])
    # band [-1, 1]: first mask 1 voxel above +1, 3 above -1; second 3 and 3
    assert stability_score(logits, 1.0).tolist() == pytest.approx([1 / 3, 1.0])
    # band [-3, 3]: first mask 0 above +3, 4 above -3; second 3 and 3
    assert stability_score(logits, 3.0).tolist() == pytest.approx([0.0, 1.0])
    # a mask threshold of 1 with band [0.25, 1.75]: first mask 1 and 2
    assert stability_score(logits, 0.75, threshold=1.0).tolist() == pytest.approx([0.5, 1.0])


def test_box_nms_keeps_the_right_boxes() -> None:
    boxes = torch.tensor(
        [
            [0, 0, 9, 9],  # A, 100 voxels
            [0, 0, 9, 8],  # B: IoU with A 0.9 -> suppressed by A
            [0, 5, 9, 14],  # C: IoU with A 50/150 = 1/3 -> kept
            [20, 20, 24, 24],  # D: alone
            [20, 20, 24, 25],  # E: IoU with D 25/30, higher score -> suppresses D
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.85, 0.5, 0.6])
    assert box_iou(boxes[:1], boxes[1:3]).tolist() == [pytest.approx([0.9, 1 / 3])]
    assert box_nms(boxes, scores, 0.7).tolist() == [0, 2, 4]
    assert box_nms(boxes, scores, 0.95).tolist() == [0, 2, 1, 4, 3]
    assert box_nms(boxes, scores, 0.2).tolist() == [0, 4]
    assert box_nms(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0), 0.5).tolist() == []


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_box_nms_agrees_with_monai(spatial_dims) -> None:
    from monai.data.box_utils import box_iou as monai_box_iou
    from monai.data.box_utils import non_max_suppression

    rng = np.random.default_rng(spatial_dims)
    lows = rng.integers(0, 20, (60, spatial_dims))
    boxes = torch.tensor(np.concatenate([lows, lows + rng.integers(0, 12, lows.shape)], 1))
    scores = torch.tensor(rng.permutation(60) / 60.0)
    # MONAI's boxes exclude their upper corner: our inclusive (lo, hi) is its (lo, hi + 1)
    continuous = boxes.clone().double()
    continuous[:, spatial_dims:] += 1
    ours = box_iou(boxes, boxes)
    assert torch.allclose(ours, monai_box_iou(continuous, continuous).double())
    # thresholds no ratio of these small volumes hits (MONAI computes IoU in float32)
    for threshold in (0.1234, 0.3456, 0.6789):
        expected = non_max_suppression(continuous, scores, threshold)
        assert box_nms(boxes, scores, threshold).tolist() == expected.tolist()


def test_mask_boxes_3d_and_empty() -> None:
    masks = torch.zeros(2, 4, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2, 0:5] = True
    assert mask_boxes(masks).tolist() == [[1, 2, 0, 2, 2, 4], [0, 0, 0, 0, 0, 0]]


def test_label_map_highest_score_wins() -> None:
    low = InstanceMask(np.array([[1, 1], [0, 0]], bool), 0.8, 1.0, (0, 0, 0, 1), (0.0, 0.0))
    high = InstanceMask(np.array([[0, 1], [0, 1]], bool), 0.9, 1.0, (0, 1, 1, 1), (1.0, 1.0))
    assert instance_label_map([low, high], (2, 2)).tolist() == [[1, 2], [0, 2]]
    assert instance_label_map([high, low], (2, 2)).tolist() == [[2, 1], [0, 1]]


def test_wrong_image_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="resize"):
        segment_everything(PointOracle(2, (32, 32)), torch.zeros(1, 16, 16))


@pytest.mark.parametrize(("spatial_dims", "size", "per_side"), [(2, 32, 4), (3, 16, 2)])
def test_runs_on_a_tiny_random_promptable_model(spatial_dims, size, per_side) -> None:
    from medseg.prompt.model import build_promptable

    torch.manual_seed(0)
    shape = (size,) * spatial_dims
    model = build_promptable(spatial_dims, preset="tiny", image_size=shape).eval()
    masks = segment_everything(
        model,
        torch.randn(1, *shape),
        points_per_side=per_side,
        pred_iou_thresh=-np.inf,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,
    )
    # every grid point gives 3 proposals; only empty ones are dropped
    assert 0 < len(masks) <= 3 * per_side**spatial_dims
    assert all(m.mask.shape == shape and len(m.box) == 2 * spatial_dims for m in masks)
    assert [m.score for m in masks] == sorted((m.score for m in masks), reverse=True)
    assert instance_label_map(masks, shape).shape == shape
