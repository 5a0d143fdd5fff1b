"""MRI artefacts as robustness perturbations: registered, identity at severity 0, seeded,
monotone in the severity, usable by ``medseg.evaluation.robustness``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.transforms.degrade import (
    PERTURBATIONS,
    degrade,
    level_severity,
    perturbation_parameter,
)

MRI = ["motion", "ghosting", "spike", "susceptibility"]


def _image(spatial_dims: int) -> np.ndarray:
    """A positive image with a bright box and texture: ``(1, *spatial)`` float32."""
    rng = np.random.default_rng(3)
    shape = (16, 20, 18) if spatial_dims == 3 else (40, 36)
    image = 1.0 + 0.3 * rng.random(shape)
    box = tuple(slice(n // 4, 3 * n // 4) for n in shape)
    image[box] += 2.0
    return image[None].astype(np.float32)


def test_registered_with_their_parameters():
    assert set(MRI) <= set(PERTURBATIONS.names())
    assert perturbation_parameter("motion", 0.5) == pytest.approx(4.0)
    assert perturbation_parameter("ghosting", 1.0) == pytest.approx(0.8)
    assert perturbation_parameter("spike", 0.25) == pytest.approx(0.1)
    assert perturbation_parameter("susceptibility", 1.0) == pytest.approx(6.0)


@pytest.mark.parametrize("name", MRI)
@pytest.mark.parametrize("dims", [2, 3])
def test_severity_monotone_seeded_identity_at_zero(name, dims):
    image = _image(dims)
    spacing = (1.0,) * dims
    errors = []
    for level in range(5):
        out = degrade(
            image, spacing, name, severity=level_severity(level), rng=np.random.default_rng(11)
        )
        assert out.shape == image.shape and out.dtype == image.dtype
        errors.append(float(np.abs(out - image).mean()))
    assert errors[0] == 0.0
    assert all(b > a for a, b in zip(errors, errors[1:], strict=False)), errors
    again = degrade(image, spacing, name, severity=0.75, rng=np.random.default_rng(11))
    other = degrade(image, spacing, name, severity=0.75, rng=np.random.default_rng(12))
    last = degrade(image, spacing, name, severity=0.75, rng=np.random.default_rng(11))
    assert np.array_equal(again, last) and not np.array_equal(again, other)


def test_tensor_in_tensor_out_and_spacing_scales_motion():
    image = torch.from_numpy(_image(2))
    out = degrade(image, (1.0, 1.0), "motion", severity=1.0, rng=np.random.default_rng(0))
    assert isinstance(out, torch.Tensor) and out.shape == image.shape
    # the same motion in mm is fewer voxels on a coarser grid: a smaller change
    coarse = degrade(image, (4.0, 4.0), "motion", severity=1.0, rng=np.random.default_rng(0))
    fine_error = (out - image).abs().mean()
    assert (coarse - image).abs().mean() < fine_error


def test_robustness_accepts_the_mri_perturbations():
    from medseg.evaluation.robustness import _check_options

    names = _check_options(MRI, levels=3, cases=None, jobs=1, seed=0)
    assert names == tuple(MRI)
