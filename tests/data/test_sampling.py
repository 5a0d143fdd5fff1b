"""Patch sampling: foreground ratio, rare classes, class balance, border padding, inference grid."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.data.sampling import (
    CaseArrays,
    PatchSampler,
    class_locations,
    extract_patch,
    grid_slices,
)


def tiny_blob_case(shape: tuple[int, ...] = (32, 32, 32)) -> CaseArrays:
    """One 2x2x2 foreground blob in a large background: random patch centres almost never hit it."""
    label = np.zeros((1, *shape), dtype=np.int8)
    label[(0, *[slice(20, 22)] * len(shape))] = 1
    image = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    return CaseArrays("blob", image, label, class_locations(label))


def centre_values(
    case: CaseArrays, sampler: PatchSampler, batches: int, batch_size: int, seed: int = 0
) -> np.ndarray:
    """Label value at the centre voxel of every patch (needs ``keep_inside=False``)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(batches):
        _, labels, _ = sampler.sample([case], batch_size, rng)
        centre = tuple(p // 2 for p in sampler.patch_size)
        values.extend(labels[(slice(None), 0, *centre)].tolist())
    return np.array(values)


def test_class_locations_lists_every_voxel_of_each_foreground_class() -> None:
    label = np.zeros((4, 5), dtype=np.int16)
    label[1, 2], label[3, 4], label[0, 0] = 2, 2, 7
    label[2, 2] = -1  # ignore value
    locations = class_locations(label)
    assert sorted(locations) == [2, 7]
    assert locations[2].tolist() == [[1, 2], [3, 4]] and locations[7].tolist() == [[0, 0]]


def test_class_locations_caps_each_class_and_is_repeatable() -> None:
    label = np.ones((1, 30, 40), dtype=np.int8)
    first = class_locations(label, max_per_class=100, seed=1)
    again = class_locations(label, max_per_class=100, seed=1)
    assert first[1].shape == (100, 2) and np.array_equal(first[1], again[1])
    assert (label[0][tuple(first[1].T)] == 1).all()


def test_class_locations_of_an_empty_mask_is_empty() -> None:
    assert class_locations(np.zeros((3, 3, 3), dtype=np.uint8)) == {}


@pytest.mark.parametrize(
    ("fraction", "batch_size"), [(1 / 3, 2), (1 / 3, 3), (0.5, 4), (0.0, 2), (1.0, 2)]
)
def test_measured_foreground_fraction_matches_the_configured_ratio(
    fraction: float, batch_size: int
) -> None:
    case = tiny_blob_case()
    sampler = PatchSampler((8, 8, 8), oversample_foreground=fraction, keep_inside=False)
    values = centre_values(case, sampler, batches=1200 // batch_size, batch_size=batch_size)
    tolerance = 4 * math.sqrt(fraction * (1 - fraction) / len(values)) + 0.01
    assert abs(np.mean(values == 1) - fraction) <= tolerance


def test_every_batch_has_at_least_the_floor_of_the_forced_foreground_patches() -> None:
    case = tiny_blob_case()
    sampler = PatchSampler((8, 8, 8), oversample_foreground=0.5, keep_inside=False)
    rng = np.random.default_rng(0)
    counts = [
        sum(b.centre_class == 1 for b in sampler.sample([case], 5, rng)[2]) for _ in range(50)
    ]
    assert min(counts) >= 2 and max(counts) <= 3


def test_rare_class_is_drawn_as_often_as_a_common_one() -> None:
    label = np.ones((1, 24, 24), dtype=np.int8)
    label[0, 10, 10] = 2  # one voxel of class 2 among 575 of class 1
    case = CaseArrays("rare", np.zeros((1, 24, 24), np.float32), label, class_locations(label))
    sampler = PatchSampler((6, 6), oversample_foreground=1.0, keep_inside=False)
    values = centre_values(case, sampler, batches=200, batch_size=4)
    assert abs(np.mean(values == 2) - 0.5) < 4 * math.sqrt(0.25 / len(values))


def test_balanced_mode_centres_half_the_patches_on_background_for_a_binary_task() -> None:
    case = tiny_blob_case()
    sampler = PatchSampler((8, 8, 8), mode="balanced", keep_inside=False)
    values = centre_values(case, sampler, batches=300, batch_size=2)
    assert abs(np.mean(values == 1) - 0.5) < 4 * math.sqrt(0.25 / len(values))
    assert set(np.unique(values)) == {0, 1}


def test_uniform_mode_ignores_the_foreground() -> None:
    case = tiny_blob_case()
    boxes = PatchSampler((8, 8, 8), mode="uniform").choose_boxes(
        [case], 50, np.random.default_rng(0)
    )
    assert all(b.centre_class is None for b in boxes)


def test_patch_centred_on_a_corner_voxel_is_padded_with_zero_and_the_label_fill() -> None:
    label = np.zeros((1, 10, 10), dtype=np.int8)
    label[0, 0, 0] = 1
    image = np.full((2, 10, 10), 5.0, dtype=np.float32)
    image[1] = -3.0
    case = CaseArrays("corner", image, label, class_locations(label))
    sampler = PatchSampler((6, 6), oversample_foreground=1.0, keep_inside=False, label_pad=-1)
    patches, labels, boxes = sampler.sample([case], 1, np.random.default_rng(0))
    assert boxes[0].start == (-3, -3)
    assert (patches[0, :, :3, :] == 0).all() and (patches[0, :, :, :3] == 0).all()
    assert (patches[0, 0, 3:, 3:] == 5).all() and (patches[0, 1, 3:, 3:] == -3).all()
    assert (labels[0, 0, :3, :] == -1).all() and labels[0, 0, 3, 3] == 1


def test_min_padding_uses_each_channels_minimum() -> None:
    image = np.stack([np.arange(16.0).reshape(4, 4), -np.arange(16.0).reshape(4, 4)]).astype(
        np.float32
    )
    case = CaseArrays("m", image, np.zeros((4, 4), np.int8))
    patches, _, _ = PatchSampler((6, 6), mode="uniform", image_pad="min").sample(
        [case], 1, np.random.default_rng(0)
    )
    assert patches[0, 0, 0, 0] == 0.0 and patches[0, 1, 0, 0] == -15.0


def test_keep_inside_shifts_the_patch_into_the_image_and_keeps_the_voxel() -> None:
    label = np.zeros((1, 20, 20), dtype=np.int8)
    label[0, 1, 18] = 1
    case = CaseArrays("edge", np.zeros((1, 20, 20), np.float32), label, class_locations(label))
    sampler = PatchSampler((8, 8), oversample_foreground=1.0, keep_inside=True)
    _, labels, boxes = sampler.sample([case], 4, np.random.default_rng(0))
    assert all(b.start == (0, 12) for b in boxes)
    assert (labels.reshape(4, -1).max(axis=1) == 1).all()


def test_image_smaller_than_the_patch_is_centred_and_padded() -> None:
    case = CaseArrays("small", np.ones((1, 4, 10), np.float32), np.ones((1, 4, 10), np.int8))
    patches, labels, boxes = PatchSampler((8, 8), mode="uniform").sample(
        [case], 3, np.random.default_rng(0)
    )
    assert all(b.start[0] == -2 for b in boxes)
    assert patches.shape == (3, 1, 8, 8)
    assert (
        (patches[:, 0, :2] == 0).all()
        and (patches[:, 0, 2:6] == 1).all()
        and (patches[:, 0, 6:] == 0).all()
    )


def test_a_case_without_foreground_falls_back_to_random_patches() -> None:
    case = CaseArrays("empty", np.zeros((1, 12, 12), np.float32), np.zeros((12, 12), np.int8))
    _, _, boxes = PatchSampler((4, 4), oversample_foreground=1.0).sample(
        [case], 4, np.random.default_rng(0)
    )
    assert all(b.centre_class is None for b in boxes)


def test_unlabelled_cases_give_no_label_batch() -> None:
    case = CaseArrays("u", np.zeros((2, 9, 9, 9), np.float32), None)
    images, labels, _ = PatchSampler((4, 4, 4)).sample([case], 2, np.random.default_rng(0))
    assert images.shape == (2, 2, 4, 4, 4) and labels is None


def test_extract_patch_copies_the_exact_box() -> None:
    image = np.arange(100, dtype=np.float32).reshape(1, 10, 10)
    patch, _ = extract_patch(image, None, (2, 3), (3, 4))
    assert np.array_equal(patch[0], image[0, 2:5, 3:7])


def test_sampler_rejects_bad_options_and_mismatched_cases() -> None:
    with pytest.raises(ValueError, match="mode"):
        PatchSampler((4, 4), mode="weighted")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="oversample_foreground"):
        PatchSampler((4, 4), oversample_foreground=1.5)
    with pytest.raises(ValueError, match="does not match"):
        CaseArrays("x", np.zeros((1, 4, 4)), np.zeros((1, 4, 5)))
    with pytest.raises(ValueError, match="no cases"):
        PatchSampler((4, 4)).sample([], 2, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("shape", "patch"), [((10,), (4,)), ((37, 50), (16, 20)), ((9, 20, 33), (9, 8, 16))]
)
def test_grid_tiles_cover_every_voxel_with_the_requested_overlap(
    shape: tuple, patch: tuple
) -> None:
    tiles = grid_slices(shape, patch, overlap=0.5)
    covered = np.zeros(shape, dtype=int)
    for tile in tiles:
        assert all(s.stop - s.start == p for s, p in zip(tile, patch, strict=True))
        covered[tile] += 1
    assert covered.min() >= 1
    for axis, (n, p) in enumerate(zip(shape, patch, strict=True)):
        starts = sorted({t[axis].start for t in tiles})
        assert starts[0] == 0 and starts[-1] == n - p
        assert all(b - a <= p * 0.5 for a, b in zip(starts, starts[1:], strict=False))


def test_grid_with_the_image_equal_to_the_patch_is_one_tile() -> None:
    assert grid_slices((8, 8), (8, 8)) == [(slice(0, 8), slice(0, 8))]


def test_grid_rejects_an_image_smaller_than_the_patch() -> None:
    with pytest.raises(ValueError, match="pad it"):
        grid_slices((6, 10), (8, 8))
