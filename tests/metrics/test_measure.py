"""Measurements: volumes, surfaces, connected components with world centroids, size columns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from skimage.measure import find_contours, marching_cubes, mesh_surface_area

from medseg.errors import ConfigError, GeometryError
from medseg.io import Image, to_sitk
from medseg.metrics.measure import (
    SIZE_COLUMNS,
    label_values,
    measure_label_map,
    size_columns,
    structure_volume,
    structure_volume_ml,
    surface_area,
)


def _ball(spacing: tuple[float, ...], radius_mm: float) -> np.ndarray:
    """Voxels whose centre lies within ``radius_mm`` of the grid centre."""
    shape = [int(np.ceil(2 * radius_mm / s)) + 4 for s in spacing]
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]
    grids = np.meshgrid(*axes, indexing="ij")
    return sum(g**2 for g in grids) <= radius_mm**2


def test_voxelised_sphere_volume_is_within_one_percent_at_anisotropic_spacing() -> None:
    spacing, radius = (2.0, 0.7, 0.8), 20.0
    ball = _ball(spacing, radius)
    exact_mm3 = 4 / 3 * math.pi * radius**3
    assert structure_volume(ball, spacing) == pytest.approx(exact_mm3, rel=0.01)
    assert structure_volume_ml(ball, spacing) == pytest.approx(exact_mm3 / 1000, rel=0.01)
    # the voxel count times the voxel volume, exactly
    assert structure_volume(ball, spacing) == np.count_nonzero(ball) * 2.0 * 0.7 * 0.8


def test_disc_area_is_within_one_percent_in_2d() -> None:
    disc = _ball((0.5, 0.4), 10.0)
    assert structure_volume(disc, (0.5, 0.4)) == pytest.approx(math.pi * 100, rel=0.01)


def test_volume_in_ml_refuses_a_2d_mask() -> None:
    with pytest.raises(GeometryError, match="3D"):
        structure_volume_ml(np.ones((3, 3), bool), (1.0, 1.0))


def test_surface_area_equals_scikit_image_marching_cubes_on_a_sphere() -> None:
    spacing = (2.0, 0.7, 0.8)
    ball = _ball(spacing, 12.0)
    vertices, faces, _, _ = marching_cubes(np.pad(ball, 1).astype(float), 0.5, spacing=spacing)
    assert surface_area(ball, spacing) == pytest.approx(mesh_surface_area(vertices, faces), 1e-9)
    # the staircase makes it larger than the smooth sphere, but not by much
    assert 1.0 < surface_area(ball, spacing) / (4 * math.pi * 12.0**2) < 1.2


def test_perimeter_equals_scikit_image_marching_squares_on_an_ellipse() -> None:
    yy, xx = np.mgrid[:40, :50]
    disc = ((yy - 19.5) * 0.5) ** 2 + (xx - 24.5) ** 2 <= 100
    contours = find_contours(np.pad(disc, 1).astype(float), 0.5)
    length = sum(np.hypot(np.diff(c[:, 0]) * 0.5, np.diff(c[:, 1])).sum() for c in contours)
    assert surface_area(disc, (0.5, 1.0)) == pytest.approx(length, rel=1e-9)


def test_surface_of_a_cut_corner_square_by_hand() -> None:
    # a 2x2 square of 1 mm pixels: 4 straight edges of 1 mm and 4 corner diagonals of sqrt(2)/2
    square = np.zeros((4, 4), bool)
    square[1:3, 1:3] = True
    assert surface_area(square, (1.0, 1.0)) == pytest.approx(4 + 4 * math.sqrt(2) / 2)
    assert surface_area(np.zeros((4, 4), bool), (1.0, 1.0)) == 0.0


def _two_diagonal_blobs() -> np.ndarray:
    mask = np.zeros((5, 6, 7), np.uint8)
    mask[1:3, 1:3, 1:3] = 1  # 8 voxels
    mask[3, 3, 3] = 1  # touches the cube at one corner only
    mask[0, 5, 6] = 2
    mask[4, 0, 6] = 1  # far away: always its own component
    return mask


@pytest.mark.parametrize(("connectivity", "expected"), [("full", [9, 1]), ("face", [8, 1, 1])])
def test_component_counts_depend_on_the_connectivity(connectivity, expected) -> None:
    result = measure_label_map(_two_diagonal_blobs(), (1.0, 1.0, 1.0), connectivity=connectivity)
    rows = [c for c in result.components if c["label"] == "1"]
    assert [c["voxels"] for c in rows] == expected
    assert [c["component"] for c in rows] == list(range(1, len(expected) + 1))
    label_1 = result.labels[0]
    assert label_1["n_components"] == len(expected)
    assert label_1["voxels"] == 10
    assert label_1["largest_component_ml"] == pytest.approx(expected[0] / 1000)


def test_label_rows_have_volume_surface_and_absent_labels_get_zeros() -> None:
    result = measure_label_map(_two_diagonal_blobs(), (2.0, 1.0, 0.5), labels=[1, 2, 7, (1, 2)])
    by_label = {row["label"]: row for row in result.labels}
    assert list(by_label) == ["1", "2", "7", "1+2"]
    assert by_label["1"]["volume_ml"] == pytest.approx(10 * 1.0 / 1000)
    assert by_label["2"]["voxels"] == 1 and by_label["1+2"]["voxels"] == 11
    assert by_label["7"] == {
        "label": "7",
        "voxels": 0,
        "volume_ml": 0.0,
        "surface_mm2": 0.0,
        "n_components": 0,
        "largest_component_ml": 0.0,
    }
    one = np.zeros((5, 6, 7), bool)
    one[0, 5, 6] = True
    assert by_label["2"]["surface_mm2"] == pytest.approx(surface_area(one, (2.0, 1.0, 0.5)))


def test_centroids_are_world_coordinates_with_origin_and_rotated_direction() -> None:
    mask = np.zeros((4, 5, 6), np.uint8)
    mask[1:4, 3, 4] = 1  # centroid index (2, 3, 4) in array order (z, y, x)
    mask[0, 0, 0:2] = 1  # centroid index (0, 0, 0.5)
    spacing = (2.0, 1.0, 0.5)
    origin = (10.0, 20.0, 30.0)
    # ITK column d = world direction of index axis d: i (array x) -> +y, j (array y) -> -x
    direction = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    result = measure_label_map(mask, spacing, origin=origin, direction=direction)
    first, second = result.components
    # by hand: ITK index (4, 3, 2) * spacing (0.5, 1, 2) = (2, 3, 4); D @ that = (-3, 2, 4)
    got = (first["centroid_x_mm"], first["centroid_y_mm"], first["centroid_z_mm"])
    assert got == pytest.approx((7.0, 22.0, 34.0))
    # SimpleITK as the independent reference for the second blob
    itk = to_sitk(Image(mask, spacing, origin, direction))
    expected = itk.TransformContinuousIndexToPhysicalPoint((0.5, 0.0, 0.0))
    got = (second["centroid_x_mm"], second["centroid_y_mm"], second["centroid_z_mm"])
    assert got == pytest.approx(expected)
    assert got != pytest.approx((0.0, 0.0, 0.25))  # the direction matters
    assert isinstance(itk, sitk.Image)


def test_bounding_boxes_are_inclusive_voxel_indices_in_array_order() -> None:
    mask = np.zeros((6, 7, 8), np.uint8)
    mask[2:5, 1:3, 6] = 1
    (component,) = measure_label_map(mask, (1.0, 1.0, 1.0)).components
    assert [component[f"bbox_min_{a}"] for a in range(3)] == [2, 1, 6]
    assert [component[f"bbox_max_{a}"] for a in range(3)] == [4, 2, 6]


def test_2d_rows_hold_area_and_perimeter_and_full_connectivity_is_8() -> None:
    image = np.zeros((5, 5), np.uint8)
    image[0, 0] = image[1, 1] = 1  # diagonal neighbours: one component with 8-connectivity
    image[3:5, 3:5] = 1
    result = measure_label_map(image, (0.5, 2.0))
    row = result.labels[0]
    assert set(row) == {
        "label",
        "voxels",
        "area_mm2",
        "perimeter_mm",
        "n_components",
        "largest_component_mm2",
    }
    assert row["n_components"] == 2 and row["area_mm2"] == pytest.approx(6 * 1.0)
    assert row["largest_component_mm2"] == pytest.approx(4.0)
    assert "centroid_z_mm" not in result.components[0]
    face = measure_label_map(image, (0.5, 2.0), connectivity="face")
    assert face.labels[0]["n_components"] == 3


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="connectivity"):
        measure_label_map(np.ones((3, 3), np.uint8), (1.0, 1.0), connectivity="edge")  # type: ignore[arg-type]
    with pytest.raises(GeometryError, match="2D or 3D"):
        measure_label_map(np.ones(5, np.uint8), (1.0,))
    with pytest.raises(GeometryError, match="spacing"):
        measure_label_map(np.ones((3, 3), np.uint8), (1.0, 1.0, 1.0))
    with pytest.raises(GeometryError):
        measure_label_map(np.ones((3, 3), np.uint8), (1.0, 1.0), origin=(0.0, 0.0, 0.0))


def test_label_values_match_numpy_unique_for_few_and_many_labels() -> None:
    rng = np.random.default_rng(0)
    for top in (3, 40):
        array = rng.integers(0, top, (9, 10, 11)).astype(np.uint16)
        array[array == 2] = 0
        expected = [int(v) for v in np.unique(array) if v not in (0, 5)]
        assert label_values(array, ignore_label=5) == expected


def test_size_columns_fill_volumes_in_3d_and_areas_in_2d() -> None:
    three = size_columns(90, 30, 10, (2.0, 1.0, 0.5))  # voxel = 1 mm^3
    assert three["vol_pred_ml"] == pytest.approx(0.12) and three["vol_ref_ml"] == 0.1
    assert three["vol_diff_ml"] == pytest.approx(0.02)
    assert three["vol_rel_err"] == pytest.approx(0.2)
    assert all(math.isnan(three[k]) for k in SIZE_COLUMNS if k.startswith("area"))
    two = size_columns(90, 30, 10, (0.5, 0.5))
    assert two["area_pred_mm2"] == 30.0 and two["area_ref_mm2"] == 25.0
    assert two["area_diff_mm2"] == 5.0 and two["area_rel_err"] == pytest.approx(0.2)
    assert all(math.isnan(two[k]) for k in SIZE_COLUMNS if k.startswith("vol"))
    empty_ref = size_columns(0, 4, 0, (1.0, 1.0, 1.0))
    assert empty_ref["vol_ref_ml"] == 0.0 and math.isnan(empty_ref["vol_rel_err"])


def test_docstring_examples_of_the_measure_module_hold() -> None:
    import doctest

    import medseg.metrics.measure as module

    result = doctest.testmod(module, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0
