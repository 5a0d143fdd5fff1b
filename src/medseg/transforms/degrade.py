"""Image degradations for robustness tests: noise, bias field, blur, low resolution, contrast.

Robustness in the seeds' sense is "the degradation in performance with respect to varying
noise levels or other imaging artefacts" (lecture 003). Each perturbation here is a pure,
deterministic-given-``rng`` function of the image, its spacing and a *severity* in [0, 1]:

``perturb(image, spacing, severity, rng) -> degraded image``

- ``image``: ``(C, *spatial)`` or ``(*spatial)``, a NumPy array or a torch tensor (the result
  has the same kind; integer images come back as float32). Channels are degraded
  independently; statistics such as the intensity range are taken per channel.
- ``spacing``: voxel size in mm per spatial array axis (``len(spacing)`` spatial axes; a
  leading extra axis is the channel axis).
- ``severity``: 0 returns an unchanged copy (bit for bit), 1 the strongest degradation.
- ``rng``: a ``numpy.random.Generator``; ``noise``, ``bias`` and the MRI artefacts draw
  from it.

The physical parameter of each perturbation grows linearly with the severity, except
``lowres`` whose factor grows geometrically. With the default 5 levels (level ``i`` has
severity ``i / 4``; ``level_severity``):

============  ==================================================  =====  =====  =====  =====  =====
name          parameter                                           0      1      2      3      4
============  ==================================================  =====  =====  =====  =====  =====
``noise``     Gaussian sigma / (p99.5 - p0.5 intensity range)     0      0.05   0.10   0.15   0.20
``bias``      max abs log-gain of a cubic polynomial field        0      0.15   0.30   0.45   0.60
``blur``      Gaussian sigma in mm (every axis)                   0      0.5    1.0    1.5    2.0
``lowres``    down-sampling factor (every axis), then linear up   1      1.41   2      2.83   4
``contrast``  gamma on the min-max normalised image               1      1.25   1.5    1.75   2.0
``motion``    max rotation (deg) = max translation (mm), 2 moves  0      2      4      6      8
``ghosting``  ghost intensity (every 4th-8th k-space line scaled)  0      0.2    0.4    0.6    0.8
``spike``     spike amplitude / DC term (one k-space spike)       0      0.1    0.2    0.3    0.4
``suscept.``  peak displacement in mm along the phase axis        0      1.5    3      4.5    6
============  ==================================================  =====  =====  =====  =====  =====

The MRI artefacts (``motion``, ``ghosting``, ``spike``, ``susceptibility``; k-space
simulation in ``medseg.transforms.mri_artefacts``, see ``docs/mri_artefacts.md``) draw their
random pattern (phase-encoding axis, directions, k-space times, number of ghosts, spike
position, bump centre and sign; susceptibility bump width 8 mm) from ``rng`` *before* the
severity scales it, so with one seed a higher level is the same artefact, stronger.

A bias of 0.6 multiplies the image by a smooth field between exp(-0.6) = 0.55 and
exp(0.6) = 1.82. Blur, low resolution and contrast reuse the augmentation kernels of
``medseg.transforms.functional`` (``gaussian_blur``, ``bias_field``,
``simulate_low_resolution``, ``adjust_gamma``), so training augmentation and these tests
degrade images the same way.

Example:
    >>> image = np.arange(16.0).reshape(4, 4)
    >>> rng = np.random.default_rng(0)
    >>> bool((degrade(image, (1.0, 1.0), "noise", severity=0.0, rng=rng) == image).all())
    True
    >>> perturbation_parameter("lowres", 0.5)
    2.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from medseg.errors import ConfigError
from medseg.registry import Registry
from medseg.transforms import functional as fn
from medseg.transforms import mri_artefacts as mri

ArrayLike = TypeVar("ArrayLike", np.ndarray, Tensor)

DEFAULT_LEVELS = 5
SUSCEPTIBILITY_SIGMA_MM = 8.0  # width of the susceptibility bump


@dataclass(frozen=True)
class Perturbation:
    """A named image degradation: its physical parameter as a function of the severity and
    the function applying it to a ``(1, C, *spatial)`` float32 batch.

    Attributes:
        name: registry name.
        parameter_name: what the parameter is, with its unit (for tables and plots).
        parameter: severity in [0, 1] -> physical parameter.
        apply: ``(batch (1, C, *spatial) float32, spacing mm, parameter, rng) -> batch``.
    """

    name: str
    parameter_name: str
    parameter: Callable[[float], float]
    apply: Callable[[Tensor, tuple[float, ...], float, np.random.Generator], Tensor]


PERTURBATIONS: Registry = Registry("image perturbation")


def _register(perturbation: Perturbation) -> None:
    PERTURBATIONS.register(perturbation.name, description=perturbation.parameter_name, options=())(
        perturbation
    )


def _robust_range(batch: Tensor) -> Tensor:
    """``(1, C)`` p99.5 - p0.5 per channel (the intensity range without outliers)."""
    # NumPy, not torch.quantile: the latter refuses inputs of more than 2**24 elements
    low, high = np.percentile(batch.flatten(2).numpy(), [0.5, 99.5], axis=-1)
    return torch.from_numpy(high - low).float()


def _add_noise(
    batch: Tensor, spacing: tuple[float, ...], fraction: float, rng: np.random.Generator
) -> Tensor:
    sigma = _robust_range(batch) * fraction
    noise = torch.from_numpy(rng.standard_normal(batch.shape).astype(np.float32))
    return batch + noise * sigma.view(*sigma.shape, *[1] * (batch.ndim - 2))


def _bias(
    batch: Tensor, spacing: tuple[float, ...], strength: float, rng: np.random.Generator
) -> Tensor:
    order, dims = 3, batch.ndim - 2
    k = order + 1
    coefficients = torch.from_numpy(
        rng.uniform(-1.0, 1.0, size=(1, batch.shape[1], *[k] * dims)).astype(np.float32)
    )
    degree = sum(
        torch.arange(k).view([k if i == d else 1 for i in range(dims)]) for d in range(dims)
    )
    coefficients = coefficients * (degree <= order)  # a polynomial of total degree <= 3
    log_field = torch.log(fn.bias_field(tuple(batch.shape[2:]), coefficients))
    # the field's shape is random, its size is the level's: centre and scale the log-gain
    log_field = log_field - log_field.flatten(2).mean(-1).view(1, -1, *[1] * dims)
    peak = log_field.flatten(2).abs().amax(-1).clamp_min(1e-12).view(1, -1, *[1] * dims)
    return batch * torch.exp(log_field / peak * strength)


def _blur(
    batch: Tensor, spacing: tuple[float, ...], sigma_mm: float, rng: np.random.Generator
) -> Tensor:
    sigma_voxels = torch.tensor([sigma_mm / s for s in spacing], dtype=torch.float32)
    return fn.gaussian_blur(batch, sigma_voxels.expand(1, batch.shape[1], len(spacing)))


def _lowres(
    batch: Tensor, spacing: tuple[float, ...], factor: float, rng: np.random.Generator
) -> Tensor:
    zoom = torch.full((1, batch.shape[1]), 1.0 / factor)
    return fn.simulate_low_resolution(batch, zoom)


def _contrast(
    batch: Tensor, spacing: tuple[float, ...], gamma: float, rng: np.random.Generator
) -> Tensor:
    # retain_stats=False keeps each channel's [min, max]: a z-score normalisation afterwards
    # does not undo the compression of the dark (gamma > 1) intensities
    gammas = torch.full((1, batch.shape[1]), float(gamma))
    return fn.adjust_gamma(batch, gammas, retain_stats=False)


def _phase_axis(batch: Tensor, rng: np.random.Generator) -> int:
    """The phase-encoding axis of an MRI artefact, a spatial axis drawn from ``rng``."""
    return int(rng.integers(0, batch.ndim - 2))


def _motion(
    batch: Tensor, spacing: tuple[float, ...], amplitude: float, rng: np.random.Generator
) -> Tensor:
    # all draws come before the amplitude scales them: a higher level is the same motion, larger
    dims, count = batch.ndim - 2, 2
    axis = _phase_axis(batch, rng)
    unit_angles = rng.uniform(-1.0, 1.0, size=(count, dims * (dims - 1) // 2))
    unit_shifts = rng.uniform(-1.0, 1.0, size=(count, dims))
    times = np.sort(rng.uniform(0.2, 0.8, size=count))
    angles = torch.from_numpy(unit_angles * math.radians(amplitude))
    shifts = torch.from_numpy(unit_shifts * amplitude / np.asarray(spacing))
    out = mri.motion(batch[0], angles, shifts, torch.from_numpy(times), axis)
    return out[None]


def _ghosting(
    batch: Tensor, spacing: tuple[float, ...], intensity: float, rng: np.random.Generator
) -> Tensor:
    axis, ghosts = _phase_axis(batch, rng), int(rng.integers(4, 9))
    return mri.ghosting(batch[0], ghosts, axis, intensity, 0.02)[None]


def _spike(
    batch: Tensor, spacing: tuple[float, ...], amplitude: float, rng: np.random.Generator
) -> Tensor:
    sizes = np.asarray(batch.shape[2:])
    position = np.floor(rng.uniform(0.0, 1.0, size=sizes.size) * sizes) - sizes // 2
    position[0] += np.all(position == 0)  # never the centre
    positions = torch.from_numpy(position.astype(np.int64))[None]
    phases = torch.from_numpy(rng.uniform(-math.pi, math.pi, size=1))
    return mri.spike(batch[0], positions, torch.tensor([amplitude]), phases)[None]


def _susceptibility(
    batch: Tensor, spacing: tuple[float, ...], strength_mm: float, rng: np.random.Generator
) -> Tensor:
    axis, sizes = _phase_axis(batch, rng), np.asarray(batch.shape[2:])
    centre = (0.25 + 0.5 * rng.uniform(0.0, 1.0, size=sizes.size)) * (sizes - 1)
    sign = 1.0 if rng.uniform() < 0.5 else -1.0
    sigma = SUSCEPTIBILITY_SIGMA_MM / float(np.mean(spacing))
    strength = sign * strength_mm / spacing[axis]
    return mri.susceptibility(batch[0], centre.tolist(), sigma, strength, axis)[None]


_register(Perturbation("noise", "noise sigma / intensity range", lambda s: 0.2 * s, _add_noise))
_register(Perturbation("bias", "max |log gain|", lambda s: 0.6 * s, _bias))
_register(Perturbation("blur", "blur sigma (mm)", lambda s: 2.0 * s, _blur))
_register(Perturbation("lowres", "down-sampling factor", lambda s: 4.0**s, _lowres))
_register(Perturbation("contrast", "gamma", lambda s: 1.0 + s, _contrast))
_register(
    Perturbation("motion", "max rotation (deg) = translation (mm)", lambda s: 8.0 * s, _motion)
)
_register(Perturbation("ghosting", "ghost intensity", lambda s: 0.8 * s, _ghosting))
_register(Perturbation("spike", "spike amplitude / DC term", lambda s: 0.4 * s, _spike))
_register(
    Perturbation("susceptibility", "peak displacement (mm)", lambda s: 6.0 * s, _susceptibility)
)


def level_severity(level: int, levels: int = DEFAULT_LEVELS) -> float:
    """Severity of level ``level`` of ``levels`` evenly spaced levels: ``level / (levels - 1)``.

    Raises:
        ConfigError: ``levels`` < 2 or ``level`` outside ``[0, levels)``.
    """
    if levels < 2:
        raise ConfigError(f"levels must be >= 2 (level 0 is the unchanged image), got {levels}")
    if not 0 <= level < levels:
        raise ConfigError(f"level must be in [0, {levels}), got {level}")
    return level / (levels - 1)


def perturbation_parameter(name: str, severity: float) -> float:
    """The physical parameter of perturbation ``name`` at ``severity`` (module table)."""
    _check_severity(severity)
    return float(PERTURBATIONS.get(name).parameter(severity))


def _check_severity(severity: float) -> None:
    if not 0.0 <= severity <= 1.0 or math.isnan(severity):
        raise ConfigError(f"severity must be in [0, 1], got {severity}")


def degrade(
    image: ArrayLike,
    spacing: Sequence[float],
    name: str,
    *,
    severity: float,
    rng: np.random.Generator,
) -> ArrayLike:
    """Degrade ``image`` with perturbation ``name`` at ``severity`` (see the module table).

    Args:
        image: ``(C, *spatial)`` or ``(*spatial)`` NumPy array or torch tensor.
        spacing: voxel size in mm per spatial axis (its length is the number of spatial axes).
        name: a name in ``PERTURBATIONS``: ``noise``, ``bias``, ``blur``, ``lowres``,
            ``contrast``, ``motion``, ``ghosting``, ``spike``, ``susceptibility``.
        severity: in [0, 1]; 0 returns an unchanged copy.
        rng: random generator (``noise``, ``bias`` and the MRI artefacts draw from it, so a
            seeded generator gives the same result).

    Returns:
        The degraded image, same shape and kind as ``image`` (float32 for integer input;
        floating input keeps its dtype). The input is not modified.

    Raises:
        ConfigError: unknown name (the message lists the valid ones), severity outside
            [0, 1], or an image whose number of axes is neither ``len(spacing)`` nor
            ``len(spacing) + 1``.
    """
    perturbation = PERTURBATIONS.get(name)
    _check_severity(severity)
    spacing = tuple(float(s) for s in spacing)
    is_tensor = isinstance(image, Tensor)
    if image.ndim not in (len(spacing), len(spacing) + 1):
        raise ConfigError(
            f"an image of shape {tuple(image.shape)} does not match spacing {spacing}: expected "
            f"{len(spacing)} spatial axes and an optional leading channel axis"
        )
    if severity == 0.0:
        return image.clone() if is_tensor else np.array(image, copy=True)
    tensor = image.detach().cpu() if is_tensor else torch.from_numpy(np.asarray(image))
    floating = tensor.is_floating_point()
    dtype = tensor.dtype if floating else torch.float32
    batch = tensor.to(torch.float32)
    batch = batch.reshape(1, -1, *batch.shape[-len(spacing) :])  # (1, C, *spatial)
    out = perturbation.apply(batch, spacing, perturbation.parameter(severity), rng)
    out = out.reshape(image.shape).to(dtype)
    if is_tensor:
        return out.to(image.device)
    return out.numpy()


__all__ = [
    "DEFAULT_LEVELS",
    "PERTURBATIONS",
    "Perturbation",
    "degrade",
    "level_severity",
    "perturbation_parameter",
]
