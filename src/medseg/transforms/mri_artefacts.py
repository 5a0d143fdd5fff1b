"""MRI acquisition artefacts simulated in k-space: motion, ghosting, spikes, susceptibility.

The reference semantics are TorchIO's ``RandomMotion``, ``RandomGhosting`` and
``RandomSpike`` (Perez-Garcia et al. 2021; motion after Shaw et al. 2019); the code is ours.
k-space is ``fftshift(fftn(x))`` over the spatial axes of one ``(C, *spatial)`` sample; a
k-space *line* along the phase-encoding axis ``a`` is the hyperplane of one frequency index
``f`` on axis ``a`` (signed, ``f = i - n // 2`` for shifted index ``i``).

- motion: ``T`` rigid copies of the sample (rotation + translation, one resampling each with
  ``medseg.transforms.grid``); k-space lines are split into ``T + 1`` consecutive segments
  along the phase axis (sorted random times), segment 0 from the unmoved image, segment ``t``
  from copy ``t``; the magnitude of the inverse FFT is the result. Translations are in
  **voxels** (batched tensors carry no spacing; ``medseg.transforms.degrade`` converts mm).
  Magnitude needs a non-negative image: each channel is shifted by its minimum first and
  back after (z-scored images keep their range), so zero motion returns the input.
- ghosting: the lines with ``f % n == 0`` (``n`` = ``num_ghosts``) are multiplied by
  ``1 - intensity``, except a central band of ``restore`` of the lines (TorchIO's
  ``restore``, default 2 %, so the mean intensity is kept). The changed set is symmetric in
  ``f``, so the image stays real; with ``n`` dividing the axis length the result is
  ``x - intensity / n * sum_j shift(x, j * n_axis / n)``: ghosts at multiples of FOV/n.
- spike: ``S`` k-space points ``k`` (never the centre) get ``a e^{i phi}`` added at ``k`` and
  its conjugate at ``-k``, ``a = intensity * max |F|`` of the channel shifted to be
  non-negative (its DC term ``sum(x - min)``: a z-score does not change it). The k-space
  change is exactly these values and the image stays real: stripes over the whole field
  (TorchIO adds at one point and keeps the real part: the same stripes at half amplitude).
- susceptibility (an *approximation*, not a field simulation): near a random point the image
  is displaced along the phase axis by a Gaussian bump ``d(r) = s exp(-|r - c|^2 / 2 sigma^2)``
  voxels and multiplied by the Jacobian ``1 + dd/dr_a`` (clamped at 0): signal is stretched
  (loss) on one side of the point and compressed (pile-up) on the other, as off-resonance
  distorts EPI near air-tissue interfaces. Total intensity is conserved (up to interpolation
  and the border) while ``|s| / sigma < 1.6`` (the map stays one-to-one; max ``|dd/dr| =
  0.607 |s| / sigma``).

All four change the image only: the label is returned untouched (the anatomy did not move;
the artefact is in the acquisition), as in TorchIO. Conventions (``p``, ``channels``,
seeding) are those of :class:`medseg.transforms.intensity.IntensityTransform`; one set of
parameters is drawn per sample and shared by its channels (one acquisition).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from typing_extensions import Unpack

from medseg.transforms.base import check_range, uniform
from medseg.transforms.grid import affine_matrix, resample, rotation_planes, sampling_grid
from medseg.transforms.intensity import IntensityOptions, IntensityTransform, Params, Shape


def to_kspace(image: Tensor) -> Tensor:
    """Centred k-space ``fftshift(fftn(image))`` of a ``(C, *spatial)`` sample (complex)."""
    dims = tuple(range(1, image.ndim))
    return torch.fft.fftshift(torch.fft.fftn(image, dim=dims), dim=dims)


def from_kspace(spectrum: Tensor) -> Tensor:
    """Inverse of :func:`to_kspace` (complex ``(C, *spatial)``)."""
    dims = tuple(range(1, spectrum.ndim))
    return torch.fft.ifftn(torch.fft.ifftshift(spectrum, dim=dims), dim=dims)


def frequencies(n: int) -> Tensor:
    """Signed frequency index of each shifted k-space position: ``arange(n) - n // 2``."""
    return torch.arange(n) - n // 2


def ghost_lines(n: int, num_ghosts: int, restore: float) -> Tensor:
    """``(n,)`` bool: the lines ghosting scales (``f % num_ghosts == 0``, outside the restored
    central ``round(restore * n)`` lines, at least the centre line when ``restore > 0``)."""
    f = frequencies(n)
    keep = 0 if restore <= 0 else max(1, round(restore * n))
    centre = f.abs() <= (keep - 1) / 2 if keep else torch.zeros(n, dtype=torch.bool)
    return (f % num_ghosts == 0) & ~centre


