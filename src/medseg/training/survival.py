"""Training deep Cox models on the engine: an image in, a log-risk out (``docs/survival.md``).

``fit_survival`` describes the task and :func:`medseg.training.engine.run_training` runs it:
the config's network (``cox_head``), the negative Cox partial log-likelihood
(:func:`medseg.losses.cox.cox_partial_likelihood_loss`, Breslow ties) on each batch, AdamW
with a cosine learning rate (on the clock with a time budget), and after each epoch Harrell's
C-index of the validation cases (``val_c_index``), which picks ``checkpoint_best.pt``.

**Batches.** The partial likelihood compares each event with the cases of its *batch* still
at risk, so a batch needs several events. The default batch is 32 cases (at least 16 are
advised) and every epoch's batches are *stratified by event*: the events and the censored
cases are each shuffled and spread evenly over the batches, so each batch holds about the
data's share of events (a batch of 32 at 30 % censoring: 22 events, never fewer than
``floor(32 * event share)``); a final batch with fewer than 2 events is dropped.

Images are normalised by the training set's mean and standard deviation per channel
(stored in the config), so ``predict_risk`` needs only the run folder.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.data.survival_table import MIN_EVENTS_PER_BATCH, check_outcomes
from medseg.device import bf16_supported, resolve_device
from medseg.errors import ConfigError, DatasetError
from medseg.losses.cox import cox_partial_likelihood_loss
from medseg.metrics.survival import concordance_index
from medseg.nets import build_network
from medseg.training.checkpoint import load_checkpoint
from medseg.training.engine import RunResult, Task, run_training
from medseg.training.schedule import OPTIMIZERS, run_lr_factor

#: Networks with one log-risk output.
SURVIVAL_NETWORKS = ("cox_head",)
PANELS = (
    ("loss", ("train_loss", "val_loss"), "linear"),
    ("validation", ("val_c_index",), "unit"),
)


@dataclass
class SurvivalConfig:
    """Everything that rebuilds and retrains a survival model (``config.json``, checkpoints).

    Attributes:
        network: ``"cox_head"``; encoder, encoder_config, dropout: its options.
        spatial_dims, in_channels, image_shape: the training images.
        intensity_mean, intensity_std: per channel, measured on the training images.
        batch_size: cases per step (>= 2; >= 16 advised, see the module docstring).
        learning_rate, weight_decay: AdamW; epochs: the most epochs; seed: weights and batches.
    """

    network: str = "cox_head"
    encoder: str = "plain"
    encoder_config: dict[str, Any] = field(default_factory=lambda: {"features": [8, 16, 32]})
    dropout: float = 0.0
    spatial_dims: int = 2
    in_channels: int = 1
    image_shape: list[int] = field(default_factory=list)
    intensity_mean: list[float] = field(default_factory=list)
    intensity_std: list[float] = field(default_factory=list)
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        if self.network not in SURVIVAL_NETWORKS:
            raise ConfigError(
                f"network '{self.network}' has no log-risk output; "
                f"use {', '.join(SURVIVAL_NETWORKS)}"
            )
        if self.spatial_dims not in (1, 2, 3):
            raise ConfigError(f"spatial_dims must be 1, 2 or 3, got {self.spatial_dims}")
        if self.batch_size < 2 or self.epochs < 1 or self.in_channels < 1:
            raise ConfigError("survival training needs batch_size >= 2, epochs >= 1, channels >= 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.dropout < 1 or self.seed < 0:
            raise ConfigError("dropout must be in [0, 1) and seed >= 0")

    def to_dict(self) -> dict[str, Any]:
        return json_ready(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> SurvivalConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{source}: unknown survival setting(s) {unknown}; valid: {sorted(names)}"
            )
        return cls(**data)

    def build_network(self) -> torch.nn.Module:
        """The network, freshly initialised: ``(B, C, *spatial) -> (B, 1)`` log-risks."""
        return build_network(
            self.network,
            spatial_dims=self.spatial_dims,
            in_channels=self.in_channels,
            out_channels=1,
            encoder=self.encoder,
            encoder_config=dict(self.encoder_config),
            dropout=self.dropout,
        )


def json_ready(value: Any) -> Any:
    """Tuples as lists, recursively (so a config equals itself after a JSON round trip)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def config_for(images: np.ndarray, **options: Any) -> SurvivalConfig:
    """A config for ``images`` ``(N, C, *spatial)``: its shape and intensity statistics;
    ``options`` are further config fields."""
    axes = (0, *range(2, images.ndim))
    mean = images.mean(axis=axes, dtype=np.float64)
    std = np.maximum(images.std(axis=axes, dtype=np.float64), 1e-8)
    return SurvivalConfig(
        spatial_dims=images.ndim - 2,
        in_channels=int(images.shape[1]),
        image_shape=[int(s) for s in images.shape[2:]],
        intensity_mean=mean.tolist(),
        intensity_std=std.tolist(),
        **options,
    )


