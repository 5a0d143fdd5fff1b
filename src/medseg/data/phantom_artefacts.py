"""Imaging effects applied to a clean phantom: partial volume, bias field, streaks, noise.

Each effect is a small function on arrays; the random ones take their own
``numpy.random.Generator`` so that switching one effect on or off leaves the others of a
seed unchanged. Intensities are in arbitrary units where air is 0 and soft tissue 0.5 (see
``medseg.data.phantoms.TISSUE_LEVELS``); grid coordinates are mm from the centre of the field
of view (``medseg.data.phantom_shapes.grid_axes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

NoiseKind = Literal["gaussian", "rician", "speckle"]
NOISE_KINDS: tuple[str, ...] = ("gaussian", "rician", "speckle")


# ---------------------------------------------------------------- partial volume


def supersample_factors(spacing: Sequence[float], supersample: int) -> tuple[int, ...]:
    """Sub-samples per voxel and axis for rendering partial-volume effects.

    The finest axis gets ``supersample`` sub-samples and coarser axes proportionally more
    (rounded), so sub-voxels are roughly isotropic and a thick slice averages everything it
    covers. ``supersample == 1`` means point sampling (no partial volume).

    Example:
        >>> supersample_factors((2.0, 1.0, 1.0), 2)
        (4, 2, 2)
    """
    if supersample == 1:
        return (1,) * len(spacing)
    finest = min(spacing)
    return tuple(supersample * max(1, round(s / finest)) for s in spacing)


def block_mean(array: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Average non-overlapping blocks: ``(n0 * f0, n1 * f1, ...)`` -> ``(n0, n1, ...)``."""
    if all(f == 1 for f in factors):
        return array
    return array.reshape(_split_shape(array.shape, factors)).mean(axis=_block_axes(factors))


def block_majority(labels: np.ndarray, factors: Sequence[int], num_values: int) -> np.ndarray:
    """Most frequent label per block; ties go to the higher label value.

    Ties go up so that small structures painted over large ones (a lesion on its organ)
    are not eroded by the vote.

    Args:
        labels: ``(n0 * f0, ...)`` integer labels in ``[0, num_values)``.
        factors: block size per axis.
        num_values: number of label values (background included).

    Returns:
        ``(n0, n1, ...)`` uint8 labels.
    """
    if all(f == 1 for f in factors):
        return labels.astype(np.uint8)
    blocks = labels.reshape(_split_shape(labels.shape, factors))
    axes = _block_axes(factors)
    best = np.zeros(blocks.sum(axis=axes, dtype=np.int32).shape, dtype=np.uint8)
    best_count = np.full(best.shape, -1, dtype=np.int32)
    for value in range(num_values):
        count = (blocks == value).sum(axis=axes, dtype=np.int32)
        better = count >= best_count  # >= : a later (higher) value wins a tie
        best[better] = value
        best_count[better] = count[better]
    return best


