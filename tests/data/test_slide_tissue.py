"""Tissue masks of whole-slide images: Dice against a phantom's exact tissue, pen marks and
glass excluded, small pieces removed by physical area, Otsu against scikit-image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.data.phantoms_slide import phantom_slide, tissue_mask_truth
from medseg.data.slide_array import ArraySlide
from medseg.data.slide_tissue import otsu_threshold, rgb_to_hsv, tissue_mask
from medseg.errors import ConfigError
from medseg.io.slide import open_slide


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory):
    # mpp 2: a 2 x 3 mm slide, its tissue pieces well above the 0.05 mm^2 minimum
    path = tmp_path_factory.mktemp("tissue") / "a.tif"
    return phantom_slide(path, size=(1024, 1536), mpp=2.0, seed=1)


@pytest.mark.parametrize("max_size", [384, 768])
def test_tissue_mask_of_a_phantom_matches_its_truth(phantom, max_size: int) -> None:
    with open_slide(phantom.path) as slide:
        mask, downsample = tissue_mask(slide, max_size=max_size)
    truth = tissue_mask_truth(phantom, downsample)
    assert mask.shape == truth.shape and max(mask.shape) == max_size
    assert downsample == pytest.approx(1536 / max_size)
    assert _dice(mask, truth) > 0.95
    assert 0.05 < truth.mean() < 0.95  # both glass and tissue present


def test_shifted_stain_still_matches(tmp_path: Path) -> None:
    info = phantom_slide(tmp_path / "b.tif", size=(768, 768), mpp=2.0, seed=2, stain="shifted")
    with open_slide(info.path) as slide:
        mask, downsample = tissue_mask(slide, max_size=384)
    assert _dice(mask, tissue_mask_truth(info, downsample)) > 0.95


def _glass_with_tissue() -> np.ndarray:
    """A white slide (at mpp 4 a pixel is 16 µm^2) with a pink square of 100 x 100 pixels
    (0.16 mm^2)."""
    image = np.full((200, 300, 3), 240, np.uint8)
    image[50:150, 50:150] = (220, 120, 170)  # eosin pink
    return image


def test_black_and_green_pen_marks_are_not_tissue() -> None:
    image = _glass_with_tissue()
    image[5:45, 170:295] = (10, 10, 15)  # black marker, 0.08 mm^2
    image[60:190, 190:290] = (40, 160, 60)  # green pen, 0.21 mm^2
    mask, downsample = tissue_mask(ArraySlide(image, mpp=4.0), max_size=300)
    assert downsample == 1.0
    expected = np.zeros(mask.shape, bool)
    expected[50:150, 50:150] = True
    np.testing.assert_array_equal(mask, expected)


def test_pen_is_kept_when_pen_hues_are_switched_off() -> None:
    image = _glass_with_tissue()
    image[60:190, 190:290] = (40, 160, 60)
    mask, _ = tissue_mask(ArraySlide(image, mpp=4.0), max_size=300, pen_hue_deg=None)
    assert mask[140, 215]


def test_pieces_under_the_minimum_area_in_mm2_are_removed() -> None:
    image = _glass_with_tissue()
    image[170:180, 250:260] = (220, 120, 170)  # 100 px of 16 µm^2 = 0.0016 mm^2
    slide = ArraySlide(image, mpp=4.0)
    kept, _ = tissue_mask(slide, max_size=300, min_area_mm2=0.0)
    assert kept[175, 255]
    default, _ = tissue_mask(slide, max_size=300)  # 0.05 mm^2
    assert not default[175, 255] and default[100, 100]
    # the square is 0.16 mm^2: kept under 0.15 mm^2, removed under 0.17 mm^2
    assert tissue_mask(slide, max_size=300, min_area_mm2=0.15)[0][100, 100]
    assert not tissue_mask(slide, max_size=300, min_area_mm2=0.17)[0].any()


def test_holes_inside_tissue_are_filled() -> None:
    image = _glass_with_tissue()
    image[90:110, 90:110] = 240  # a lumen of glass inside the square
    slide = ArraySlide(image, mpp=4.0)
    assert tissue_mask(slide, max_size=300)[0][100, 100]
    assert not tissue_mask(slide, max_size=300, fill_holes=False)[0][100, 100]


def test_a_slide_of_only_glass_has_no_tissue() -> None:
    rng = np.random.default_rng(0)
    glass = (235 + rng.integers(0, 8, (64, 64, 3))).astype(np.uint8)
    assert not tissue_mask(ArraySlide(glass, mpp=1.0))[0].any()


def test_a_slide_without_mpp_asks_for_it() -> None:
    with pytest.raises(ConfigError, match="microns per pixel.*--mpp"):
        tissue_mask(ArraySlide(_glass_with_tissue(), mpp=None))
    mask, _ = tissue_mask(ArraySlide(_glass_with_tissue(), mpp=None), min_area_mm2=0)
    assert mask.any()


def test_a_label_slide_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs an RGB slide"):
        tissue_mask(ArraySlide(np.zeros((8, 8), np.uint8), mpp=1.0, is_label=True))


def test_otsu_threshold_matches_scikit_image() -> None:
    filters = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(1)
    for shift in (0.3, 0.5, 0.7):
        values = np.concatenate([rng.normal(0.1, 0.05, 3000), rng.normal(shift, 0.1, 800)])
        assert otsu_threshold(values) == pytest.approx(filters.threshold_otsu(values), abs=1e-12)
    assert otsu_threshold(np.full(10, 0.25)) == 0.25


def test_hsv_matches_scikit_image() -> None:
    color = pytest.importorskip("skimage.color")
    rgb = np.random.default_rng(2).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    hue, sat, value = rgb_to_hsv(rgb)
    reference = color.rgb2hsv(rgb)
    np.testing.assert_allclose(sat, reference[..., 1], atol=1e-5)
    np.testing.assert_allclose(value, reference[..., 2], atol=1e-5)
    np.testing.assert_allclose(hue / 360.0, reference[..., 0], atol=1e-5)