def normalize(images: np.ndarray, config: SurvivalConfig) -> torch.Tensor:
    """``(N, C, *spatial)`` float32, shifted and scaled by the config's statistics."""
    shape = (1, -1) + (1,) * config.spatial_dims
    mean = torch.tensor(config.intensity_mean, dtype=torch.float32).view(shape)
    std = torch.tensor(config.intensity_std, dtype=torch.float32).view(shape)
    return (torch.as_tensor(np.ascontiguousarray(images, dtype=np.float32)) - mean) / std


class EventStratifiedBatches:
    """An epoch's index batches with the events spread evenly (see the module docstring);
    seeded by the epoch, so a resumed run sees the same batches."""

    def __init__(self, event: np.ndarray, config: SurvivalConfig) -> None:
        self.event, self.config = np.asarray(event), config
        self.steps = max(1, math.ceil(len(self.event) / config.batch_size))

    def __call__(self, epoch: int) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([self.config.seed, epoch])
        keys = np.empty(len(self.event))
        for flag in (0, 1):  # each group evenly spaced over [0, 1), in a random order
            rows = np.flatnonzero(self.event == flag)
            keys[rows] = (rng.permutation(rows.size) + rng.uniform(size=rows.size)) / max(
                rows.size, 1
            )
        order = np.argsort(keys, kind="stable")
        for start in range(0, order.size, self.config.batch_size):
            index = order[start : start + self.config.batch_size]
            if self.event[index].sum() >= MIN_EVENTS_PER_BATCH:
                yield index


