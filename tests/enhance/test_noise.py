"""Noise models: their statistics match the textbook distributions; the spec parser."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from medseg.enhance.noise import (
    NOISE_MODELS,
    NoiseSpec,
    gaussian,
    parse_noise,
    poisson_gaussian,
    rician,
    speckle,
)
from medseg.errors import ConfigError

N = 200_000


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_gaussian_noise_has_the_asked_standard_deviation_relative_to_the_range() -> None:
    image = np.zeros(N, np.float32)
    image[0] = 4.0  # range 4: sigma = 0.05 * 4 = 0.2
    noisy = gaussian(image, 0.05, _rng())
    residual = (noisy - image)[1:]
    assert residual.std() == pytest.approx(0.2, rel=0.01)
    assert abs(residual.mean()) < 0.002


def test_rician_noise_of_zero_signal_is_rayleigh_with_mean_sigma_sqrt_pi_over_2() -> None:
    sigma = 0.1
    noisy = rician(np.zeros(N), sigma, _rng(1), data_range=1.0)
    assert noisy.min() >= 0
    assert noisy.mean() == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.01)
    # the whole distribution, not just the mean: Kolmogorov-Smirnov against Rayleigh(sigma)
    assert stats.kstest(noisy[:20_000], stats.rayleigh(scale=sigma).cdf).pvalue > 0.01


def test_rician_noise_of_a_strong_signal_is_nearly_gaussian() -> None:
    # A = 10 sigma: mean ~ sqrt(A^2 + sigma^2), std ~ sigma
    noisy = rician(np.full(N, 1.0), 0.1, _rng(2), data_range=1.0)
    assert noisy.mean() == pytest.approx(math.sqrt(1.0 + 0.01), rel=0.002)
    assert noisy.std() == pytest.approx(0.1, rel=0.02)


def test_poisson_gaussian_variance_grows_linearly_with_the_signal() -> None:
    level, span = 0.05, 1.0
    gain = level**2 * span
    for signal in (0.0, 0.5, 1.0):
        image = np.full(N, signal)
        image[0], image[1] = 0.0, 1.0  # fixes min 0 and range 1
        noisy = poisson_gaussian(image, level, _rng(3))[2:]
        expected = gain * signal + (level * span) ** 2
        assert noisy.var() == pytest.approx(expected, rel=0.03)
        assert noisy.mean() == pytest.approx(signal, abs=0.002)


def test_speckle_is_multiplicative() -> None:
    noisy = speckle(np.full(N, 2.0), 0.1, _rng(4))
    assert noisy.std() == pytest.approx(0.2, rel=0.02)
    assert np.all(speckle(np.zeros(100), 0.3, _rng(5)) == 0)


def test_models_keep_shape_and_input_and_are_seeded() -> None:
    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    before = image.copy()
    for model in NOISE_MODELS.values():
        a, b = model(image, 0.05, _rng(7)), model(image, 0.05, _rng(7))
        assert a.shape == image.shape and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, model(image, 0.05, _rng(8)))
    np.testing.assert_array_equal(image, before)


def test_parse_noise_reads_model_and_level() -> None:
    assert parse_noise("rician:0.05") == NoiseSpec("rician", 0.05)
    assert parse_noise(" Gaussian:0.1 ") == NoiseSpec("gaussian", 0.1)
    assert str(parse_noise("poisson_gaussian:0.02")) == "poisson_gaussian:0.02"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pink:0.1", "model one of"),
        ("rician", "model one of"),
        ("rician:abc", "not a number"),
        ("rician:-0.1", r"\[0, 1\]"),
        ("rician:nan", r"\[0, 1\]"),
        ("rician:5", r"\[0, 1\]"),
    ],
)
def test_parse_noise_rejects_bad_specs(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_noise(text)


def test_a_constant_image_without_a_data_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="data range"):
        rician(np.ones((4, 4)), 0.05, _rng())
