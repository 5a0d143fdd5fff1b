"""The settings of a learnt-registration run (:class:`RegistrationConfig`) and the model they
build (:class:`RegistrationModel`: VoxelMorph, optionally integrating a velocity field)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.voxelmorph import VoxelMorph
from medseg.registration.data import NORMALISATIONS
from medseg.registration.pairs import DEFAULT_PAIR_PATTERN, PAIR_MODES, compile_pattern
from medseg.registration.warp import integrate_velocity, warp

CONFIG_KEY = "registration_config"
LOSSES = ("ncc", "mse")


@dataclass
class RegistrationConfig:
    """A VoxelMorph run, saved as ``config.json`` and in every checkpoint.

    Attributes:
        dataset: the dataset folder (nnU-Net v2 / MSD layout).
        spatial_dims: 2 or 3 (set from the data).
        shape: the padded training shape (set from the data when empty).
        atlas: a case id: every pair registers a training case onto it; None: random
            inter-subject pairs.
        pairs: ``"random"`` (inter-subject, or onto ``atlas``) or ``"same-subject"``: the two
            frames of each subject (:mod:`.pairs`), split by subject.
        pair_pattern, moving_frame, both_directions: the same-subject rule (a regex with the
            groups ``subject`` and ``frame``; the moving frame, default the first sorted;
            also the reverse pairs).
        pairs_file: a JSON list of ``[moving, fixed]`` case ids used instead (any mode).
        loss: image similarity, ``"ncc"`` (local, ``window``) or ``"mse"``.
        smooth: weight of the gradient smoothness of the predicted field (VoxelMorph: 1 with
            NCC, 0.01 with MSE).
        label_weight: weight of ``1 - Dice`` of the warped moving labels (0: unsupervised).
        diffeomorphic: the network predicts a stationary velocity, integrated by scaling and
            squaring (``integration_steps``).
        downsize: the network sees the pair average-pooled by this factor and its field is
            up-sampled (linear) and scaled back: ``downsize ** spatial_dims`` times less
            compute; losses and warps stay at full resolution (1: VoxelMorph's full-resolution
            network; its diffeomorphic variant integrates at half resolution likewise).
        features, decoder_features, final_features: the VoxelMorph U-Net's channels.
        normalisation: per-image intensity normalisation, ``"percentile"`` or ``"zscore"``.
        learning_rate: Adam's (VoxelMorph: 1e-4), constant.
        batch_size, steps_per_epoch, epochs: pairs per step, steps per epoch, epochs.
        val_fraction: share of cases held out; ``val_pairs`` pairs of them validate.
        seed: split, pair order and weight initialisation.
        exclude: case ids left out of training and validation (a test set).
    """

    dataset: str
    spatial_dims: int = 3
    shape: tuple[int, ...] = ()
    atlas: str | None = None
    pairs: str = "random"
    pair_pattern: str = DEFAULT_PAIR_PATTERN
    moving_frame: str | None = None
    both_directions: bool = False
    pairs_file: str | None = None
    loss: str = "ncc"
    window: int = 9
    smooth: float = 1.0
    label_weight: float = 0.0
    diffeomorphic: bool = False
    integration_steps: int = 7
    downsize: int = 1
    features: tuple[int, ...] = (16, 32, 32, 32)
    decoder_features: tuple[int, ...] = (32, 32, 32, 32)
    final_features: tuple[int, ...] = (32, 16, 16)
    normalisation: str = "percentile"
    learning_rate: float = 1e-4
    batch_size: int = 1
    steps_per_epoch: int = 100
    epochs: int = 50
    val_fraction: float = 0.2
    val_pairs: int = 20
    seed: int = 0
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("shape", "features", "decoder_features", "final_features"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        self.exclude = tuple(str(c) for c in self.exclude)
        if self.loss not in LOSSES:
            raise ConfigError(f"loss {self.loss!r}: use one of {', '.join(LOSSES)}")
        if self.normalisation not in NORMALISATIONS:
            raise ConfigError(
                f"normalisation {self.normalisation!r}: use one of {', '.join(NORMALISATIONS)}"
            )
        if self.smooth < 0 or self.label_weight < 0 or self.learning_rate <= 0:
            raise ConfigError("smooth and label_weight must be >= 0, learning_rate > 0")
        if min(self.batch_size, self.steps_per_epoch, self.epochs, self.val_pairs) < 1:
            raise ConfigError("batch_size, steps_per_epoch, epochs and val_pairs must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.window < 1 or self.window % 2 == 0 or self.integration_steps < 0:
            raise ConfigError("window must be an odd int >= 1, integration_steps >= 0")
        if self.pairs not in PAIR_MODES:
            raise ConfigError(f"pairs {self.pairs!r}: use one of {', '.join(PAIR_MODES)}")
        compile_pattern(self.pair_pattern)
        if self.atlas and (self.listed_pairs):
            raise ConfigError("an atlas registers random cases onto one: not with listed pairs")
        if self.downsize < 1:
            raise ConfigError(f"downsize must be an int >= 1, got {self.downsize}")

    @property
    def listed_pairs(self) -> bool:
        """Pairs come from a list (same-subject frames or ``pairs_file``), not at random."""
        return self.pairs != "random" or self.pairs_file is not None

    @property
    def divisor(self) -> int:
        """What the padded shape must be a multiple of: ``downsize * 2 ** len(features)``."""
        return self.downsize * 2 ** len(self.features)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> RegistrationConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown registration settings {unknown}")
        try:
            return cls(**data)
        except TypeError as err:
            raise ConfigError(f"{source}: bad registration config ({err})") from None


class RegistrationModel(nn.Module):
    """VoxelMorph on ``cat(moving, fixed)``; returns ``(warped, flow, field)`` where ``field``
    is what the network predicted (the velocity when diffeomorphic, else the flow)."""

    def __init__(self, config: RegistrationConfig) -> None:
        super().__init__()
        self.diffeomorphic, self.steps = config.diffeomorphic, config.integration_steps
        self.downsize = config.downsize
        self.net = VoxelMorph(
            config.spatial_dims,
            2,
            config.spatial_dims,
            features=config.features,
            decoder_features=config.decoder_features,
            final_features=config.final_features,
        )

    def forward(self, moving: Tensor, fixed: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        pair = torch.cat([moving, fixed], dim=1)
        dims = pair.ndim - 2
        if self.downsize > 1:
            pair = (
                F.avg_pool3d(pair, self.downsize)
                if dims == 3
                else F.avg_pool2d(pair, self.downsize)
            )
        predicted = self.net(pair).float()
        flow = integrate_velocity(predicted, self.steps) if self.diffeomorphic else predicted
        if self.downsize > 1:  # a flow in coarse voxels -> full-resolution voxels
            mode = "trilinear" if dims == 3 else "bilinear"
            flow = self.downsize * F.interpolate(
                flow, size=moving.shape[2:], mode=mode, align_corners=True
            )
        return warp(moving.float(), flow), flow, predicted
