"""PSNR and SSIM against scikit-image, hand-computed values and the rejected inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError, GeometryError
from medseg.metrics.image_quality import (
    border_crop,
    gaussian_window,
    psnr,
    ssim,
    ssim_map,
    ssim_torch,
)

skimage_metrics = pytest.importorskip("skimage.metrics")


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random(shape) * 3.0
    return x, x + 0.2 * rng.standard_normal(shape)


def _skimage_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    return skimage_metrics.structural_similarity(
        x,
        y,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
    )


@pytest.mark.parametrize("shape", [(40, 37), (12, 12), (14, 23, 19)])
def test_ssim_equals_scikit_image_in_2d_and_3d(shape: tuple[int, ...]) -> None:
    x, y = _pair(shape)
    assert ssim(x, y, data_range=3.0) == pytest.approx(_skimage_ssim(x, y, 3.0), abs=1e-6)


@pytest.mark.parametrize("shape", [(40, 37), (14, 23, 19)])
def test_psnr_equals_scikit_image(shape: tuple[int, ...]) -> None:
    x, y = _pair(shape, seed=1)
    expected = skimage_metrics.peak_signal_noise_ratio(x, y, data_range=3.0)
    assert psnr(x, y, data_range=3.0) == pytest.approx(expected, abs=1e-6)


def test_torch_inputs_give_the_numpy_result() -> None:
    x, y = _pair((30, 30), seed=2)
    tx, ty = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    assert ssim(tx, ty, data_range=3.0) == pytest.approx(ssim(x, y, data_range=3.0), abs=1e-5)
    assert psnr(tx, ty, data_range=3.0) == pytest.approx(psnr(x, y, data_range=3.0), abs=1e-4)


def test_psnr_hand_computed_and_identical_images_are_infinite() -> None:
    # MSE 0.01 with range 1: 10 log10(1 / 0.01) = 20 dB; range 10: 40 dB
    x, y = np.zeros((4, 4)), np.full((4, 4), 0.1)
    assert psnr(x, y, data_range=1.0) == pytest.approx(20.0)
    assert psnr(x, y, data_range=10.0) == pytest.approx(40.0)
    assert psnr(x, x, data_range=1.0) == math.inf


def test_psnr_mask_uses_only_the_masked_voxels() -> None:
    x, y = np.zeros((4, 4)), np.zeros((4, 4))
    y[0] = 0.1  # errors only in the first row
    mask = np.zeros((4, 4), bool)
    mask[0] = True
    assert psnr(x, y, data_range=1.0, mask=mask) == pytest.approx(20.0)
    assert psnr(x, y, data_range=1.0, mask=~mask) == math.inf
    assert math.isnan(psnr(x, y, data_range=1.0, mask=np.zeros((4, 4), bool)))


def test_ssim_mask_averages_the_map_inside_the_mask() -> None:
    x, y = _pair((24, 24), seed=3)
    mask = np.zeros((24, 24), bool)
    mask[3:10, 5:20] = True
    full = ssim_map(
        torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None], data_range=3.0
    )[0, 0].numpy()
    assert ssim(x, y, data_range=3.0, mask=mask) == pytest.approx(full[mask].mean(), abs=1e-12)


def test_ssim_of_an_image_with_itself_is_one_and_lower_with_noise() -> None:
    x, y = _pair((32, 32), seed=4)
    assert ssim(x, x, data_range=3.0) == pytest.approx(1.0)
    assert ssim(x, y, data_range=3.0) < 0.99


def test_window_follows_scikit_image_truncation() -> None:
    # truncate 3.5: radius int(3.5 * 1.5 + 0.5) = 5, an 11-tap window; sigma 1: radius 4
    assert gaussian_window(1.5).numel() == 11 and border_crop(1.5) == 5
    assert gaussian_window(1.0).numel() == 9
    assert float(gaussian_window(1.5).sum()) == pytest.approx(1.0)


def test_ssim_torch_is_differentiable_and_batched() -> None:
    x, y = _pair((2, 1, 20, 20), seed=5)
    pred = torch.from_numpy(y).requires_grad_(True)
    values = ssim_torch(pred, torch.from_numpy(x), data_range=3.0)
    assert values.shape == (2,)
    (1 - values.mean()).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert float(values[1].detach()) == pytest.approx(
        _skimage_ssim(x[1, 0], y[1, 0], 3.0), abs=1e-6
    )


@pytest.mark.parametrize("data_range", [None, 0.0, -1.0, math.nan, math.inf])
def test_a_missing_or_bad_data_range_is_refused(data_range: float | None) -> None:
    x, y = _pair((16, 16))
    with pytest.raises(ConfigError, match="data_range"):
        psnr(x, y, data_range=data_range)
    with pytest.raises(ConfigError, match="data_range"):
        ssim(x, y, data_range=data_range)


def test_data_range_is_never_guessed() -> None:
    x, y = _pair((16, 16))
    with pytest.raises(ConfigError, match="never guessed"):
        psnr(x, y)
    with pytest.raises(ConfigError, match="never guessed"):
        ssim(x, y)


def test_shape_mismatch_and_tiny_images_are_refused() -> None:
    with pytest.raises(GeometryError, match="differ in shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)), data_range=1.0)
    with pytest.raises(GeometryError, match="too small"):
        ssim(np.zeros((8, 30)), np.zeros((8, 30)), data_range=1.0)
    with pytest.raises(GeometryError, match="mask"):
        ssim(np.zeros((12, 12)), np.zeros((12, 12)), data_range=1.0, mask=np.ones((3, 3)))
