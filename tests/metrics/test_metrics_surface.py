"""Surfaces and distances: definitions, cropping invariance, equality with SciPy's EDT."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medseg.errors import ConfigError, GeometryError
from medseg.metrics import distance_metrics, surface_distances, surface_voxels
from medseg.metrics.surface import union_bbox


def _blobs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.binary_opening(rng.random(shape) < 0.6, iterations=1)


@pytest.mark.parametrize("shape", [(17, 23), (9, 11, 13)])
@pytest.mark.parametrize("full", [False, True])
def test_surface_is_mask_minus_scipy_erosion_with_background_border(shape, full) -> None:
    mask = _blobs(shape, 1)
    mask[0] = True  # touches the image border
    connectivity = mask.ndim if full else 1
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    expected = mask & ~ndimage.binary_erosion(mask, structure, border_value=0)
    assert np.array_equal(surface_voxels(mask, connectivity=connectivity), expected)


def test_edge_connectivity_in_3d_uses_the_18_neighbourhood() -> None:
    mask = _blobs((8, 9, 10), 2)
    structure = ndimage.generate_binary_structure(3, 2)
    expected = mask & ~ndimage.binary_erosion(mask, structure)
    assert np.array_equal(surface_voxels(mask, connectivity=2), expected)


def test_a_full_image_has_its_border_as_surface() -> None:
    surface = surface_voxels(np.ones((4, 5), bool))
    assert surface.sum() == 4 * 5 - 2 * 3


def test_connectivity_outside_one_to_ndim_is_refused() -> None:
    with pytest.raises(ConfigError, match="connectivity"):
        surface_voxels(np.ones((3, 3), bool), connectivity=3)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (5.0, 0.7, 0.9)])
def test_directed_distances_equal_scipy_edt_of_the_other_surface(spacing) -> None:
    pred, ref = _blobs((10, 12, 14), 3), _blobs((10, 12, 14), 4)
    sp, sr = surface_voxels(pred), surface_voxels(ref)
    expected = ndimage.distance_transform_edt(~sr, sampling=spacing)[sp]
    got = surface_distances(pred, ref, spacing).pred_to_ref
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("surface", ["voxel", "surfel"])
def test_padding_the_image_with_background_changes_no_metric(surface) -> None:
    pred, ref = _blobs((9, 10, 11), 5), _blobs((9, 10, 11), 6)
    pred[0] = True  # touches the border: outside counts as background either way
    spacing = (2.0, 0.8, 1.1)
    small = distance_metrics(pred, ref, spacing, surface=surface)
    pad = ((3, 4), (5, 0), (2, 6))
    large = distance_metrics(np.pad(pred, pad), np.pad(ref, pad), spacing, surface=surface)
    assert large == pytest.approx(small, rel=1e-12)


def test_union_bbox_is_none_for_two_empty_masks() -> None:
    assert union_bbox(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) is None


def test_one_empty_mask_leaves_the_other_surface_at_infinite_distance() -> None:
    mask = np.zeros((5, 5), bool)
    mask[1:3, 1:3] = True
    sd = surface_distances(mask, np.zeros_like(mask), (1.0, 1.0))
    assert sd.ref_to_pred.size == 0 and np.all(np.isinf(sd.pred_to_ref))


def test_mismatched_shapes_raise_geometry_error() -> None:
    with pytest.raises(GeometryError, match="differs"):
        surface_distances(np.ones((3, 3)), np.ones((3, 4)), (1.0, 1.0))


def test_spacing_of_wrong_length_raises_geometry_error() -> None:
    with pytest.raises(GeometryError, match="spacing"):
        surface_distances(np.ones((3, 3)), np.ones((3, 3)), (1.0, 1.0, 1.0))


def test_unknown_surface_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="surface"):
        surface_distances(np.ones((3, 3)), np.ones((3, 3)), (1.0, 1.0), surface="mesh")


@pytest.mark.parametrize("voxels_per_query", [0, 10**9], ids=["kdtree", "scipy-edt"])
def test_kdtree_and_distance_transform_paths_give_the_same_distances(
    monkeypatch, voxels_per_query
) -> None:
    pred, ref = _blobs((10, 12, 14), 7), _blobs((10, 12, 14), 8)
    spacing = (2.5, 0.6, 0.9)
    sr = surface_voxels(ref)
    expected = ndimage.distance_transform_edt(~sr, sampling=spacing)[surface_voxels(pred)]
    monkeypatch.setattr("medseg.metrics.surface._EDT_VOXELS_PER_QUERY", voxels_per_query)
    got = surface_distances(pred, ref, spacing).pred_to_ref
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
