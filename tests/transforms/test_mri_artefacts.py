"""MRI k-space artefacts against NumPy FFT references computed here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.transforms.base import Compose
from medseg.transforms.mri_artefacts import (
    RandomGhosting,
    RandomMotion,
    RandomSpike,
    RandomSusceptibility,
    ghosting,
    motion,
    spike,
    susceptibility,
)
from medseg.transforms.presets_mri import mri_artefacts


def blob(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A smooth positive image: a few Gaussian blobs on a constant background."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    out = np.full(shape, 0.1)
    for _ in range(3):
        centre = rng.uniform(0.3, 0.7, len(shape)) * np.asarray(shape)
        squared = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
        out += rng.uniform(0.5, 1.0) * np.exp(-squared / (2 * 3.0**2))
    return out


def shifted_kspace(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fftn(x))


@pytest.mark.parametrize("shape", [(16, 20), (8, 12, 10)])
def test_zero_motion_is_identity(shape):
    x = torch.from_numpy(blob(shape))[None, None].float() * 3 - 1  # negative values too
    unchanged, _ = RandomMotion(degrees=0.0, translation=0.0, p=1.0, seed=0)(x)
    assert torch.equal(unchanged, x)
    dims = len(shape)
    planes = dims * (dims - 1) // 2
    forced = motion(x[0], torch.zeros(2, planes), torch.zeros(2, dims), torch.tensor([0.3, 0.6]), 0)
    torch.testing.assert_close(forced, x[0], atol=1e-5, rtol=0)


def test_motion_mixes_kspace_lines_of_the_moved_copies():
    x = blob((16, 16))
    low = x.min()  # the artefact is simulated on x - min (non-negative), then shifted back
    # one copy translated by 3 voxels along x (an exact integer shift, zero fill)
    moved = np.zeros_like(x)
    moved[:, 3:] = x[:, :-3] - low
    out = motion(
        torch.from_numpy(x)[None],
        torch.zeros(1, 1, dtype=torch.float64),
        torch.tensor([[0.0, 3.0]], dtype=torch.float64),
        torch.tensor([0.5], dtype=torch.float64),
        axis=0,
    )[0].numpy()
    mixed = shifted_kspace(x - low)
    mixed[8:] = shifted_kspace(moved)[8:]  # lines 8..15 along axis 0 from the moved copy
    expected = np.abs(np.fft.ifftn(np.fft.ifftshift(mixed))) + low
    np.testing.assert_allclose(out, expected, atol=1e-9)
    assert np.abs(out - x).max() > 0.05


def test_ghosting_changes_exactly_the_lines_at_multiples_of_n():
    x = blob((24, 20), seed=1)
    n, a = 4, 0.7
    out = ghosting(torch.from_numpy(x)[None], n, 0, a, restore=0.0)[0].numpy()
    ratio = shifted_kspace(out) / shifted_kspace(x)
    f = np.arange(24) - 12
    np.testing.assert_allclose(ratio[f % n == 0], 1 - a, atol=1e-8)
    np.testing.assert_allclose(ratio[f % n != 0], 1.0, atol=1e-8)
    # restore keeps the centre line (f == 0) and so the mean intensity
    kept = ghosting(torch.from_numpy(x)[None], n, 0, a, restore=0.02)[0].numpy()
    assert kept.mean() == pytest.approx(x.mean(), abs=1e-9)
    assert out.mean() == pytest.approx(x.mean() * (1 - a), abs=1e-9)


def test_ghosts_appear_at_fov_over_n_shifts():
    x = np.zeros((32, 8))
    x[5, 3] = 1.0
    n, a = 4, 0.8
    out = ghosting(torch.from_numpy(x)[None], n, 0, a, restore=0.0)[0].numpy()
    expected = x.copy()
    for j in range(n):  # x - a / n * sum_j roll(x, j * 32 / n)
        expected -= a / n * np.roll(x, j * 32 // n, axis=0)
    np.testing.assert_allclose(out, expected, atol=1e-12)
    assert {r for r, c in zip(*np.nonzero(np.abs(out) > 1e-9), strict=True)} == {5, 13, 21, 29}


def test_spike_adds_exactly_the_chosen_kspace_energy():
    x = blob((12, 16), seed=2)
    amplitude, phase, k = 0.3, 0.7, (2, -5)
    out = spike(
        torch.from_numpy(x)[None],
        torch.tensor([k]),
        torch.tensor([amplitude], dtype=torch.float64),
        torch.tensor([phase], dtype=torch.float64),
    )[0].numpy()
    delta = shifted_kspace(out) - shifted_kspace(x)
    dc = (x - x.min()).sum()
    value = amplitude * dc * np.exp(1j * phase)
    i, j = 6 + k[0], 8 + k[1]
    assert delta[i, j] == pytest.approx(value, abs=1e-8)
    assert delta[12 - i, 16 - j] == pytest.approx(np.conj(value), abs=1e-8)
    delta[i, j] = delta[12 - i, 16 - j] = 0
    assert np.abs(delta).max() < 1e-8
    # stripes: the plane wave 2 a DC / N cos(2 pi k.r / n + phi) over the whole image
    r0, r1 = np.meshgrid(np.arange(12), np.arange(16), indexing="ij")
    wave = np.cos(2 * np.pi * (k[0] * r0 / 12 + k[1] * r1 / 16) + phase)
    np.testing.assert_allclose(out - x, 2 * amplitude * dc / x.size * wave, atol=1e-10)


def test_susceptibility_zero_strength_identity_and_conserves_intensity():
    x = torch.from_numpy(blob((40, 40), seed=3))[None]
    assert torch.equal(susceptibility(x, [20.0, 20.0], 6.0, 0.0, 0), x)
    out = susceptibility(x, [20.0, 20.0], 6.0, 4.0, 0)  # |s| / sigma = 0.67 < 1.6
    assert out.sum().item() == pytest.approx(x.sum().item(), rel=0.01)
    assert (out - x).abs().max() > 0.05  # but the image is distorted
    unchanged, _ = RandomSusceptibility(strength=(0.0, 0.0), seed=0)(x[None].float())
    assert torch.equal(unchanged, x[None].float())


def test_susceptibility_pile_up_follows_the_jacobian():
    x = torch.ones(1, 41, 9, dtype=torch.float64)
    out = susceptibility(x, [20.0, 4.0], 5.0, 3.0, 0)[0, :, 4].numpy()
    r = np.arange(41) - 20.0
    jacobian = 1 - 3.0 * np.exp(-(r**2) / 50) * r / 25
    np.testing.assert_allclose(out, jacobian, atol=1e-6)  # a constant image shows the Jacobian


@pytest.mark.parametrize(
    "transform",
    [
        RandomMotion(p=1.0),
        RandomGhosting(p=1.0),
        RandomSpike(p=1.0, num_spikes=(1, 3)),
        RandomSusceptibility(p=1.0),
    ],
    ids=lambda t: type(t).__name__,
)
@pytest.mark.parametrize("shape", [(16, 16), (8, 12, 10)])
def test_label_untouched_shape_and_seed(transform, shape):
    generator = torch.Generator().manual_seed(5)
    image = torch.rand(2, 2, *shape, generator=generator)
    label = torch.randint(0, 3, (2, 1, *shape), generator=generator)
    first = transform(image, label, generator=torch.Generator().manual_seed(1))
    second = transform(image, label, generator=torch.Generator().manual_seed(1))
    assert first[1] is label
    assert first[0].shape == image.shape and first[0].dtype == image.dtype
    assert torch.equal(first[0], second[0])
    assert not torch.equal(first[0], image)
    assert torch.isfinite(first[0]).all()


def test_probability_zero_and_channels():
    image = torch.rand(3, 2, 16, 16)
    assert torch.equal(RandomGhosting(p=0.0, seed=0)(image)[0], image)
    out, _ = RandomSpike(p=1.0, channels=[1], seed=0)(image)
    assert torch.equal(out[:, 0], image[:, 0]) and not torch.equal(out[:, 1], image[:, 1])


def test_preset_runs_and_holds_the_artefacts():
    pipeline = mri_artefacts(3, seed=0)
    assert isinstance(pipeline, Compose)
    names = [type(t).__name__ for t in pipeline.transforms]
    assert names[:3] == ["RandomMotion", "RandomGhosting", "RandomSpike"]
    assert "RandomSpatial" in names and math.isclose(pipeline.transforms[0].p, 0.1)
    always = mri_artefacts(3, p=1.0, seed=0)
    image, label = always(torch.rand(2, 1, 12, 12, 12), torch.zeros(2, 1, 12, 12, 12))
    assert image.shape == (2, 1, 12, 12, 12) and torch.isfinite(image).all()
