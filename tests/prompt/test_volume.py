"""3D segmentation from a box by slice-wise box propagation, with an oracle predictor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.prompt.volume import segment_volume_from_box


@dataclass
class Result:
    logits: torch.Tensor
    iou: torch.Tensor


class BoxOracle:
    """Answers a box with the blobs of the image (a label image) that reach into the box.

    Works in any dimension: 2D for slice by slice, 3D as a native 3D model. Records the boxes.
    """

    def __init__(self, image_size: tuple[int, ...]) -> None:
        self.spatial_dims, self.image_size = len(image_size), image_size
        self.boxes: list[list[int]] = []

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        return image[:, :1]

    def predict(self, embedding, *, box, multimask=True, **_):
        labels = embedding[0, 0].numpy() > 0
        lo_hi = [int(v) for v in box[0].tolist()]
        self.boxes.append(lo_hi)
        dims = self.spatial_dims
        inside = tuple(slice(lo_hi[a], lo_hi[dims + a] + 1) for a in range(dims))
        blobs, _ = ndimage.label(labels)
        touched = np.unique(blobs[inside])
        mask = np.isin(blobs, touched[touched > 0])
        logits = torch.tensor(np.where(mask, 10.0, -10.0), dtype=torch.float32)[None, None]
        return Result(logits, torch.tensor([[0.9]]))


def ball(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_ball_recovered_and_propagation_stops_at_its_ends() -> None:
    shape = (32, 32, 32)
    truth = ball(shape, (16, 15, 17), 8)  # slices 8..24 along axis 0
    oracle = BoxOracle((32, 32))
    volume = torch.tensor(truth, dtype=torch.float32)[None]
    mask = segment_volume_from_box(oracle, volume, (4, 5, 7, 28, 25, 27), margin=1)
    assert dice(mask, truth) > 0.9
    assert np.array_equal(mask, truth)
    # 17 slices of the ball, plus one empty slice at each end where propagation stops
    assert len(oracle.boxes) == 17 + 2
    assert oracle.boxes[0] == [5, 7, 25, 27]  # key slice 16: the box's in-plane extent
    rows, cols = np.nonzero(truth[16])
    grown = [rows.min() - 1, cols.min() - 1, rows.max() + 1, cols.max() + 1]
    assert oracle.boxes[1] == grown == [6, 8, 24, 26]  # slice 17: key mask's box + margin


def test_nothing_is_picked_up_beyond_a_gap_or_outside_the_box() -> None:
    shape = (40, 24, 24)
    lower, upper = ball(shape, (10, 12, 12), 6), ball(shape, (28, 12, 12), 6)
    side = np.zeros(shape, bool)  # a rod outside the box, within 3 voxels of `lower`'s box
    side[4:17, 11:14, 21:23] = True
    volume = torch.tensor(lower | upper | side, dtype=torch.float32)[None]
    oracle = BoxOracle((24, 24))
    mask = segment_volume_from_box(oracle, volume, (2, 4, 4, 38, 19, 19), key_slice=10)
    # `upper` lies past the empty slices 17..21; the rod only in the unclipped grown box
    assert np.array_equal(mask, lower)


def test_box_end_inside_the_object_cuts_it() -> None:
    shape = (24, 24, 24)
    truth = ball(shape, (12, 12, 12), 7)
    volume = torch.tensor(truth, dtype=torch.float32)[None]
    mask = segment_volume_from_box(BoxOracle((24, 24)), volume, (9, 5, 5, 14, 19, 19))
    expected = truth.copy()
    expected[:9] = expected[15:] = False
    assert np.array_equal(mask, expected)


def test_slicing_along_the_last_axis() -> None:
    shape = (32, 32, 20)
    truth = ball(shape, (16, 16, 10), 6)
    volume = torch.tensor(truth, dtype=torch.float32)[None]
    mask = segment_volume_from_box(BoxOracle((32, 32)), volume, (8, 8, 2, 24, 24, 18), axis=2)
    assert np.array_equal(mask, truth)


def test_native_3d_model_is_one_prompt_with_the_3d_box() -> None:
    shape = (16, 16, 16)
    truth = ball(shape, (8, 8, 8), 5)
    oracle = BoxOracle(shape)
    volume = torch.tensor(truth, dtype=torch.float32)[None]
    mask = segment_volume_from_box(oracle, volume, (3, 3, 3, 13, 13, 10))
    assert oracle.boxes == [[3, 3, 3, 13, 13, 10]]
    expected = truth.copy()
    expected[:, :, 11:] = False  # nothing outside the box
    assert np.array_equal(mask, expected)


@pytest.mark.parametrize(
    ("box", "options", "message"),
    [
        ((5, 5, 5, 4, 9, 9), {}, "inverted"),
        ((0, 0, 0, 9, 9, 16), {}, "outside"),
        ((0, 0, 0, 9, 9), {}, "5 values; give 6"),
        ((2, 2, 2, 6, 9, 9), {"key_slice": 7}, "key_slice"),
        ((2, 2, 2, 6, 9, 9), {"axis": 3}, "axis"),
        ((2, 2, 2, 6, 9, 9), {"axis": 1}, "resize"),
    ],
)
def test_bad_arguments_are_config_errors(box, options, message) -> None:
    volume = torch.zeros(1, 10, 12, 12)
    with pytest.raises(ConfigError, match=message):
        segment_volume_from_box(BoxOracle((12, 12)), volume, box, **options)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_runs_on_a_tiny_random_promptable_model(spatial_dims) -> None:
    from medseg.prompt.model import build_promptable

    torch.manual_seed(0)
    size = (32, 32) if spatial_dims == 2 else (16, 16, 16)
    model = build_promptable(spatial_dims, preset="tiny", image_size=size).eval()
    volume = torch.randn(1, 6, 32, 32) if spatial_dims == 2 else torch.randn(1, 16, 16, 16)
    box = (1, 4, 4, 4, 27, 27) if spatial_dims == 2 else (2, 2, 2, 12, 12, 12)
    mask = segment_volume_from_box(model, volume, box)
    assert mask.shape == tuple(volume.shape[1:]) and mask.dtype == bool
    inside = np.zeros_like(mask)
    inside[box[0] : box[3] + 1, box[1] : box[4] + 1, box[2] : box[5] + 1] = True
    assert not (mask & ~inside).any()
