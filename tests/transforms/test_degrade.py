"""Image degradations for robustness tests: identity at level 0, growing with the level,
seeded, N-D, on NumPy arrays and torch tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.transforms.degrade import (
    PERTURBATIONS,
    degrade,
    level_severity,
    perturbation_parameter,
)

NAMES = ["noise", "bias", "blur", "lowres", "contrast"]
SEVERITIES = [level_severity(level) for level in range(5)]


def _image(spatial_dims: int) -> np.ndarray:
    """A positive image with edges and texture: ``(1, *spatial)`` float32."""
    rng = np.random.default_rng(7)
    shape = (12, 16, 16) if spatial_dims == 3 else (32, 32)
    image = 1.0 + rng.random(shape)
    box = tuple(slice(n // 4, 3 * n // 4) for n in shape)
    image[box] += 2.0
    return image[None].astype(np.float32)


def _high_frequency_energy(image: np.ndarray) -> float:
    """Energy of the image minus its 1-voxel Gaussian smoothing (its fine detail)."""
    return float(((image - ndimage.gaussian_filter(image, 1.0)) ** 2).sum())


def test_the_registry_holds_the_nine_perturbations() -> None:
    assert sorted(PERTURBATIONS.names()) == sorted(
        [*NAMES, "motion", "ghosting", "spike", "susceptibility"]
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_level_zero_is_the_identity_copy(name: str, spatial_dims: int) -> None:
    image = _image(spatial_dims)
    spacing = (1.0,) * spatial_dims
    out = degrade(image, spacing, name, severity=0.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, image)
    assert out is not image and not np.shares_memory(out, image)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_the_change_grows_with_the_level(name: str, spatial_dims: int) -> None:
    image = _image(spatial_dims)
    spacing = (1.0,) * spatial_dims
    changes = [
        float(
            np.abs(
                degrade(image, spacing, name, severity=s, rng=np.random.default_rng(1)) - image
            ).mean()
        )
        for s in SEVERITIES
    ]
    assert changes[0] == 0.0
    assert all(a < b for a, b in zip(changes, changes[1:], strict=False)), changes


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_noise_std_is_the_level_fraction_of_the_robust_range(spatial_dims: int) -> None:
    image = _image(spatial_dims)
    spacing = (1.0,) * spatial_dims
    robust_range = np.percentile(image, 99.5) - np.percentile(image, 0.5)
    for severity in SEVERITIES[1:]:
        noise = degrade(image, spacing, "noise", severity=severity, rng=np.random.default_rng(2))
        expected = perturbation_parameter("noise", severity) * robust_range
        assert np.std(noise - image) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("name", ["blur", "lowres"])
def test_blur_and_low_resolution_remove_fine_detail_level_by_level(name: str) -> None:
    image = _image(2)
    energies = [
        _high_frequency_energy(
            degrade(image, (1.0, 1.0), name, severity=s, rng=np.random.default_rng(0))[0]
        )
        for s in SEVERITIES
    ]
    assert all(a > b for a, b in zip(energies, energies[1:], strict=False)), energies


def test_blur_sigma_is_in_mm_and_matches_scipy() -> None:
    image = _image(2)[0]
    spacing = (2.0, 0.5)
    out = degrade(image, spacing, "blur", severity=0.5, rng=np.random.default_rng(0))
    sigma_mm = perturbation_parameter("blur", 0.5)  # 1 mm: 0.5 voxel along axis 0, 2 along 1
    expected = ndimage.gaussian_filter(
        image, (sigma_mm / 2.0, sigma_mm / 0.5), mode="nearest", truncate=3.0
    )
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_bias_field_gain_stays_within_its_level() -> None:
    image = np.ones((1, 24, 24), np.float32)
    out = degrade(image, (1.0, 1.0), "bias", severity=1.0, rng=np.random.default_rng(3))
    log_gain = np.log(out)
    # the centred log-field is scaled so that its largest gain is exactly the level's
    assert np.abs(log_gain).max() == pytest.approx(perturbation_parameter("bias", 1.0), rel=1e-4)
    assert log_gain.std() > 0.01  # a field, not a constant


def test_contrast_keeps_the_range_and_applies_the_gamma() -> None:
    image = np.linspace(0.0, 4.0, 9, dtype=np.float32).reshape(1, 9)
    out = degrade(image, (1.0,), "contrast", severity=1.0, rng=np.random.default_rng(0))
    gamma = perturbation_parameter("contrast", 1.0)
    np.testing.assert_allclose(out, (image / 4.0) ** gamma * 4.0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_image(name: str) -> None:
    image = _image(3)
    first = degrade(image, (2.0, 1.0, 1.0), name, severity=0.75, rng=np.random.default_rng(5))
    again = degrade(image, (2.0, 1.0, 1.0), name, severity=0.75, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(first, again)


def test_random_perturbations_differ_with_the_seed() -> None:
    image = _image(2)
    for name in ("noise", "bias"):
        a = degrade(image, (1.0, 1.0), name, severity=1.0, rng=np.random.default_rng(0))
        b = degrade(image, (1.0, 1.0), name, severity=1.0, rng=np.random.default_rng(1))
        assert not np.array_equal(a, b)


def test_channelless_tensors_and_integer_images_are_accepted() -> None:
    tensor = torch.from_numpy(_image(2)[0])
    out = degrade(tensor, (1.0, 1.0), "blur", severity=1.0, rng=np.random.default_rng(0))
    assert isinstance(out, torch.Tensor) and out.shape == tensor.shape
    integer = (np.arange(64).reshape(8, 8) * 10).astype(np.int16)
    out = degrade(integer, (1.0, 1.0), "noise", severity=0.5, rng=np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == integer.shape


def test_the_lowres_factor_grows_geometrically_to_four() -> None:
    factors = [perturbation_parameter("lowres", s) for s in SEVERITIES]
    np.testing.assert_allclose(factors, [1.0, 2**0.5, 2.0, 2**1.5, 4.0])


def test_bad_names_severities_and_shapes_are_refused() -> None:
    image = _image(2)
    with pytest.raises(ConfigError, match="noise"):
        degrade(image, (1.0, 1.0), "nosie", severity=0.5, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="severity"):
        degrade(image, (1.0, 1.0), "noise", severity=1.5, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="spacing"):
        degrade(image, (1.0, 1.0, 1.0, 1.0), "noise", severity=0.5, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="levels"):
        level_severity(0, 1)
