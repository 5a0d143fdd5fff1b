"""Region growing against SimpleITK called directly and against scipy's connected components."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medseg.classic.region import region_grow
from medseg.errors import ConfigError, DatasetError
from medseg.io import Image


def _component_of(mask: np.ndarray, seed: tuple[int, ...], connectivity: int) -> np.ndarray:
    """The connected component of ``mask`` holding ``seed`` (scipy), empty if seed is off."""
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    labels, _ = ndimage.label(mask, structure=structure)
    return labels == labels[seed] if mask[seed] else np.zeros_like(mask)


@pytest.mark.parametrize(
    ("shape", "connectivity"), [((23, 31), 1), ((23, 31), 2), ((9, 11, 13), 1), ((9, 11, 13), 3)]
)
@pytest.mark.parametrize("seed_index", [0, 1])
def test_equals_simpleitk_connected_threshold_on_random_images(
    shape: tuple[int, ...], connectivity: int, seed_index: int
) -> None:
    rng = np.random.default_rng(seed_index * 10 + len(shape) + connectivity)
    array = rng.uniform(0, 100, shape)
    seed = tuple(int(rng.integers(0, s)) for s in shape)
    array[seed] = 50.0
    lower, upper = 20.0, 80.0  # ~60 % of voxels pass: large but finite components

    out = region_grow(
        Image(array, spacing=(1.0,) * len(shape)),
        [seed],
        lower=lower,
        upper=upper,
        connectivity=connectivity,
    )

    reference = sitk.ConnectedThreshold(
        sitk.GetImageFromArray(array),
        seedList=[seed[::-1]],
        lower=lower,
        upper=upper,
        connectivity=sitk.ConnectedThresholdImageFilter.FaceConnectivity
        if connectivity == 1
        else sitk.ConnectedThresholdImageFilter.FullConnectivity,
    )
    np.testing.assert_array_equal(out.array, sitk.GetArrayFromImage(reference))
    # independent check: the scipy component of the band mask holding the seed
    band = (array >= lower) & (array <= upper)
    np.testing.assert_array_equal(out.array.astype(bool), _component_of(band, seed, connectivity))
    # always one connected component, with the seed inside
    _, count = ndimage.label(out.array, ndimage.generate_binary_structure(len(shape), connectivity))
    assert count == 1 and out.array[seed] == 1


def test_seed_axis_order_is_the_array_order() -> None:
    array = np.zeros((5, 9))
    array[:, 6:] = 10.0  # a bright band of columns 6..8
    out = region_grow(Image(array, spacing=(1.0, 1.0)), [(1, 7)], lower=5, upper=15)
    np.testing.assert_array_equal(out.array, (array > 5).astype(np.uint8))


def test_tolerance_is_a_band_around_the_mean_seed_intensity() -> None:
    rng = np.random.default_rng(3)
    array = rng.uniform(0, 100, (30, 30))
    array[4, 5], array[20, 21] = 40.0, 60.0  # seed mean 50
    image = Image(array, spacing=(1.0, 1.0))
    seeds = [(4, 5), (20, 21)]
    by_tolerance = region_grow(image, seeds, tolerance=25.0)
    by_bounds = region_grow(image, seeds, lower=25.0, upper=75.0)
    np.testing.assert_array_equal(by_tolerance.array, by_bounds.array)
    assert by_tolerance.array[4, 5] == 1 and by_tolerance.array[20, 21] == 1


def test_confidence_mode_equals_simpleitk_confidence_connected() -> None:
    rng = np.random.default_rng(4)
    array = rng.normal(20, 3, (32, 32))
    array[8:24, 8:24] = rng.normal(80, 3, (16, 16))
    seed = (16, 16)
    out = region_grow(
        Image(array, spacing=(1.0, 1.0)), [seed], mode="confidence", multiplier=2.5, iterations=4
    )
    reference = sitk.ConfidenceConnected(
        sitk.GetImageFromArray(array),
        seedList=[seed[::-1]],
        numberOfIterations=4,
        multiplier=2.5,
        initialNeighborhoodRadius=1,
        replaceValue=1,
    )
    np.testing.assert_array_equal(out.array, sitk.GetArrayFromImage(reference))
    assert 0.9 < out.array[8:24, 8:24].mean() and out.array.sum() <= 16 * 16  # the square


def test_seed_outside_the_band_warns_and_returns_empty() -> None:
    array = np.zeros((6, 6))
    with pytest.warns(UserWarning, match="empty"):
        out = region_grow(Image(array, spacing=(1.0, 1.0)), [(2, 2)], lower=1, upper=2)
    assert not out.array.any()


def test_bad_input_one_clear_error_each() -> None:
    image = Image(np.zeros((6, 7)), spacing=(1.0, 1.0))
    with pytest.raises(ConfigError, match=r"seed \(6, 1\) is outside the image of shape \(6, 7\)"):
        region_grow(image, [(6, 1)], lower=0, upper=1)
    with pytest.raises(ConfigError, match="lower 3.0 > upper 1.0"):
        region_grow(image, [(1, 1)], lower=3, upper=1)
    with pytest.raises(ConfigError, match="no seeds"):
        region_grow(image, [], lower=0, upper=1)
    with pytest.raises(ConfigError, match="not both"):
        region_grow(image, [(1, 1)], lower=0, tolerance=1)
    with pytest.raises(ConfigError, match="unknown mode"):
        region_grow(image, [(1, 1)], lower=0, mode="watershed")  # type: ignore[arg-type]
    nan = np.zeros((6, 7))
    nan[0, 0] = np.nan
    with pytest.raises(DatasetError, match="1 NaN voxel"):
        region_grow(Image(nan, spacing=(1.0, 1.0)), [(1, 1)], lower=0, upper=1)
