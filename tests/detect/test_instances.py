"""Watershed instances split touching objects that connected components merge; the distance
target peaks at 1 in every instance."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy import ndimage

from medseg.detect import instances as instances_module
from medseg.detect.instances import components_instances, distance_target, watershed_instances
from medseg.errors import ConfigError, GeometryError
from medseg.metrics.detection import panoptic_quality


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(instances_module, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0


def _balls(shape: tuple[int, ...], centres: list[tuple[int, ...]], radius: float) -> np.ndarray:
    """Instance map of balls; where two overlap the nearer centre wins."""
    grid = np.indices(shape).astype(float)
    dist = np.stack([np.sqrt(((grid.T - np.array(c)) ** 2).T.sum(0)) for c in centres])
    labels = np.argmin(dist, axis=0) + 1
    return np.where(dist.min(axis=0) <= radius, labels, 0).astype(np.int32)


@pytest.mark.parametrize(
    ("shape", "centres", "radius"),
    [
        ((32, 48), [(16, 14), (16, 31)], 9.0),  # 2D: discs of radius 9, centres 17 apart
        ((24, 24, 36), [(12, 12, 10), (12, 12, 25)], 8.0),  # 3D: balls, centres 15 apart
    ],
)
def test_watershed_splits_two_touching_objects_components_do_not(
    shape: tuple[int, ...], centres: list[tuple[int, ...]], radius: float
) -> None:
    truth = _balls(shape, centres, radius)
    mask = truth > 0
    assert components_instances(mask).max() == 1  # touching: one component
    distance = ndimage.distance_transform_edt(mask)  # of the union, not of each object
    labels = watershed_instances(mask.astype(np.float32), distance, min_distance=3)
    assert labels.max() == 2
    assert panoptic_quality(labels, truth)["PQ"] > 0.9
    # each instance holds its own centre
    assert {int(labels[c]) for c in centres} == {1, 2}


def test_watershed_of_the_distance_target_recovers_a_crowd() -> None:
    rng = np.random.default_rng(0)
    centres = [(int(y), int(x)) for y, x in rng.integers(6, 58, (12, 2))]
    truth = _balls((64, 64), centres, 6.0)
    truth = np.unique(truth, return_inverse=True)[1].reshape(truth.shape)  # drop hidden ones
    prob = np.clip((truth > 0) + rng.normal(0, 0.1, truth.shape), 0, 1)
    labels = watershed_instances(prob, distance_target(truth), min_distance=2, min_size=5)
    assert panoptic_quality(labels, truth)["PQ"] > 0.85
    assert panoptic_quality(components_instances(truth > 0), truth)["PQ"] < 0.85


def test_watershed_removes_small_instances_and_handles_empty_foreground() -> None:
    mask = np.zeros((20, 20), dtype=np.float32)
    mask[2:10, 2:10] = 1.0
    mask[15, 15] = 1.0  # one-voxel speck
    distance = ndimage.distance_transform_edt(mask)
    assert watershed_instances(mask, distance).max() == 2
    kept = watershed_instances(mask, distance, min_size=4)
    assert kept.max() == 1 and kept[15, 15] == 0 and kept.dtype == np.int32
    assert not watershed_instances(np.zeros((5, 5)), np.zeros((5, 5))).any()


def test_watershed_min_distance_in_mm_follows_spacing() -> None:
    # two maxima 4 voxels apart along axis 1: split with a 1-voxel window, merged when the
    # 3 mm window spans 6 voxels of 0.5 mm
    distance = np.zeros((5, 13))
    distance[2, 4], distance[2, 8] = 2.0, 1.9
    distance[2, 5:8] = 1.0
    prob = np.zeros_like(distance)
    prob[1:4, 2:11] = 1.0
    assert watershed_instances(prob, distance, min_distance=1).max() == 2
    merged = watershed_instances(prob, distance, min_distance=3.0, spacing=(1.0, 0.5))
    assert merged.max() == 1


def test_distance_target_peaks_at_one_per_instance() -> None:
    truth = _balls((40, 40), [(20, 12), (20, 27)], 8.0)
    target = distance_target(truth)
    assert target.dtype == np.float32
    assert (target[truth == 0] == 0).all() and (target[truth > 0] > 0).all()
    for i in (1, 2):
        assert target[truth == i].max() == pytest.approx(1.0)
    # one isolated instance: exactly its EDT over the maximum
    single = (truth == 1).astype(np.int32)
    edt = ndimage.distance_transform_edt(single)
    np.testing.assert_allclose(distance_target(single), edt / edt.max(), rtol=1e-6)
    # anisotropic spacing changes the shape of the target
    aniso = distance_target(single, spacing=(3.0, 1.0))
    assert not np.allclose(aniso, distance_target(single))


def test_bad_input_is_refused() -> None:
    with pytest.raises(GeometryError, match="differ in shape"):
        watershed_instances(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ConfigError, match="finite"):
        watershed_instances(np.full((4, 4), np.nan), np.zeros((4, 4)))
    with pytest.raises(ConfigError, match="min_distance"):
        watershed_instances(np.zeros((4, 4)), np.zeros((4, 4)), min_distance=0)
    with pytest.raises(ConfigError, match="spacing"):
        distance_target(np.zeros((4, 4), dtype=int), spacing=(1.0,))
    with pytest.raises(ConfigError, match="integer"):
        distance_target(np.zeros((4, 4)))
    with pytest.raises(ConfigError, match="2D or 3D"):
        components_instances(np.zeros(5))


def test_h_maxima_merge_shallow_maxima_only() -> None:
    # one elongated object with two maxima 3.0 and 2.6 joined by a saddle of 2.0 (dynamic
    # 0.6 of the lower one): split with h = 0 or 0.5, one instance with h = 1
    distance = np.zeros((5, 21))
    distance[2, 2:19] = np.interp(np.arange(2, 19), [2, 6, 10, 14, 18], [1, 3.0, 2.0, 2.6, 1])
    prob = (distance > 0).astype(float)
    assert watershed_instances(prob, distance, min_distance=1).max() == 2
    assert watershed_instances(prob, distance, min_distance=1, h=0.5).max() == 2
    assert watershed_instances(prob, distance, min_distance=1, h=1.0).max() == 1
    with pytest.raises(ConfigError, match="h must be"):
        watershed_instances(prob, distance, h=-1.0)