def ghosting(image: Tensor, num_ghosts: int, axis: int, intensity: float, restore: float) -> Tensor:
    """Ghosting of a ``(C, *spatial)`` sample along spatial ``axis`` (module docstring)."""
    if num_ghosts < 1 or intensity == 0:
        return image
    spectrum = to_kspace(image)
    lines = ghost_lines(image.shape[axis + 1], num_ghosts, restore)
    shape = [1] * image.ndim
    shape[axis + 1] = -1
    factor = (1.0 - intensity * lines.double()).view(shape).to(spectrum.real.dtype)
    return from_kspace(spectrum * factor.to(spectrum.device)).real.to(image.dtype)


def spike(image: Tensor, positions: Tensor, amplitudes: Tensor, phases: Tensor) -> Tensor:
    """Add spikes to a ``(C, *spatial)`` sample.

    Args:
        positions: ``(S, D)`` signed integer frequencies (not all zero).
        amplitudes: ``(S,)`` amplitudes relative to each channel's ``max |F|`` once shifted to
            be non-negative (its DC term, ``sum(x - min)``; independent of a z-score).
        phases: ``(S,)`` radians; ``a e^{i phi}`` is added at ``k``, its conjugate at ``-k``.
    """
    spectrum = to_kspace(image)
    peak = (image - image.flatten(1).amin(1).view(-1, *[1] * (image.ndim - 1))).flatten(1).sum(1)
    sizes = image.shape[1:]
    delta = torch.zeros_like(spectrum)
    for k, a, phi in zip(positions.tolist(), amplitudes.tolist(), phases.tolist(), strict=True):
        value = torch.polar(peak * a, torch.full_like(peak, phi))
        for sign, v in ((1, value), (-1, value.conj())):
            index = tuple((sign * f) % n for f, n in zip(k, sizes, strict=True))
            index = tuple((i + n // 2) % n for i, n in zip(index, sizes, strict=True))
            delta[(slice(None), *index)] += v
    return from_kspace(spectrum + delta).real.to(image.dtype)


def rigid_copies(image: Tensor, angles: Tensor, translations: Tensor) -> Tensor:
    """``(T, C, *spatial)`` copies of a ``(C, *spatial)`` sample, each rotated by ``angles[t]``
    (``(T, P)`` radians per rotation plane) about the centre and translated by
    ``translations[t]`` (``(T, D)`` voxels, array axis order); zero outside the field."""
    count, dims = angles.shape[0], image.ndim - 1
    matrix = affine_matrix(angles=angles.double(), spatial_dims=dims, batch_size=count)
    inverse = torch.linalg.inv(matrix)
    offset = -(inverse @ translations.double()[..., None])[..., 0]
    shape = tuple(image.shape[1:])
    grid = sampling_grid(inverse, offset, shape, shape)
    batch = image[None].expand(count, *image.shape)
    return resample(batch, None, grid, image_padding="zeros")[0]


def motion(image: Tensor, angles: Tensor, translations: Tensor, times: Tensor, axis: int) -> Tensor:
    """Motion artefact of a ``(C, *spatial)`` sample (module docstring).

    Args:
        angles: ``(T, P)`` radians; translations: ``(T, D)`` voxels; times: ``(T,)`` in [0, 1],
            sorted: copy ``t`` fills the lines from ``floor(times[t] * n)`` to the next time's.
        axis: the spatial phase-encoding axis.
    """
    low = image.flatten(1).amin(1).view(-1, *[1] * (image.ndim - 1))
    shifted = image - low
    copies = torch.cat([shifted[None], rigid_copies(shifted, angles, translations)])
    spectra = torch.stack([to_kspace(c) for c in copies])
    n = image.shape[axis + 1]
    bounds = [0, *[min(n, math.floor(float(t) * n)) for t in times], n]
    mixed = torch.empty_like(spectra[0])
    for t in range(len(copies)):
        lines = [slice(None)] * image.ndim
        lines[axis + 1] = slice(bounds[t], max(bounds[t], bounds[t + 1]))
        mixed[tuple(lines)] = spectra[t][tuple(lines)]
    return (from_kspace(mixed).abs() + low).to(image.dtype)


def bump_displacement(
    shape: Sequence[int], centre: Sequence[float], sigma: float, strength: float, axis: int
) -> tuple[Tensor, Tensor]:
    """``(d, jacobian)`` on ``shape`` (float64): ``d = s exp(-|r - c|^2 / 2 sigma^2)`` voxels
    along ``axis`` and ``1 + dd/dr_axis``."""
    coords = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in shape], indexing="ij")
    squared = sum((r - c) ** 2 for r, c in zip(coords, centre, strict=True))
    d = strength * torch.exp(-squared / (2 * sigma**2))
    return d, 1.0 - d * (coords[axis] - centre[axis]) / sigma**2


