"""Otsu and band thresholds against hand-computed cases and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.classic import otsu_segmentation, otsu_threshold, threshold


def test_otsu_separates_two_constant_populations() -> None:
    image = np.array([10.0] * 30 + [50.0] * 70)
    t = otsu_threshold(image)
    assert 10 <= t < 50
    assert otsu_segmentation(image).sum() == 70


def test_otsu_matches_scikit_image_on_a_bimodal_sample() -> None:
    skimage_filters = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(0)
    image = np.concatenate([rng.normal(40, 8, 5000), rng.normal(120, 15, 3000)])
    ours, theirs = otsu_threshold(image), skimage_filters.threshold_otsu(image)
    bin_width = (image.max() - image.min()) / 256
    assert abs(ours - theirs) <= bin_width


def test_otsu_respects_a_mask_and_ignores_nan() -> None:
    image = np.array([0.0, 0.0, 100.0, 100.0, np.nan, 1000.0])
    mask = np.array([True, True, True, True, True, False])
    assert otsu_threshold(image, mask=mask) < 100


def test_constant_image_threshold_is_its_value_and_segments_nothing() -> None:
    image = np.full((4, 4), 7.0)
    assert otsu_threshold(image) == 7.0
    assert otsu_segmentation(image).sum() == 0


def test_band_threshold_is_inclusive() -> None:
    image = np.arange(6)
    np.testing.assert_array_equal(threshold(image, 2, 4), [False, False, True, True, True, False])
    assert threshold(image).all()
