"""``PhantomConfig``: the knobs of the synthetic phantom generator (``medseg.data.phantoms``).

A frozen dataclass that round-trips through JSON; ``docs/phantoms.md`` explains which imaging
challenge each knob simulates.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.phantom_artefacts import NOISE_KINDS, NoiseKind
from medseg.data.phantom_shapes import STRUCTURES
from medseg.errors import ConfigError
from medseg.fileutil import write_json_atomic

#: Clean intensities at ``contrast == 1`` (arbitrary units). Foreground levels move towards
#: ``tissue`` as contrast drops: ``level = tissue + contrast * (base - tissue)``.
TISSUE_LEVELS: dict[str, float] = {
    "air": 0.0,
    "tissue": 0.5,
    "organ": 0.8,
    "lesion": 0.6,
    "vessel": 1.0,
}

#: Defaults per spatial dimensionality: field of view (mm) and spacing (mm), array axis order.
DEFAULT_FOV_MM: dict[int, tuple[float, ...]] = {2: (128.0, 128.0), 3: (64.0, 64.0, 64.0)}
DEFAULT_SPACING: dict[int, tuple[float, ...]] = {2: (1.0, 1.0), 3: (2.0, 1.0, 1.0)}

#: ``PhantomConfig.at_site`` presets: simulated hospitals whose scanners differ
SITE_PRESETS: dict[str, dict[str, float]] = {
    "a": {"noise_factor": 1.0, "contrast_factor": 1.0, "slice_factor": 1.0},
    "b": {"noise_factor": 3.0, "bias_strength": 0.5, "contrast_factor": 1.0, "slice_factor": 1.0},
    "c": {"noise_factor": 1.0, "contrast_factor": 0.6, "slice_factor": 3.0},
}

#: ``PhantomConfig.sized`` presets: (fov_mm, spacing, supersample) per spatial_dims.
#: ``small`` is a 16^3 (3D) / 32^2 (2D) grid for large test cohorts (``--cases 2000 --size
#: small``); ``hippocampus`` has the MSD Hippocampus median grid (36 x 50 x 35 at 1 mm).
PHANTOM_SIZES: dict[str, dict[int, tuple[tuple[float, ...], tuple[float, ...], int]]] = {
    "small": {2: ((64.0, 64.0), (2.0, 2.0), 1), 3: ((64.0, 64.0, 64.0), (4.0, 4.0, 4.0), 1)},
    "hippocampus": {
        2: ((50.0, 35.0), (1.0, 1.0), 2),
        3: ((36.0, 50.0, 35.0), (1.0, 1.0, 1.0), 2),
    },
}


@dataclass(frozen=True)
class PhantomConfig:
    """Generator knobs; every field is JSON-serialisable (tuples are written as lists).

    Attributes:
        labels: structure kinds to label, in label-value order (1, 2, ...); any non-empty
            subset of ``("organ", "lesion", "vessel")``. Unlisted structures are not drawn.
            Later labels are painted over earlier ones where they overlap.
        fov_mm: field of view in mm, array axis order; ``None``: 128 x 128 (2D),
            64 x 64 x 64 (3D).
        spacing: voxel size in mm, array axis order; ``None``: 1 x 1 (2D), 2 x 1 x 1 (3D).
            The grid shape is ``round(fov_mm / spacing)``, so a coarser spacing samples
            the same anatomy with fewer voxels (anisotropic resolution).
        noise: ``"gaussian"``, ``"rician"`` (MRI magnitude) or ``"speckle"`` (ultrasound).
        noise_std: noise standard deviation in intensity units (tissue is 0.5, organ 0.8);
            relative to the signal for speckle. ``0`` disables noise.
        supersample: sub-samples per voxel along the finest axis for partial-volume
            rendering (coarser axes get proportionally more); ``1`` disables it.
        bias_strength: largest ``|log|`` of the smooth multiplicative bias field; ``0.2``
            gives intensities scaled by 0.82-1.22 across the image.
        streak_strength: peak amplitude of CT-like streaks (intensity units); ``0``: none.
        contrast: scales every structure's intensity difference to soft tissue (and so
            between neighbouring structures); ``1``: organ 0.8, lesion 0.6, vessel 1.0 on
            tissue 0.5; ``0``: structures are invisible.
        p_absent: probability that each structure in ``optional_labels`` is missing from a
            case (its label is then absent from that case).
        optional_labels: structures that may be missing (subset of ``labels``).
        channel_name: the ``channel_names["0"]`` entry of ``dataset.json``.
        schema_version: version of this record's layout.

    Example:
        >>> cfg = PhantomConfig(noise="rician", spacing=(3.0, 1.0, 1.0))
        >>> cfg.grid(3)
        ((21, 64, 64), (3.0, 1.0, 1.0))
    """

    labels: tuple[str, ...] = ("organ", "lesion", "vessel")
    fov_mm: tuple[float, ...] | None = None
    spacing: tuple[float, ...] | None = None
    noise: NoiseKind = "gaussian"
    noise_std: float = 0.05
    supersample: int = 2
    bias_strength: float = 0.2
    streak_strength: float = 0.0
    contrast: float = 1.0
    p_absent: float = 0.2
    optional_labels: tuple[str, ...] = ("lesion",)
    channel_name: str = "MRI"
    schema_version: int = 1

    def __post_init__(self) -> None:
        for name in ("labels", "optional_labels", "fov_mm", "spacing"):  # lists from JSON
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        _validate(self)

    def grid(self, spatial_dims: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """Voxel grid ``(shape, spacing)`` for ``spatial_dims`` (2 or 3), array axis order.

        Raises:
            ConfigError: ``spatial_dims`` is not 2 or 3, or ``fov_mm``/``spacing`` have
                another length.
        """
        fov, spacing = self.fov_and_spacing(spatial_dims)
        return tuple(max(1, round(f / s)) for f, s in zip(fov, spacing, strict=True)), spacing

    def fov_and_spacing(self, spatial_dims: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The field of view and spacing (mm) for ``spatial_dims``, defaults filled in."""
        if spatial_dims not in DEFAULT_FOV_MM:
            raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        fov = tuple(float(v) for v in (self.fov_mm or DEFAULT_FOV_MM[spatial_dims]))
        spacing = tuple(float(v) for v in (self.spacing or DEFAULT_SPACING[spatial_dims]))
        for name, value in (("fov_mm", fov), ("spacing", spacing)):
            if len(value) != spatial_dims:
                raise ConfigError(
                    f"phantom {name} {value} has {len(value)} values but spatial_dims is "
                    f"{spatial_dims}; give one value per array axis ((z, y, x) in 3D)"
                )
        return fov, spacing

    def with_slice_spacing(self, slice_mm: float, *, spatial_dims: int) -> PhantomConfig:
        """A copy whose first axis (z in 3D, rows in 2D) has spacing ``slice_mm``.

        The other axes keep this config's spacing (1 mm by default), so
        ``with_slice_spacing(5.0, spatial_dims=3)`` gives 5 x 1 x 1 mm voxels.
        """
        _, spacing = self.fov_and_spacing(spatial_dims)
        return dataclasses.replace(self, spacing=(float(slice_mm), *spacing[1:]))

    def at_site(self, site: str, *, spatial_dims: int) -> PhantomConfig:
        """A copy as scanned at the simulated hospital ``site`` (a key of ``SITE_PRESETS``):
        ``"a"`` this config, ``"b"`` a noisier scanner with a stronger bias field, ``"c"``
        lower contrast and slices 3 times thicker (federated learning's scanner shifts).

        Raises:
            ConfigError: an unknown site.
        """
        if site not in SITE_PRESETS:
            raise ConfigError(
                f"phantom site must be one of {', '.join(SITE_PRESETS)}, got {site!r}"
            )
        preset = SITE_PRESETS[site]
        config = dataclasses.replace(
            self,
            noise_std=self.noise_std * preset["noise_factor"],
            bias_strength=preset.get("bias_strength", self.bias_strength),
            contrast=self.contrast * preset["contrast_factor"],
        )
        if preset["slice_factor"] != 1.0:
            _, spacing = self.fov_and_spacing(spatial_dims)
            config = config.with_slice_spacing(
                spacing[0] * preset["slice_factor"], spatial_dims=spatial_dims
            )
        return config

    def sized(self, size: str, *, spatial_dims: int) -> PhantomConfig:
        """A copy with the grid of the preset ``size`` (``"default"`` or a key of
        ``PHANTOM_SIZES``): its field of view, spacing and supersampling.

        Raises:
            ConfigError: an unknown size or ``spatial_dims``.
        """
        if size == "default":
            return self
        if size not in PHANTOM_SIZES:
            raise ConfigError(
                f"phantom size must be one of default, {', '.join(PHANTOM_SIZES)}, got {size!r}"
            )
        if spatial_dims not in PHANTOM_SIZES[size]:
            raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        fov, spacing, supersample = PHANTOM_SIZES[size][spatial_dims]
        return dataclasses.replace(self, fov_mm=fov, spacing=spacing, supersample=supersample)

    def label_values(self) -> dict[str, int]:
        """``dataset.json``-style labels: ``{"background": 0, "organ": 1, ...}``."""
        return {"background": 0, **{name: i + 1 for i, name in enumerate(self.labels)}}

    def intensity_levels(self) -> dict[str, float]:
        """Clean intensity per tissue after ``contrast`` (see ``TISSUE_LEVELS``)."""
        tissue = TISSUE_LEVELS["tissue"]
        return {
            name: level if name in ("air", "tissue") else tissue + self.contrast * (level - tissue)
            for name, level in TISSUE_LEVELS.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhantomConfig:
        """Inverse of ``to_dict``. Raises ``ConfigError`` naming unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown phantom config keys {unknown}; valid keys: {sorted(known)}")
        return cls(**data)

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write the config as indented, key-sorted JSON (atomically)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> PhantomConfig:
        """Read a config written by ``to_json`` (or the ``config`` entry of ``phantom.json``)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if "generator" in data and "config" in data:  # a phantom.json record
            data = data["config"]
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err


def _validate(cfg: PhantomConfig) -> None:
    problems = []
    if (
        not cfg.labels
        or len(set(cfg.labels)) != len(cfg.labels)
        or set(cfg.labels) - set(STRUCTURES)
    ):
        problems.append(f"labels {list(cfg.labels)} must be distinct names from {list(STRUCTURES)}")
    if set(cfg.optional_labels) - set(cfg.labels):
        problems.append(
            f"optional_labels {list(cfg.optional_labels)} must be among labels {list(cfg.labels)}"
        )
    if cfg.noise not in NOISE_KINDS:
        problems.append(f"noise {cfg.noise!r} must be one of {list(NOISE_KINDS)}")
    for name in ("noise_std", "bias_strength", "streak_strength", "contrast"):
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            problems.append(f"{name} must be a finite number >= 0, got {value!r}")
    if cfg.noise == "speckle" and isinstance(cfg.noise_std, (int, float)) and cfg.noise_std > 1:
        problems.append(f"speckle noise_std is relative and must be <= 1, got {cfg.noise_std}")
    if not isinstance(cfg.p_absent, (int, float)) or not 0 <= cfg.p_absent <= 1:
        problems.append(f"p_absent must be in [0, 1], got {cfg.p_absent!r}")
    if not isinstance(cfg.supersample, int) or not 1 <= cfg.supersample <= 8:
        problems.append(f"supersample must be an integer in [1, 8], got {cfg.supersample!r}")
    for name in ("fov_mm", "spacing"):
        value = getattr(cfg, name)
        if value is not None and (not value or any(not np.isfinite(v) or v <= 0 for v in value)):
            problems.append(f"{name} must hold positive finite mm values, got {value}")
    if problems:
        raise ConfigError("invalid phantom config: " + "; ".join(problems))
