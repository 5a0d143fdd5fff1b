"""Noise models for denoising experiments, with a level relative to the data range.

Every model is ``model(image, level, generator, *, data_range=None) -> noisy image``
(float32, same shape; the input is never changed). ``level`` is a fraction of the data range
``R`` (default: the clean image's ``max - min``), so ``rician:0.05`` means a noise standard
deviation of 5 % of the range whatever the scanner's units:

* ``gaussian``: ``x + n``, ``n ~ N(0, (level R)^2)`` (CT, additive thermal noise);
* ``rician``: ``sqrt((x + n1)^2 + n2^2)``, ``n1, n2 ~ N(0, (level R)^2)``: the magnitude of
  a complex MR signal with Gaussian noise on both channels (Gudbjartsson & Patz 1995). Where
  the signal is zero it is Rayleigh with mean ``level R sqrt(pi / 2)``; it biases dark
  regions upwards. Assumes a non-negative magnitude image;
* ``poisson_gaussian``: ``a Poisson(max(x, 0) / a) + min(x, 0) + n`` with gain
  ``a = level^2 R`` (the Poisson part's standard deviation at intensity ``R`` equals
  ``level R``) plus Gaussian ``n ~ N(0, (level R)^2)`` (photon counting + read-out noise:
  X-ray, PET, microscopy; Foi et al. 2008). Voxel-wise, so a crop gets the noise the whole
  image would; negative intensities get only the Gaussian part;
* ``speckle``: ``x (1 + n)``, ``n ~ N(0, level^2)``: multiplicative (ultrasound, OCT).

A spec string ``"<model>:<level>"`` (``"rician:0.05"``) is read by :func:`parse_noise`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medseg.errors import ConfigError

NoiseModel = Callable[..., np.ndarray]


def _range(image: np.ndarray, data_range: float | None) -> float:
    if data_range is None:
        data_range = float(image.max() - image.min()) if image.size else 0.0
    if not (math.isfinite(data_range) and data_range > 0):
        raise ConfigError(
            f"noise needs a data range > 0 (a constant image has none; pass data_range), "
            f"got {data_range}"
        )
    return float(data_range)


def gaussian(
    image: np.ndarray,
    level: float,
    generator: np.random.Generator,
    *,
    data_range: float | None = None,
) -> np.ndarray:
    """Additive white Gaussian noise of standard deviation ``level * data_range``.

    Example:
        >>> out = gaussian(np.zeros((100, 100)), 0.1, np.random.default_rng(0), data_range=1.0)
        >>> round(float(out.std()), 1)
        0.1
    """
    x = np.asarray(image, dtype=np.float64)
    sigma = level * _range(x, data_range)
    return (x + generator.normal(0.0, sigma, x.shape)).astype(np.float32)


def rician(
    image: np.ndarray,
    level: float,
    generator: np.random.Generator,
    *,
    data_range: float | None = None,
) -> np.ndarray:
    """Rician noise: ``sqrt((x + n1)^2 + n2^2)`` with ``n1, n2 ~ N(0, (level R)^2)``."""
    x = np.asarray(image, dtype=np.float64)
    sigma = level * _range(x, data_range)
    real = x + generator.normal(0.0, sigma, x.shape)
    imaginary = generator.normal(0.0, sigma, x.shape)
    return np.hypot(real, imaginary).astype(np.float32)


def poisson_gaussian(
    image: np.ndarray,
    level: float,
    generator: np.random.Generator,
    *,
    data_range: float | None = None,
) -> np.ndarray:
    """Signal-dependent Poisson noise of gain ``level^2 R`` plus Gaussian ``N(0, (level R)^2)``."""
    x = np.asarray(image, dtype=np.float64)
    span = _range(x, data_range)
    if level == 0:
        return x.astype(np.float32)
    gain = level**2 * span
    counts = generator.poisson(np.maximum(x, 0.0) / gain)
    noisy = gain * counts + np.minimum(x, 0.0) + generator.normal(0.0, level * span, x.shape)
    return noisy.astype(np.float32)


def speckle(
    image: np.ndarray,
    level: float,
    generator: np.random.Generator,
    *,
    data_range: float | None = None,
) -> np.ndarray:
    """Multiplicative speckle ``x (1 + n)``, ``n ~ N(0, level^2)`` (``data_range`` unused)."""
    x = np.asarray(image, dtype=np.float64)
    return (x * (1.0 + generator.normal(0.0, level, x.shape))).astype(np.float32)


NOISE_MODELS: dict[str, NoiseModel] = {
    "gaussian": gaussian,
    "rician": rician,
    "poisson_gaussian": poisson_gaussian,
    "speckle": speckle,
}


@dataclass(frozen=True)
class NoiseSpec:
    """A noise model and its level (a fraction of the data range)."""

    model: str
    level: float

    def __str__(self) -> str:
        return f"{self.model}:{self.level:g}"

    def apply(
        self, image: np.ndarray, generator: np.random.Generator, *, data_range: float | None = None
    ) -> np.ndarray:
        """``image`` with this noise (float32, same shape)."""
        return NOISE_MODELS[self.model](image, self.level, generator, data_range=data_range)


def parse_noise(text: str) -> NoiseSpec:
    """Read ``"<model>:<level>"``, e.g. ``"rician:0.05"`` (5 % of the data range).

    Raises:
        ConfigError: an unknown model (listing the valid ones) or a level that is not a
            finite number in [0, 1].

    Example:
        >>> parse_noise("rician:0.05")
        NoiseSpec(model='rician', level=0.05)
    """
    model, sep, level_text = str(text).strip().partition(":")
    model = model.strip().lower()
    if model not in NOISE_MODELS or not sep:
        raise ConfigError(
            f"noise {text!r}: expected <model>:<level> with model one of "
            f"{', '.join(NOISE_MODELS)} and level a fraction of the data range "
            "(e.g. rician:0.05)"
        )
    try:
        level = float(level_text)
    except ValueError:
        raise ConfigError(f"noise {text!r}: level {level_text!r} is not a number") from None
    if not (math.isfinite(level) and 0 <= level <= 1):
        raise ConfigError(
            f"noise {text!r}: level must be in [0, 1] (a fraction of the range), got {level}"
        )
    return NoiseSpec(model, level)