def fit_survival(
    images: np.ndarray,
    times: np.ndarray,
    events: np.ndarray,
    run_dir: str | os.PathLike[str],
    config: SurvivalConfig | None = None,
    *,
    val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    time_budget_s: float | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Train a Cox model on ``images`` ``(N, C, *spatial)`` with ``times``/``events`` ``(N,)``,
    validating on ``val`` (images, times, events) by Harrell's C each epoch.

    Writes ``run_dir/{config.json, checkpoint_latest.pt, checkpoint_best.pt, log.csv,
    curves.png}``. ``config`` None: :func:`config_for` the images with the defaults.

    Raises:
        DatasetError: times/events that are not one finite time >= 0 and one 0/1 flag per
            image, fewer than 2 events; images that do not match the config.
        ConfigError: existing checkpoints without ``resume``; a resumed run with another config.
    """
    images = np.asarray(images, dtype=np.float32)
    config = config_for(images) if config is None else config
    check_outcomes(times, events, len(images), "training data")
    if list(images.shape[1:]) != [config.in_channels, *config.image_shape]:
        raise DatasetError(
            f"training images {tuple(images.shape[1:])} do not match the config's "
            f"({config.in_channels}, {', '.join(map(str, config.image_shape))})"
        )
    if val is not None:
        check_outcomes(val[1], val[2], len(val[0]), "validation data")
    dev = resolve_device(device)
    task = survival_task(images, np.asarray(times), np.asarray(events), config, val, dev)
    return run_training(
        task,
        run_dir,
        epochs=config.epochs,
        use_bf16=bf16_supported(dev),
        time_budget_s=time_budget_s,
        resume=resume,
        progress=progress,
        description=f"train {config.network}",
    )


def survival_task(
    images: np.ndarray,
    times: np.ndarray,
    events: np.ndarray,
    config: SurvivalConfig,
    val: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    dev: torch.device,
) -> Task:
    """The Cox task on the engine (see the module docstring)."""
    torch.manual_seed(config.seed)
    model = config.build_network().to(dev)
    optimizer = OPTIMIZERS.build(
        "adamw", model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    batches = EventStratifiedBatches(events, config)
    x_all = normalize(images, config)
    target = torch.as_tensor(np.stack([times, events], 1), dtype=torch.float64)
    total = config.epochs * batches.steps

    def prepare(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.as_tensor(index)
        return x_all[rows].to(dev), target[rows].to(dev)

    def loss(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return cox_partial_likelihood_loss(model(batch[0]).float(), batch[1][:, 0], batch[1][:, 1])

    def set_learning_rate(step: int, fraction: float | None) -> None:
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * run_lr_factor(step, total, "cosine", fraction)

    def validate(use_bf16: bool, _rows: list[dict[str, Any]]) -> dict[str, float]:
        if val is None:
            return {}
        risk = torch.as_tensor(log_risks(model, val[0], config, device=dev, use_bf16=use_bf16))
        val_loss = cox_partial_likelihood_loss(
            risk, torch.as_tensor(val[1]), torch.as_tensor(val[2])
        )
        return {
            "val_loss": float(val_loss),
            "val_c_index": concordance_index(val[1], risk.numpy(), val[2]),
        }

    return Task(
        model=model,
        optimizer=optimizer,
        batches=batches,
        prepare=prepare,
        loss=loss,
        set_learning_rate=set_learning_rate,
        validate=validate,
        score=lambda row: row.get("val_c_index", -row["train_loss"]),
        checkpoint={"survival_config": config.to_dict()},
        files={"config.json": config.to_dict()},
        compatible=lambda checkpoint: _same_config(checkpoint, config),
        curves=PANELS,
        progress_keys=("train_loss", "val_c_index"),
        device=dev,
    )


@torch.no_grad()
def log_risks(
    model: torch.nn.Module,
    images: np.ndarray,
    config: SurvivalConfig,
    *,
    device: torch.device | None = None,
    use_bf16: bool = False,
    batch_size: int = 64,
) -> np.ndarray:
    """``(N,)`` float64 log-risks of ``images`` ``(N, C, *spatial)`` (the model in eval mode)."""
    from medseg.device import autocast

    model.eval()
    dev = device or next(model.parameters()).device
    x = normalize(images, config)
    out = []
    for start in range(0, len(x), batch_size):
        with autocast(dev, use_bf16):
            out.append(model(x[start : start + batch_size].to(dev)).float().cpu()[:, 0])
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def load_survival_model(
    run: str | os.PathLike[str], *, checkpoint: str = "best"
) -> tuple[torch.nn.Module, SurvivalConfig]:
    """The trained model (eval mode, CPU) and its config, from a run folder (its
    ``checkpoint_<checkpoint>.pt``) or a checkpoint file.

    Raises:
        ConfigError: no checkpoint, or one that is not a survival run's.
        UnsafeFileError: a file that would run code to load.
    """
    path = Path(run)
    path = path / f"checkpoint_{checkpoint}.pt" if path.is_dir() else path
    data = load_checkpoint(path, kind="weights")
    if "survival_config" not in data or "network_state" not in data:
        raise ConfigError(f"{path}: not a survival model checkpoint (no survival_config)")
    config = SurvivalConfig.from_dict(dict(data["survival_config"]), source=str(path))
    model = config.build_network()
    model.load_state_dict(data["network_state"])
    return model.eval(), config


def predict_risk(
    run_dir: str | os.PathLike[str], images: np.ndarray, *, device: str | None = None
) -> np.ndarray:
    """``(N,)`` log-risks (higher: earlier event) of ``images`` ``(N, C, *spatial)`` by the
    run's best checkpoint, in the order given.

    Raises:
        ConfigError: no survival checkpoint in ``run_dir``.
        DatasetError: images of another channel count or size than the training images'.
    """
    model, config = load_survival_model(run_dir)
    images = np.asarray(images, dtype=np.float32)
    if list(images.shape[1:]) != [config.in_channels, *config.image_shape]:
        raise DatasetError(
            f"images {tuple(images.shape[1:])} do not match the model's training images "
            f"({config.in_channels}, {', '.join(map(str, config.image_shape))})"
        )
    dev = resolve_device(device)
    return log_risks(model.to(dev), images, config, device=dev)


def _same_config(checkpoint: dict[str, Any], config: SurvivalConfig) -> bool:
    """Resuming may extend the epoch count; everything else must match."""
    try:
        saved = SurvivalConfig.from_dict(dict(checkpoint["survival_config"]))
    except (KeyError, ConfigError, TypeError):
        return False
    return saved.to_dict() | {"epochs": 0} == config.to_dict() | {"epochs": 0}
