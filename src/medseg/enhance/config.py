"""The denoiser's training configuration: a dataclass saved as readable JSON in every run.

A run folder holds ``config.json`` and checkpoints whose ``denoise_config`` entry is the same
dictionary, so :func:`medseg.enhance.apply.load_denoiser` rebuilds the model from the
checkpoint alone.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from medseg.data.noise_models import parse_noise
from medseg.errors import ConfigError
from medseg.fileutil import write_json_atomic

Mode = Literal["supervised", "n2n", "super_resolution"]
LossName = Literal["l1", "l2", "ssim", "mix"]
MODES: tuple[str, ...] = get_args(Mode)
LOSSES: tuple[str, ...] = get_args(LossName)
DEFAULT_PATCH = {2: (64, 64), 3: (32, 32, 32)}


@dataclass(frozen=True)
class DenoiseConfig:
    """How a denoiser is trained.

    Attributes:
        noise: ``"<model>:<level>"`` (``medseg.enhance.noise``): the noise added to clean
            images in ``supervised`` mode and to simulate pairs from a plain dataset in ``n2n``
            mode (recorded, unused, for a pairs folder in ``n2n`` mode).
        mode: ``supervised`` (clean target, noisy input drawn afresh every step), ``n2n``
            (noise2noise: one noisy realisation in, the other as target; no clean image read)
            or ``super_resolution`` (through-plane: the input is the clean image averaged
            over ``sr_factor`` slices along ``sr_axis`` and interpolated back linearly, the
            target the clean image; ``noise`` is recorded, unused; see
            ``medseg.enhance.super_resolution``).
        loss: ``l1``, ``l2``, ``ssim`` (``1 - SSIM`` on the normalised images, data range 1)
            or ``mix`` (``0.84 (1 - SSIM) + 0.16 L1``, Zhao et al. 2017). ``n2n`` needs a loss
            whose minimiser under zero-mean target noise is the clean image: ``l2`` (default).
        spatial_dims: 2 or 3 (None: from the data).
        in_channels: image channels (None: from the data).
        features: U-Net widths per stage (``medseg.nets.residual_unet``).
        patch_size: training crop per axis (None: 64 x 64 in 2D, 32^3 in 3D), capped at the
            median image size and rounded down to a multiple of the network's divisor;
            smaller images are mirror-padded to it when cropped.
        batch_size, steps_per_epoch, epochs: the schedule (epochs bounded by a time budget).
        learning_rate, weight_decay: AdamW, cosine decay to zero over the run (or budget).
        val_fraction: share of cases held out for validation PSNR (at least one case is kept
            for training; none held out with a single case).
        val_data_range: the data range of validation PSNR; None: each reference image's
            ``max - min`` (supervised: the clean image; n2n: the second noisy copy).
        seed: split, weights, noise draws and crops.
        sr_factor: super-resolution: thin slices per thick slice (e.g. 5 for 5 mm from 1 mm).
        sr_axis: super-resolution: the slice axis, a spatial array axis (0 = first; ``z`` of
            a ``(z, y, x)`` volume).
    """

    noise: str = "rician:0.05"
    mode: Mode = "supervised"
    loss: LossName = "l2"
    spatial_dims: int | None = None
    in_channels: int | None = None
    features: tuple[int, ...] = (32, 64, 128)
    patch_size: tuple[int, ...] | None = None
    batch_size: int = 8
    steps_per_epoch: int = 50
    epochs: int = 40
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    val_data_range: float | None = None
    seed: int = 0
    sr_factor: int = 4
    sr_axis: int = 0
    schema_version: int = 1

    def __post_init__(self) -> None:
        parse_noise(self.noise)
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r}: one of {', '.join(MODES)}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss {self.loss!r}: one of {', '.join(LOSSES)}")
        if self.spatial_dims not in (None, 2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        for name in ("batch_size", "steps_per_epoch", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_data_range is not None and not self.val_data_range > 0:
            raise ConfigError(f"val_data_range must be > 0, got {self.val_data_range}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.mode == "super_resolution" and int(self.sr_factor) < 2:
            raise ConfigError(f"sr_factor must be >= 2 for super-resolution, got {self.sr_factor}")
        dims = self.spatial_dims or 3
        if not 0 <= int(self.sr_axis) < dims:
            raise ConfigError(f"sr_axis must be a spatial axis in [0, {dims}), got {self.sr_axis}")

    def resolved_patch(self) -> tuple[int, ...]:
        """The asked patch size, or the default of ``spatial_dims``."""
        if self.patch_size is not None:
            return tuple(int(p) for p in self.patch_size)
        return DEFAULT_PATCH[self.spatial_dims or 2]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> DenoiseConfig:
        """Rebuild from :meth:`to_dict`; unknown keys are an error naming them.

        Raises:
            ConfigError: unknown keys or invalid values.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown denoise config keys {unknown}")
        values = dict(data)
        for key in ("features", "patch_size"):
            if values.get(key) is not None:
                values[key] = tuple(int(v) for v in values[key])
        return cls(**values)

    def to_json(self, path: str | os.PathLike[str]) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> DenoiseConfig:
        """Read ``config.json``.

        Raises:
            ConfigError: unreadable JSON, unknown keys or invalid values.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the denoise config ({err})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the denoise config is not a JSON object")
        return cls.from_dict(data, source=str(path))
