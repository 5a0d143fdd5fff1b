"""Band threshold and Otsu against hand-computed cases and scikit-image; the seeds' claim that a
global threshold suffers from intensity inhomogeneity (bias field)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.classic.threshold import otsu, otsu_segmentation, otsu_threshold, threshold
from medseg.errors import ConfigError, DatasetError
from medseg.io import Image


def _image(array: np.ndarray) -> Image:
    return Image(array, spacing=(2.0,) * array.ndim, origin=(5.0,) * array.ndim)


def test_otsu_separates_two_constant_populations() -> None:
    image = np.array([10.0] * 30 + [50.0] * 70)
    t = otsu_threshold(image)
    assert 10 <= t < 50
    assert otsu_segmentation(image).sum() == 70


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_otsu_threshold_equals_scikit_image(seed: int) -> None:
    skimage_filters = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(seed)
    image = np.concatenate([rng.normal(40, 8, 5000), rng.normal(120, 15, 3000)])
    assert otsu_threshold(image) == pytest.approx(skimage_filters.threshold_otsu(image), rel=1e-12)


def test_otsu_respects_a_mask_and_ignores_nan() -> None:
    image = np.array([0.0, 0.0, 100.0, 100.0, np.nan, 1000.0])
    mask = np.array([True, True, True, True, True, False])
    assert otsu_threshold(image, mask=mask) < 100


def test_constant_image_threshold_is_its_value_and_segments_nothing() -> None:
    image = np.full((4, 4), 7.0)
    assert otsu_threshold(image) == 7.0
    assert otsu_segmentation(image).sum() == 0


@pytest.mark.parametrize("shape", [(40, 50), (12, 14, 16)])
def test_otsu_image_equals_scikit_image_labels(shape: tuple[int, ...]) -> None:
    skimage_filters = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(len(shape))
    array = rng.gamma(2.0, 10.0, shape)
    out = otsu(_image(array))
    np.testing.assert_array_equal(out.array, array > skimage_filters.threshold_otsu(array))
    assert out.array.dtype == np.uint8
    assert out.spacing == (2.0,) * len(shape) and out.origin == (5.0,) * len(shape)


@pytest.mark.parametrize("classes", [3, 4])
def test_multi_otsu_equals_scikit_image(classes: int) -> None:
    skimage_filters = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(classes)
    means = rng.permutation(np.arange(classes) * 50.0)
    array = means[rng.integers(0, classes, (30, 30))] + rng.normal(0, 5, (30, 30))
    thresholds = skimage_filters.threshold_multiotsu(array, classes=classes)
    out = otsu(_image(array), classes=classes)
    np.testing.assert_array_equal(out.array, np.digitize(array, thresholds, right=True))
    assert set(np.unique(out.array)) == set(range(classes))
    # labels by increasing intensity: every voxel of class k is darker than any of class k+1
    for k in range(classes - 1):
        assert array[out.array == k].max() < array[out.array == k + 1].min()


def test_otsu_mask_limits_the_histogram_and_zeroes_outside() -> None:
    array = np.array([[0.0, 0.0, 10.0, 10.0, 1000.0, 2000.0]])
    mask = np.array([[True, True, True, True, False, False]])
    out = otsu(_image(array), mask=mask)
    # inside the mask the split is 0 | 10; the bright voxels outside stay 0
    np.testing.assert_array_equal(out.array, [[0, 0, 1, 1, 0, 0]])


def test_otsu_constant_image_warns_and_returns_an_empty_mask() -> None:
    with pytest.warns(UserWarning, match="constant"):
        out = otsu(_image(np.full((5, 6), 3.0)))
    assert out.array.shape == (5, 6) and not out.array.any()


def test_band_threshold_is_inclusive() -> None:
    image = _image(np.arange(6.0).reshape(1, 6))
    np.testing.assert_array_equal(threshold(image, lower=2, upper=4).array, [[0, 0, 1, 1, 1, 0]])
    np.testing.assert_array_equal(threshold(image, upper=1).array, [[1, 1, 0, 0, 0, 0]])
    assert threshold(image).array.all()


def test_threshold_bad_input_one_clear_error_each() -> None:
    image = _image(np.arange(6.0).reshape(2, 3))
    with pytest.raises(ConfigError, match="lower 5 > upper 2"):
        threshold(image, lower=5, upper=2)
    nan = np.arange(6.0).reshape(2, 3)
    nan[0, 1] = np.nan
    with pytest.raises(DatasetError, match="1 NaN voxel"):
        threshold(_image(nan), lower=1)
    with pytest.raises(DatasetError, match="1 NaN voxel"):
        otsu(_image(nan))
    two_channels = Image(np.zeros((2, 4, 4)), spacing=(1.0, 1.0))
    with pytest.raises(DatasetError, match="2 channels"):
        otsu(two_channels)
    with pytest.raises(ConfigError, match="classes"):
        otsu(image, classes=1)


def _biased_phantom_dice(strength: float) -> float:
    """Otsu Dice on a disc phantom under a multiplicative linear bias ``1 + strength * x``
    (x from -1 at the left edge to +1 at the right)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:96, :96]
    truth = (y - 48) ** 2 + (x - 48) ** 2 < 30**2
    tissue = np.where(truth, 100.0, 60.0) + rng.normal(0, 4, truth.shape)
    bias = 1.0 + strength * (x / 95.0 * 2.0 - 1.0)
    predicted = otsu(Image(tissue * bias, spacing=(1.0, 1.0))).array.astype(bool)
    return 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())


def test_global_threshold_dice_falls_as_bias_field_strength_rises() -> None:
    dice = [_biased_phantom_dice(s) for s in (0.0, 0.15, 0.3, 0.45)]
    assert dice[0] > 0.98  # homogeneous regions: Otsu is nearly perfect
    assert all(a > b for a, b in zip(dice, dice[1:], strict=False)), dice
    assert dice[-1] < 0.9


def test_otsu_dark_foreground_reverses_the_classes_inside_the_mask() -> None:
    array = np.array([[0.0, 0.0, 10.0, 10.0, 1000.0, 2000.0]])
    mask = np.array([[True, True, True, True, False, False]])
    dark = otsu(_image(array), mask=mask, foreground="dark")
    np.testing.assert_array_equal(dark.array, [[1, 1, 0, 0, 0, 0]])  # outside stays 0
    rng = np.random.default_rng(3)
    levels = rng.normal(0, 1, (20, 20)) + 30 * rng.integers(0, 3, (20, 20))
    bright = otsu(_image(levels), classes=3).array
    np.testing.assert_array_equal(
        otsu(_image(levels), classes=3, foreground="dark").array, 2 - bright
    )
    with pytest.raises(ConfigError, match="bright or dark"):
        otsu(_image(array), foreground="grey")