def susceptibility(
    image: Tensor, centre: Sequence[float], sigma: float, strength: float, axis: int
) -> Tensor:
    """Susceptibility-like distortion of a ``(C, *spatial)`` sample (module docstring):
    ``out(r) = x(r + d(r) e_axis) * max(0, 1 + dd/dr_axis)``; border values extend outside."""
    if strength == 0:
        return image
    shape, dims = tuple(image.shape[1:]), image.ndim - 1
    d, jacobian = bump_displacement(shape, centre, sigma, strength, axis)
    displacement = torch.zeros(1, dims, *shape, dtype=torch.float32)
    displacement[0, axis] = d.float()
    eye = torch.eye(dims, dtype=torch.float64)[None]
    grid = sampling_grid(eye, torch.zeros(1, dims), shape, shape, displacement=displacement)
    moved = resample(image[None], None, grid.to(image.device), image_padding="border")[0][0]
    return moved * jacobian.clamp_min(0).to(device=image.device, dtype=image.dtype)


def _symmetric(name: str, value: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return check_range(name, (-abs(float(value)), abs(float(value))))
    return check_range(name, value)


def _axes(axes: Sequence[int] | None) -> tuple[int, ...] | None:
    return None if axes is None else tuple(int(a) for a in axes)


class _KSpaceTransform(IntensityTransform):
    """Per-sample parameters shared by channels; ``function`` loops over the samples."""

    def __init__(self, axes: Sequence[int] | None, **common: Unpack[IntensityOptions]) -> None:
        super().__init__(**{**common, "per_channel": False})
        self.axes = _axes(axes)

    def _axis(self, batch: int, dims: int, generator: torch.Generator) -> Tensor:
        axes = torch.tensor(self.axes if self.axes is not None else range(dims))
        if int(axes.max()) >= dims or int(axes.min()) < 0:
            raise ValueError(f"axes {self.axes} out of range for {dims} spatial axes")
        return axes[torch.randint(len(axes), (batch, 1), generator=generator)].double()

    def one(self, sample: Tensor, params: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        out = [
            self.one(image[b], {k: v[b, 0] for k, v in params.items()}) for b in range(len(image))
        ]
        return torch.stack(out)


class RandomMotion(_KSpaceTransform):
    """Rigid motion during the acquisition (TorchIO's ``RandomMotion``).

    Args:
        degrees: rotation per plane in degrees, ``d`` for U(-d, d) or a (low, high) range.
        translation: per axis in **voxels**, ``t`` for U(-t, t) or a range.
        num_transforms: number of moved copies ``T`` (TorchIO's default 2).
        axes: candidate phase-encoding axes (None: all), one drawn per sample.
    """

    def __init__(
        self,
        *,
        degrees: float | Sequence[float] = 10.0,
        translation: float | Sequence[float] = 10.0,
        num_transforms: int = 2,
        axes: Sequence[int] | None = None,
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(axes, **common)
        if int(num_transforms) < 1:
            raise ValueError(f"num_transforms must be >= 1, got {num_transforms}")
        self.degrees = _symmetric("degrees", degrees)
        self.translation = _symmetric("translation", translation)
        self.num_transforms = int(num_transforms)

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        dims, count = len(shape), self.num_transforms
        planes = len(rotation_planes(dims))
        angles = uniform([batch, 1, count, planes], *self.degrees, generator) * math.pi / 180
        shifts = uniform([batch, 1, count, dims], *self.translation, generator)
        times = torch.rand(batch, 1, count, generator=generator, dtype=torch.float64).sort(-1)[0]
        axis = self._axis(batch, dims, generator)[..., None].expand(batch, 1, 1)
        return {"angles": angles, "shifts": shifts, "times": times, "axis": axis}

    def neutral(self, params: Params) -> Tensor:
        return (params["angles"] == 0).flatten(2).all(-1) & (params["shifts"] == 0).flatten(2).all(
            -1
        )

    def one(self, sample: Tensor, params: dict[str, Tensor]) -> Tensor:
        axis = int(params["axis"][0])
        return motion(sample, params["angles"], params["shifts"], params["times"], axis)


class RandomGhosting(_KSpaceTransform):
    """Ghosting (TorchIO's ``RandomGhosting``): scale every n-th k-space line.

    Args:
        num_ghosts: (min, max) of ``n`` (TorchIO's default (4, 10)).
        axes: candidate phase-encoding axes (None: all).
        intensity: range of the scaling ``1 - intensity`` (default (0.5, 1)).
        restore: fraction of central lines left unchanged (default 0.02).
    """

    def __init__(
        self,
        *,
        num_ghosts: tuple[int, int] = (4, 10),
        axes: Sequence[int] | None = None,
        intensity: tuple[float, float] = (0.5, 1.0),
        restore: float = 0.02,
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(axes, **common)
        if not 1 <= int(num_ghosts[0]) <= int(num_ghosts[1]):
            raise ValueError(f"num_ghosts must be (min, max) with 1 <= min <= max: {num_ghosts}")
        self.num_ghosts = (int(num_ghosts[0]), int(num_ghosts[1]))
        self.intensity = check_range("intensity", intensity)
        if not 0.0 <= restore < 1.0:
            raise ValueError(f"restore must be in [0, 1), got {restore}")
        self.restore = float(restore)

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        low, high = self.num_ghosts
        ghosts = torch.randint(low, high + 1, (batch, 1), generator=generator).double()
        return {
            "ghosts": ghosts,
            "intensity": uniform([batch, 1], *self.intensity, generator),
            "axis": self._axis(batch, len(shape), generator),
        }

    def neutral(self, params: Params) -> Tensor:
        return params["intensity"] == 0

    def one(self, sample: Tensor, params: dict[str, Tensor]) -> Tensor:
        ghosts, axis = int(params["ghosts"]), int(params["axis"])
        return ghosting(sample, ghosts, axis, float(params["intensity"]), self.restore)


class RandomSpike(_KSpaceTransform):
    """Spike (herringbone) artefact (TorchIO's ``RandomSpike``): bright k-space points.

    Args:
        num_spikes: (min, max) number of spikes (default (1, 1)).
        intensity: range of each spike's amplitude relative to ``max |F|`` (TorchIO (1, 3)).
    """

    def __init__(
        self,
        *,
        num_spikes: tuple[int, int] = (1, 1),
        intensity: tuple[float, float] = (1.0, 3.0),
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(None, **common)
        if not 1 <= int(num_spikes[0]) <= int(num_spikes[1]):
            raise ValueError(f"num_spikes must be (min, max) with 1 <= min <= max: {num_spikes}")
        self.num_spikes = (int(num_spikes[0]), int(num_spikes[1]))
        self.intensity = check_range("intensity", intensity)

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        most = self.num_spikes[1]
        count = torch.randint(self.num_spikes[0], most + 1, (batch, 1, 1), generator=generator)
        sizes = torch.tensor(shape, dtype=torch.float64)
        where = torch.rand(batch, 1, most, len(shape), generator=generator, dtype=torch.float64)
        positions = (where * sizes).floor() - (sizes / 2).floor()
        positions[..., 0] += (positions == 0).all(-1)  # never the centre
        amplitudes = uniform([batch, 1, most], *self.intensity, generator)
        amplitudes = amplitudes * (torch.arange(most) < count)
        phases = uniform([batch, 1, most], -math.pi, math.pi, generator)
        return {"positions": positions, "amplitudes": amplitudes, "phases": phases}

    def neutral(self, params: Params) -> Tensor:
        return (params["amplitudes"] == 0).all(-1)

    def one(self, sample: Tensor, params: dict[str, Tensor]) -> Tensor:
        on = params["amplitudes"] != 0
        positions = params["positions"][on].long()
        return spike(sample, positions, params["amplitudes"][on], params["phases"][on])


class RandomSusceptibility(_KSpaceTransform):
    """Susceptibility-like local distortion along the phase axis (an approximation; module
    docstring).

    Args:
        strength: range of the peak displacement ``s`` in voxels (sign included).
        sigma: range of the bump's width in voxels.
        axes: candidate phase-encoding axes (None: all).
    """

    def __init__(
        self,
        *,
        strength: tuple[float, float] = (-4.0, 4.0),
        sigma: tuple[float, float] = (4.0, 8.0),
        axes: Sequence[int] | None = None,
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(axes, **common)
        self.strength = check_range("strength", strength)
        self.sigma = check_range("sigma", sigma, low=1e-3)

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        sizes = torch.tensor(shape, dtype=torch.float64) - 1
        centre = torch.rand(batch, 1, len(shape), generator=generator, dtype=torch.float64)
        return {
            "centre": centre * sizes,
            "sigma": uniform([batch, 1], *self.sigma, generator),
            "strength": uniform([batch, 1], *self.strength, generator),
            "axis": self._axis(batch, len(shape), generator),
        }

    def neutral(self, params: Params) -> Tensor:
        return params["strength"] == 0

    def one(self, sample: Tensor, params: dict[str, Tensor]) -> Tensor:
        centre = params["centre"].tolist()
        sigma, strength = float(params["sigma"]), float(params["strength"])
        return susceptibility(sample, centre, sigma, strength, int(params["axis"]))


__all__ = [
    "RandomGhosting",
    "RandomMotion",
    "RandomSpike",
    "RandomSusceptibility",
    "from_kspace",
    "ghosting",
    "motion",
    "spike",
    "susceptibility",
    "to_kspace",
]