def _split_shape(shape: Sequence[int], factors: Sequence[int]) -> tuple[int, ...]:
    return tuple(v for n, f in zip(shape, factors, strict=True) for v in (n // f, f))


def _block_axes(factors: Sequence[int]) -> tuple[int, ...]:
    return tuple(range(1, 2 * len(factors), 2))


# ---------------------------------------------------------------- bias field


def bias_field(
    rng: np.random.Generator, axes: Sequence[np.ndarray], fov_mm: Sequence[float], strength: float
) -> np.ndarray:
    """A smooth multiplicative field ``exp(strength * s(x))`` with ``max |s| = 1`` on the grid.

    ``s`` is a sum of four random plane cosines with wavelengths of 1.5-3 times the field of
    view, i.e. at most one slow oscillation across the image, like an MRI receive-coil
    inhomogeneity (Sled et al., 1998, model the bias as smooth and multiplicative).

    Args:
        rng: the case's bias random generator.
        axes: per-axis physical coordinates (mm) of the grid.
        fov_mm: ``(D,)`` field of view in mm.
        strength: the largest ``|log field|``; the field lies in
            ``[exp(-strength), exp(strength)]``. ``0`` gives a field of ones.

    Returns:
        ``(*shape)`` float32 field, positive.
    """
    shape = tuple(a.size for a in axes)
    if strength == 0:
        return np.ones(shape, dtype=np.float32)
    size = float(max(fov_mm))
    coords = np.ix_(*axes)
    s = np.zeros(shape, dtype=np.float32)
    for _ in range(4):
        direction = rng.normal(size=len(axes))
        direction /= max(np.linalg.norm(direction), 1e-12)
        wavelength = rng.uniform(1.5, 3.0) * size
        phase = sum(
            np.float32(2 * np.pi * d / wavelength) * c
            for d, c in zip(direction, coords, strict=True)
        )
        s += np.float32(rng.uniform(0.5, 1.0)) * np.cos(
            phase + np.float32(rng.uniform(0, 2 * np.pi))
        )
    s /= max(float(np.abs(s).max()), 1e-6)
    return np.exp(np.float32(strength) * s).astype(np.float32)


# ---------------------------------------------------------------- streak artefacts


def streaks(rng: np.random.Generator, axes: Sequence[np.ndarray], strength: float) -> np.ndarray:
    """Additive CT-like streaks: bright and dark lines radiating from a "metal" point.

    Four to eight lines in the plane of the last two axes pass through one random point
    near the centre, each with a Gaussian cross-section 0.6-1.2 mm wide (sigma) and an
    amplitude of ``strength * U(0.5, 1)`` with a random sign. In 3D the streaks fade with
    the distance from the metal's slice (Gaussian, sigma 20 % of the z extent), as metal
    artefacts do in axial CT.

    Args:
        rng: the case's streak random generator.
        axes: per-axis physical coordinates (mm) of the grid.
        strength: peak amplitude in intensity units (tissue is 0.5); ``0`` gives zeros.

    Returns:
        ``(*shape)`` float32 additive pattern.
    """
    shape = tuple(a.size for a in axes)
    pattern = np.zeros(shape, dtype=np.float32)
    if strength == 0:
        return pattern
    coords = np.ix_(*axes)
    extent = [float(a[-1] - a[0]) + 1e-6 for a in axes]
    metal = [rng.uniform(-0.25, 0.25) * e for e in extent]
    envelope = np.float32(1.0)
    for c, m, e in zip(coords[:-2], metal[:-2], extent[:-2], strict=True):  # slice axes (3D)
        envelope = envelope * np.exp(-0.5 * ((c - np.float32(m)) / np.float32(0.2 * e)) ** 2)
    y, x = coords[-2] - np.float32(metal[-2]), coords[-1] - np.float32(metal[-1])
    for _ in range(int(rng.integers(4, 9))):
        angle = rng.uniform(0, np.pi)
        distance = y * np.float32(np.cos(angle)) - x * np.float32(np.sin(angle))
        width = rng.uniform(0.6, 1.2)
        amplitude = strength * rng.uniform(0.5, 1.0) * rng.choice((-1.0, 1.0))
        pattern += np.float32(amplitude) * np.exp(-0.5 * (distance / np.float32(width)) ** 2)
    return (pattern * envelope).astype(np.float32)


# ---------------------------------------------------------------- noise


def add_noise(
    image: np.ndarray, rng: np.random.Generator, *, kind: NoiseKind, std: float
) -> np.ndarray:
    """Return ``image`` with acquisition noise (the input is not modified).

    - ``gaussian``: ``I + std * n``; additive, as in CT and high-SNR MRI.
    - ``rician``: ``sqrt((I + std * n1)^2 + (std * n2)^2)``; the magnitude of complex MRI
      data with Gaussian noise in both channels. Non-negative, and biased upwards where the
      signal is low: pure air has mean ``std * sqrt(pi / 2)`` (Gudbjartsson & Patz, 1995).
    - ``speckle``: ``I * g`` with ``g ~ Gamma(1 / std^2, std^2)`` (mean 1, std ``std``);
      multiplicative, as in ultrasound, so air stays 0 and bright tissue is noisiest.

    Args:
        image: ``(*shape)`` clean intensities.
        rng: the case's noise random generator.
        kind: one of ``NOISE_KINDS``.
        std: noise standard deviation in intensity units (relative for speckle); ``0``
            returns a copy of ``image``.

    Returns:
        ``(*shape)`` float32 noisy image.
    """
    image = image.astype(np.float32, copy=True)
    if std == 0:
        return image
    if kind == "gaussian":
        return image + np.float32(std) * rng.standard_normal(image.shape, dtype=np.float32)
    if kind == "rician":
        real = image + np.float32(std) * rng.standard_normal(image.shape, dtype=np.float32)
        imag = np.float32(std) * rng.standard_normal(image.shape, dtype=np.float32)
        return np.sqrt(real * real + imag * imag)
    if kind == "speckle":
        gain = rng.gamma(1.0 / std**2, std**2, image.shape).astype(np.float32)
        return image * gain
    raise ValueError(f"noise must be one of {NOISE_KINDS}, got {kind!r}")
