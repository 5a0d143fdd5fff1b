"""N4 bias-field correction and Nyul-Udupa histogram matching (intensity_correction)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.data.intensity_correction import (
    correct_intensities,
    histogram_landmarks,
    image_percentiles,
    match_histogram,
    n4_correct,
)

PERCENTILES = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99)
# 1..1001: the p-th percentile sits exactly on a voxel, 1 + 10 p, so every value is by hand
RAMP = np.arange(1.0, 1002.0).reshape(7, 11, 13)
RAMP_POINTS = [11.0, 101.0, 201.0, 301.0, 401.0, 501.0, 601.0, 701.0, 801.0, 901.0, 991.0]


def biased_phantom(shape=(48, 48, 48), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid of intensity 100 (background 5, noise sd 1) times a smooth field
    ``exp(polynomial)`` spanning about 0.76..1.23 inside it; returns (image, object mask)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    z, y, x = grids if len(shape) == 3 else (np.zeros(shape), *grids)
    obj = (z / 0.8) ** 2 + (y / 0.7) ** 2 + (x / 0.85) ** 2 <= 1
    clean = np.where(obj, 100.0, 5.0) + rng.normal(0, 1.0, shape)
    log_field = 0.25 * x - 0.15 * y + 0.1 * z * z + 0.1 * x * y
    field = np.exp(log_field - log_field[obj].mean())
    return (clean * field).astype(np.float32), obj


def cv(image: np.ndarray, mask: np.ndarray) -> float:
    return float(image[mask].std() / image[mask].mean())


def test_n4_removes_a_multiplicative_bias_field_in_3d() -> None:
    image, obj = biased_phantom()
    before = cv(image, obj)
    out = n4_correct(image, (1.0, 1.0, 1.0), iterations=(20, 20))
    assert out.shape == image.shape and out.dtype == np.float32
    assert before > 0.1  # the field: about 10 % coefficient of variation, noise alone 1 %
    assert cv(out, obj) < before / 4  # measured: 0.106 -> 0.013 (50 x 4 levels: 0.013)


def test_n4_works_on_2d_images_and_singleton_axes() -> None:
    image, obj = biased_phantom((64, 64))
    out = n4_correct(image, (0.8, 0.8), iterations=(20, 20))
    assert cv(out, obj) < cv(image, obj) / 2
    # a 3D array holding one slice is corrected like the 2D image
    flat = n4_correct(image[None], (5.0, 0.8, 0.8), iterations=(20, 20))
    np.testing.assert_allclose(flat[0], out, rtol=1e-5)


def test_n4_leaves_an_image_without_foreground_unchanged_and_checks_spacing() -> None:
    zeros = np.zeros((12, 12, 12), np.float32)
    np.testing.assert_array_equal(n4_correct(zeros, (1, 1, 1)), zeros)
    with pytest.raises(ValueError, match="one spacing per axis"):
        n4_correct(zeros, (1.0, 1.0))


def test_landmarks_of_a_ramp_by_hand_and_invariant_to_a_linear_rescale() -> None:
    np.testing.assert_allclose(image_percentiles(RAMP, PERCENTILES), RAMP_POINTS)
    # standardised: (p - 11) / (991 - 11) * 100
    expected = [(p - 11.0) / 980.0 * 100.0 for p in RAMP_POINTS]
    assert expected[1] == pytest.approx(9.183673, abs=1e-6)
    np.testing.assert_allclose(histogram_landmarks([RAMP]), expected, atol=1e-9)
    # 2 * ramp + 5 has the same histogram shape: the average is unchanged
    np.testing.assert_allclose(histogram_landmarks([RAMP, 2 * RAMP + 5]), expected, atol=1e-9)
    # the voxels are the non-zero ones: padding with zeros changes nothing
    padded = np.pad(RAMP, 3)
    np.testing.assert_allclose(histogram_landmarks([padded]), expected, atol=1e-9)


def test_landmarks_average_two_histogram_shapes() -> None:
    squared = RAMP**2  # percentiles (1 + 10 p)^2
    points = np.array(RAMP_POINTS) ** 2
    shape_sq = (points - points[0]) / (points[-1] - points[0]) * 100
    shape_lin = (np.array(RAMP_POINTS) - 11.0) / 980.0 * 100
    np.testing.assert_allclose(
        histogram_landmarks([RAMP, squared]), (shape_sq + shape_lin) / 2, atol=1e-9
    )
    with pytest.raises(ValueError, match="non-constant"):
        histogram_landmarks([np.full((4, 4), 3.0)])


def test_matching_reproduces_the_landmarks_and_extrapolates_with_the_end_slopes() -> None:
    landmarks = [0.0, 5.0, 12.0, 20.0, 30.0, 40.0, 50.0, 61.0, 75.0, 90.0, 100.0]
    out = match_histogram(RAMP, landmarks)
    assert out.dtype == np.float32 and out.shape == RAMP.shape
    # over the voxels the map was fitted on (voxel 11 now is 0, which "non-zero" would drop)
    every = np.ones(RAMP.shape, bool)
    np.testing.assert_allclose(
        image_percentiles(out, PERCENTILES, mask=every), landmarks, atol=1e-4
    )
    # within a segment the map is linear: 151 is half-way from 101 (5) to 201 (12)
    assert out.flat[150] == pytest.approx(8.5)
    # below the 1st percentile (11 -> 0): slope of 11..101 -> 0..5, so 1 -> -10/90 * 5
    assert out.min() == pytest.approx(-5.0 / 9.0, abs=1e-5)
    # above the 99th (991 -> 100): slope of 901..991 -> 90..100, so 1001 -> 100 + 10/9
    assert out.max() == pytest.approx(100.0 + 10.0 / 9.0, abs=1e-4)
    # a linearly rescaled image is matched onto the same values
    np.testing.assert_allclose(match_histogram(3 * RAMP + 7, landmarks), out, atol=1e-4)


def test_matching_2d_with_ties_stays_monotone_and_checks_its_landmarks() -> None:
    image = np.repeat(np.arange(1.0, 5.0), 25).reshape(10, 10)  # 4 values, many ties
    landmarks = np.linspace(0, 100, len(PERCENTILES))
    out = match_histogram(image, landmarks)
    levels = [float(out[image == v][0]) for v in (1.0, 2.0, 3.0, 4.0)]
    assert levels == sorted(levels) and len(set(levels)) == 4
    assert len(np.unique(out)) == 4  # equal voxels stay equal
    with pytest.raises(ValueError, match="3 landmarks for 11 percentiles"):
        match_histogram(image, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="must increase"):
        match_histogram(image, landmarks[::-1])


def test_correct_intensities_touches_only_the_listed_channels() -> None:
    image, obj = biased_phantom((24, 24, 24))
    stack = np.stack([image, image])
    assert correct_intensities(stack, (1, 1, 1)) is stack  # nothing asked: untouched
    landmarks = histogram_landmarks([image])
    out = correct_intensities(
        stack, (1, 1, 1), n4_channels=(0,), histogram_landmarks={"1": landmarks}
    )
    assert cv(out[0], obj) < cv(image, obj) / 2
    np.testing.assert_allclose(out[1], match_histogram(image, landmarks))
