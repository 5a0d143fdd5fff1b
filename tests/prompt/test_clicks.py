"""Simulated clicks: next click by hand, an oracle that improves with clicks, NoC by hand."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.prompt.clicks import (
    dice_score,
    evaluate_clicks,
    iou_score,
    next_click,
    noc,
    simulate_clicks,
)
from medseg.prompt.model import Click, PromptResult, RefineState


class ClickOracle:
    """Segments the union of the image's blobs (the image is a label image) that come within
    ``reach`` voxels of a positive click, less the blobs holding a negative click.

    The first click on a big blob thus also picks up a nearby wrong blob, and misses far ones:
    the mask improves as clicks come, as a real model's would. Uses the model's own
    ``RefineState`` (the embedding is the label image).
    """

    def __init__(self, shape: tuple[int, ...], reach: float = 20.0) -> None:
        self.spatial_dims, self.image_size, self.reach = len(shape), shape, reach
        self.embeds = 0

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        self.embeds += 1
        return image[:, :1]

    def start(self, embedding: torch.Tensor) -> RefineState:
        points = torch.zeros(1, 0, self.spatial_dims)
        return RefineState(embedding, points, torch.zeros(1, 0, dtype=torch.long))

    def refine(self, state: RefineState, click: Click) -> RefineState:
        points = torch.cat([state.points, torch.tensor([[click.position]])], dim=1)
        labels = torch.cat([state.labels, torch.tensor([[int(click.positive)]])], dim=1)
        clicks = [
            Click(tuple(p), bool(q))
            for p, q in zip(points[0].tolist(), labels[0].tolist(), strict=True)
        ]
        objects = state.embedding[0, 0].numpy() > 0
        blobs, _ = ndimage.label(objects)
        mask = np.zeros(objects.shape, bool)
        for c in clicks:
            point = np.zeros_like(mask)
            point[tuple(int(p) for p in c.position)] = True
            near = ndimage.distance_transform_edt(~point) <= self.reach
            touched = np.unique(blobs[near & objects])
            if c.positive:
                mask |= np.isin(blobs, touched[touched > 0])
        for c in clicks:
            if not c.positive and blobs[tuple(int(p) for p in c.position)] > 0:
                mask &= blobs != blobs[tuple(int(p) for p in c.position)]
        logits = torch.tensor(np.where(mask, 10.0, -10.0))[None, None]
        result = PromptResult(logits, logits, torch.ones(1, 1))
        return replace(state, points=points, labels=labels, result=result)

    def predict(self, embedding: torch.Tensor, **prompts: object) -> None:
        raise AssertionError("click simulation must use start/refine, not predict")


def disc(shape: tuple[int, ...], centre: tuple[int, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


SHAPE = (64, 64)
A, B, C = disc(SHAPE, (16, 16), 10), disc(SHAPE, (16, 50), 7), disc(SHAPE, (48, 16), 6)
D = disc(SHAPE, (16, 33), 5)  # not part of the object, 12 voxels from A and from B


def test_next_click_false_positive_region_larger() -> None:
    truth = np.zeros((20, 30), bool)
    truth[2:5, 2:5] = True  # missed: 9 voxels
    truth[10:12, 2:4] = True  # missed: 4 voxels
    pred = np.zeros_like(truth)
    pred[8:13, 15:20] = True  # extra: 25 voxels, centre (10, 17)
    assert next_click(pred, truth) == Click((10, 17), False)


def test_next_click_false_negative_region_larger_at_its_distance_centre() -> None:
    truth = np.zeros((30, 40), bool)
    truth[3:10, 3:10] = True  # 7 x 7 square, centre (6, 6) ...
    truth[5:7, 10:35] = True  # ... with a long thin tail pulling the centroid to the right
    pred = np.zeros_like(truth)
    pred[20:25, 20:25] = True  # extra: 25 voxels
    click = next_click(pred, truth)
    assert click == Click((6, 6), True)
    assert ndimage.center_of_mass(truth)[1] > 12  # the centroid would be off the square


def test_next_click_edge_counts_as_border_and_perfect_gives_none() -> None:
    truth = np.zeros((9, 12), bool)
    truth[:5, :5] = True  # in the corner: its centre is (2, 2), not the corner (0, 0)
    assert next_click(np.zeros_like(truth), truth) == Click((2, 2), True)
    assert next_click(truth, truth) is None
    with pytest.raises(ConfigError, match="must match"):
        next_click(truth[:4], truth)


def test_click_curve_improves_with_clicks_as_by_hand() -> None:
    truth = A | B | C
    image = torch.tensor(truth | D, dtype=torch.float32)[None]
    oracle = ClickOracle(SHAPE)
    curve = simulate_clicks(oracle, image, truth, max_clicks=5)
    assert oracle.embeds == 1
    # A is the largest piece; then B (149) beats C (113) and the wrong D (81); then C; then D
    assert curve.clicks == [
        Click((16, 16), True),
        Click((16, 50), True),
        Click((48, 16), True),
        Click((16, 33), False),
    ]
    a, b, c, d = (int(x.sum()) for x in (A, B, C, D))
    assert (a, b, c, d) == (317, 149, 113, 81)
    union = a + b + c + d
    expected_iou = [a / union, (a + b) / union, (a + b + c) / union, 1.0, 1.0]
    assert curve.iou == pytest.approx(expected_iou)
    assert curve.dice == pytest.approx([2 * v / (1 + v) for v in expected_iou])
    assert curve.dice[4] > curve.dice[0] and np.all(np.diff(curve.dice) >= 0)
    assert noc(curve.iou, 0.85, 5) == 3  # IoU 579 / 660 = 0.877
    assert noc(curve.iou, 0.90, 5) == 4


def test_evaluate_clicks_summary_by_hand() -> None:
    truths = [A | B | C, A]
    images = [torch.tensor(A | B | C | D, dtype=torch.float32)[None]] * 2
    summary = evaluate_clicks(ClickOracle(SHAPE), images, truths, max_clicks=3)
    union = 317 + 149 + 113 + 81
    first_case = [317 / union, 466 / union, 579 / union]
    # case 2: the first click at A's centre also takes D (wrong), then D is removed
    second_case = [317 / (317 + 81), 1.0, 1.0]
    assert summary["mean_iou"] == pytest.approx(np.mean([first_case, second_case], axis=0))
    assert len(summary["mean_dice"]) == 3
    assert summary["noc85"] == pytest.approx((3 + 2) / 2)
    assert summary["noc90"] == pytest.approx((3 + 2) / 2)  # case 1 never reaches 0.90
    assert (summary["nof85"], summary["nof90"], summary["num_cases"]) == (0, 1, 2)


def test_three_d_clicks() -> None:
    shape = (24, 24, 24)
    truth = disc(shape, (8, 8, 8), 5) | disc(shape, (8, 8, 18), 3)
    wrong = disc(shape, (18, 18, 18), 3)
    image = torch.tensor(truth | wrong, dtype=torch.float32)[None]
    curve = simulate_clicks(ClickOracle(shape, reach=4.0), image, truth, max_clicks=4)
    assert curve.clicks[0] == Click((8, 8, 8), True)
    assert curve.clicks[1] == Click((8, 8, 18), True)
    assert curve.iou[1:] == [1.0, 1.0, 1.0] and curve.iou[0] < 1.0


def test_random_first_click_lies_in_the_object_and_is_seeded() -> None:
    image = torch.tensor(A | D, dtype=torch.float32)[None]
    runs = [
        simulate_clicks(ClickOracle(SHAPE), image, A, max_clicks=1, first="random", seed=s)
        for s in (3, 3, 4)
    ]
    positions = [r.clicks[0].position for r in runs]
    assert positions[0] == positions[1] != positions[2]
    assert all(A[p] for p in positions)
    with pytest.raises(ConfigError, match="center"):
        simulate_clicks(ClickOracle(SHAPE), image, A, first="middle")  # type: ignore[arg-type]


def test_noc_and_scores_by_hand() -> None:
    assert noc([0.5, 0.85, 0.95], 0.85, 3) == 2  # reaching the threshold counts
    assert noc([0.5, 0.6, 0.95], 0.90, 2) == 2  # beyond max_clicks: counted as max
    assert noc([0.95], 0.9, 10) == 1
    pred = np.array([1, 1, 0, 0], bool)
    truth = np.array([0, 1, 1, 0], bool)
    assert (iou_score(pred, truth), dice_score(pred, truth)) == (1 / 3, 0.5)
    assert iou_score(np.zeros(4, bool), np.zeros(4, bool)) == dice_score(pred[:0], truth[:0]) == 1.0


def test_empty_truth_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="empty"):
        simulate_clicks(ClickOracle((8, 8)), torch.zeros(1, 8, 8), np.zeros((8, 8), bool))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_runs_on_a_tiny_random_promptable_model(spatial_dims) -> None:
    from medseg.prompt.model import build_promptable

    torch.manual_seed(0)
    shape = (32, 32) if spatial_dims == 2 else (16, 16, 16)
    model = build_promptable(spatial_dims, preset="tiny", image_size=shape).eval()
    truth = np.zeros(shape, bool)
    truth[tuple(slice(4, 12) for _ in shape)] = True
    images = [torch.randn(1, *shape), torch.randn(1, *shape)]
    summary = evaluate_clicks(model, images, [truth, truth], max_clicks=3)
    assert len(summary["mean_iou"]) == len(summary["mean_dice"]) == 3
    assert all(0.0 <= v <= 1.0 for v in summary["mean_iou"] + summary["mean_dice"])
    assert 1.0 <= summary["noc85"] <= 3.0 and summary["num_cases"] == 2
