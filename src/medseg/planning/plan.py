"""``Plan``: one configuration's complete recipe, and ``Plans``: all configurations of a dataset.

Plans are frozen dataclasses saved as readable JSON (indent 2, sorted keys) with a schema
version; unknown keys are refused so a typo never passes silently. Every chosen value has a
sentence in ``reasons`` (printed by ``medseg plan --explain``). Variants are
``dataclasses.replace(plan, ...)``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError
from medseg.fileutil import write_json_atomic
from medseg.planning.config_io import config_from_dict, config_to_dict, json_values

SCHEMA_VERSION = 1
CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")
PRECISIONS = ("auto", "bf16", "fp32")
SAMPLING_MODES = ("oversample", "balanced", "uniform")
VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")


@dataclass(frozen=True)
class Plan:
    """How to preprocess, build, train and infer one configuration.

    Attributes:
        configuration: ``2d``, ``3d_fullres``, ``3d_lowres`` or ``3d_cascade_fullres``.
        spatial_dims: 2 for ``2d`` (slices of 3D data along array axis 0), else 3.
        spacing: target spacing in mm, array axis order (for ``2d`` on 3D data: the full
            3D spacing; axis 0 is kept).
        median_shape: median case shape at the target spacing (voxels).
        patch_size: training patch (``spatial_dims`` entries).
        batch_size: patches per step.
        normalization: per channel ``"zscore"`` (per case) or ``"ct"`` (clip to the
            foreground 0.5/99.5 percentiles, then global z-score).
        intensity: per channel fingerprint statistics (used by ``"ct"``).
        num_classes: output channels (background included).
        in_channels: input channels of the network: the image channels plus, for a cascade
            stage, one channel per foreground class of the previous stage's segmentation.
        network: registry name of the network.
        network_config: keyword arguments of the network builder (features, kernel_sizes,
            strides, norm, act, deep_supervision, ...).
        loss, optimizer, learning_rate, weight_decay, momentum, lr_schedule: training recipe.
        num_epochs, steps_per_epoch: the step budget (a time budget may stop earlier).
        foreground_oversampling: share of each batch centred on foreground.
        augmentation: transform preset name.
        labels: label name -> value from dataset.json.
        reasons: field -> why it was chosen.
        previous_stage: the configuration whose predicted segmentation is fed, one-hot per
            foreground class, as extra input channels (``"3d_lowres"`` for
            ``3d_cascade_fullres``); None for a single-stage configuration.
        precision: ``"bf16"`` or ``"fp32"`` autocast for training, decided when planning
            measured a step in a child process (``fp32`` where a bf16 step crashed or hung
            in a native kernel), or ``"auto"``: bf16 where the device supports it natively,
            checked by one step in a child process when training starts.
        data_configuration: the configuration whose preprocessed case store this one trains
            on, when it shares it (the cascade shares ``3d_fullres``'s: same spacing and
            normalisation; a variant its base configuration's when preprocessing is the same);
            None: its own, ``preprocessed/<name>``.
        variant: a name for one of several plans of the same configuration (``--variant
            attn``): the plan is stored, trained and predicted as ``<configuration>-<variant>``
            (:attr:`name`); None: the configuration's main plan.
        loss_config: keyword options of the loss (e.g. Tversky's ``alpha``/``beta``).
        sampling: patch sampling, ``oversample`` (nnU-Net: ``foreground_oversampling`` of each
            batch centred on foreground), ``balanced`` (every patch on a class drawn
            uniformly) or ``uniform``.
        mirror_axes: patch axes (0 = first axis of the network's patch) that may be mirrored,
            in training and test-time augmentation alike; None: every axis.
        elastic: probability of elastic deformation per sample (0: off, nnU-Net v2's default).
        ignore_label: the value of the ``ignore`` label of ``dataset.json`` (sparse
            annotations): its voxels count in no loss, sampler or metric; None: dense labels.
        n4_channels: image channels given N4 bias-field correction before normalisation.
        histogram_landmarks: channel index (str) -> the dataset's reference intensity
            landmarks (Nyul-Udupa percentiles); those channels are histogram-matched to it
            before normalisation.
        stain_normalizer: a fitted stain normaliser's ``to_dict()`` (Macenko or Reinhard,
            ``medseg.transforms.stain_normalizer_from_config``) applied to the RGB image before
            resampling, in preprocessing and prediction alike; ``{}``: none.
    """

    configuration: str
    spatial_dims: int
    spacing: tuple[float, ...]
    median_shape: tuple[int, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    normalization: tuple[str, ...]
    intensity: dict[str, dict[str, float]]
    num_classes: int
    in_channels: int
    labels: dict[str, Any]
    network: str = "unet"
    network_config: dict[str, Any] = field(default_factory=dict)
    loss: str = "dice_ce"
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    weight_decay: float = 3e-5
    momentum: float = 0.99
    lr_schedule: str = "poly"
    num_epochs: int = 1000
    steps_per_epoch: int = 250
    foreground_oversampling: float = 0.33
    augmentation: str = "nnunet_default"
    reasons: dict[str, str] = field(default_factory=dict)
    previous_stage: str | None = None
    data_configuration: str | None = None
    precision: str = "auto"
    variant: str | None = None
    loss_config: dict[str, Any] = field(default_factory=dict)
    sampling: str = "oversample"
    mirror_axes: tuple[int, ...] | None = None
    elastic: float = 0.0
    ignore_label: int | None = None
    n4_channels: tuple[int, ...] = ()
    histogram_landmarks: dict[str, list[float]] = field(default_factory=dict)
    stain_normalizer: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.configuration not in CONFIGURATIONS:
            raise ConfigError(
                f"configuration must be one of {CONFIGURATIONS}, got '{self.configuration}'"
            )
        if self.variant is not None and not VARIANT_NAME.fullmatch(self.variant):
            raise ConfigError(
                f"variant must be lower-case letters, digits and '_' (at most 32), "
                f"got {self.variant!r}"
            )
        if self.previous_stage is not None and (
            self.previous_stage not in CONFIGURATIONS or self.previous_stage == self.configuration
        ):
            raise ConfigError(
                f"{self.name}: previous_stage must be another configuration of "
                f"{CONFIGURATIONS} or null, got '{self.previous_stage}'"
            )
        if self.data_configuration is not None and self.data_configuration == self.name:
            raise ConfigError(
                f"{self.name}: data_configuration must name another plan or be null, "
                f"got '{self.data_configuration}'"
            )
        if self.previous_stage is not None and self.in_channels <= self.previous_stage_channels:
            raise ConfigError(
                f"{self.configuration}: in_channels {self.in_channels} must exceed the "
                f"{self.previous_stage_channels} one-hot channels of the previous stage"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"{self.configuration}: precision must be one of {PRECISIONS}, "
                f"got '{self.precision}'"
            )
        self._check_choices()
        if len(self.patch_size) != self.spatial_dims:
            raise ConfigError(
                f"patch_size {self.patch_size} does not have {self.spatial_dims} entries"
            )
        # JSON gives lists; keep tuples so plans compare equal after a round trip
        for name in ("spacing", "median_shape", "patch_size", "normalization", "n4_channels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.mirror_axes is not None:
            object.__setattr__(self, "mirror_axes", tuple(int(a) for a in self.mirror_axes))
        for name in ("network_config", "loss_config", "histogram_landmarks", "stain_normalizer"):
            object.__setattr__(self, name, json_values(dict(getattr(self, name))))

    def _check_choices(self) -> None:
        """The sampling, mirroring, elastic, ignore-label and N4 fields are in range."""
        if self.sampling not in SAMPLING_MODES:
            raise ConfigError(
                f"{self.name}: sampling must be one of {', '.join(SAMPLING_MODES)}, "
                f"got '{self.sampling}'"
            )
        axes = self.mirror_axes or ()
        if len(set(axes)) != len(axes) or any(not 0 <= a < self.spatial_dims for a in axes):
            raise ConfigError(
                f"{self.name}: mirror_axes must be distinct patch axes in "
                f"0..{self.spatial_dims - 1}, got {list(axes)}"
            )
        if not 0.0 <= self.elastic <= 1.0:
            raise ConfigError(
                f"{self.name}: elastic is a probability in [0, 1], got {self.elastic}"
            )
        clash = [k for k, v in self.labels.items() if k != "ignore" and v == self.ignore_label]
        if self.ignore_label is not None and clash:
            raise ConfigError(
                f"{self.name}: ignore label {self.ignore_label} collides with class "
                f"'{clash[0]}' of the same value"
            )
        channels = range(self.in_channels - self.previous_stage_channels)
        bad = [
            c for c in (*self.n4_channels, *map(int, self.histogram_landmarks)) if c not in channels
        ]
        if bad:
            raise ConfigError(
                f"{self.name}: N4/histogram channel(s) {bad} are not image channels "
                f"(0..{len(channels) - 1})"
            )
        self._check_colour(len(channels))

    def _check_colour(self, image_channels: int) -> None:
        """A stain normaliser and the ``pathology`` preset need RGB images; the preset also
        needs colour values kept as colour (normalisation ``rgb`` or ``none``)."""
        from medseg.transforms import stain_normalizer_from_config

        if (self.stain_normalizer or self.augmentation == "pathology") and image_channels != 3:
            raise ConfigError(
                f"{self.name}: stain normalisation and the pathology augmentation need RGB "
                f"images (3 channels), this plan has {image_channels}"
            )
        if self.stain_normalizer:
            stain_normalizer_from_config(self.stain_normalizer)  # a bad config: ConfigError
        colour = {"rgb", "none"}
        if self.augmentation == "pathology" and not set(self.normalization[:3]) <= colour:
            raise ConfigError(
                f"{self.name}: the pathology augmentation works on colour values: set the "
                f"normalization of the 3 channels to rgb, not {list(self.normalization)}"
            )

    @property
    def name(self) -> str:
        """The key of this plan in ``plans.json`` and its results folder:
        ``<configuration>`` or ``<configuration>-<variant>``."""
        return f"{self.configuration}-{self.variant}" if self.variant else self.configuration

    @property
    def previous_stage_channels(self) -> int:
        """Input channels holding the previous stage's one-hot segmentation (0 without one)."""
        return self.num_classes - 1 if self.previous_stage is not None else 0

    @property
    def image_channels(self) -> int:
        """Input channels that come from the image itself."""
        return self.in_channels - self.previous_stage_channels

    @property
    def store_configuration(self) -> str:
        """Name of the preprocessed case store this configuration trains on
        (``RESULTS/preprocessed/<store_configuration>``)."""
        return self.data_configuration or self.name

    @property
    def patch_spacing(self) -> tuple[float, ...]:
        """Spacing of the patch axes (the in-plane axes for ``2d`` on 3D data)."""
        return self.spacing[-self.spatial_dims :]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "plan") -> Plan:
        """The plan from :meth:`to_dict`'s dict; unknown keys and newer schemas are refused."""
        return config_from_dict(
            cls, data, source=source, kind="plan", schema_version=SCHEMA_VERSION
        )


@dataclass(frozen=True)
class Plans:
    """All configurations planned for one dataset, plus where the data came from."""

    dataset_name: str
    dataset_path: str
    configurations: dict[str, Plan]
    recommended: str | None = None  # set by a time budget: the configuration to train
    schema_version: int = SCHEMA_VERSION

    def __getitem__(self, name: str) -> Plan:
        if name not in self.configurations:
            raise ConfigError(
                f"no configuration '{name}' in the plans; planned: {sorted(self.configurations)}"
            )
        return self.configurations[name]

    def to_json(self, path: str | os.PathLike[str]) -> None:
        data = {
            "dataset_name": self.dataset_name,
            "dataset_path": self.dataset_path,
            "schema_version": self.schema_version,
            "recommended": self.recommended,
            "configurations": {k: v.to_dict() for k, v in self.configurations.items()},
        }
        write_json_atomic(path, data)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Plans:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: no plans file; run 'medseg plan DATASET -o RESULTS' first")
        data = json.loads(path.read_text(encoding="utf-8"))
        unknown = sorted(
            set(data)
            - {"dataset_name", "dataset_path", "schema_version", "configurations", "recommended"}
        )
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown}")
        configs = {
            k: Plan.from_dict(v, source=f"{path} [{k}]") for k, v in data["configurations"].items()
        }
        return cls(
            data["dataset_name"],
            data["dataset_path"],
            configs,
            data.get("recommended"),
            data.get("schema_version", SCHEMA_VERSION),
        )
