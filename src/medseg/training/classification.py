"""Training image classifiers and regressors on the engine: whole images in, one label out.

``fit_classifier`` describes the task and :func:`medseg.training.engine.run_training` runs
it: batches of whole images (a class-balanced order by default, or class-weighted
cross-entropy), the plan's augmentation presets on tensors, the loss registered for the
config (``medseg.losses``: cross-entropy, MSE, L1, the capsule margin loss), validation each
epoch (accuracy and ROC AUC, or MAE and RMSE) and the best checkpoint by AUC (or MAE). A
checkpoint holds the ``ClassifierConfig`` (``medseg.planning.classifier``), so a model is
rebuilt from the file alone.

With a time budget the learning-rate schedule runs on the fraction of the budget used, so the
rate reaches its floor when the time is up rather than at an epoch count that is never reached.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medseg.data.classification import balanced_sample_weights, class_weights
from medseg.device import autocast, bf16_supported, resolve_device
from medseg.errors import ConfigError
from medseg.losses import build_loss
from medseg.losses.margin import capsule_loss
from medseg.metrics.classification import selection_metric, validation_metrics
from medseg.planning.classifier import (
    LOSS_NAMES,
    ClassifierConfig,
    normalize_images,
    score_images,
    training_targets,
)
from medseg.training.checkpoint import build_classifier
from medseg.training.engine import RunResult, Task, run_training
from medseg.training.schedule import OPTIMIZERS, run_lr_factor
from medseg.training.transfer import (
    freeze_backbone,
    keep_frozen_in_eval,
    load_pretrained,
    parameter_groups,
)
from medseg.transforms import build_transform

log = logging.getLogger(__name__)

CLASSIFICATION_PANELS = (
    ("loss", ("train_loss", "val_loss"), "linear"),
    ("validation", ("val_auc", "val_accuracy"), "unit"),
)
REGRESSION_PANELS = (
    ("loss", ("train_loss",), "linear"),
    ("validation", ("val_mae", "val_rmse"), "linear"),
)


@dataclass
class ImageBatches:
    """An epoch's batches of whole images: index batches in a class-balanced order (or a
    permutation), then normalised and augmented on the device (:meth:`prepare`)."""

    data: Any
    config: ClassifierConfig
    device: torch.device

    def __post_init__(self) -> None:
        self.targets = training_targets(self.data.labels, self.config)
        augmentation, dims = self.config.augmentation, self.config.spatial_dims
        self.augment = (
            None if augmentation == "none" else build_transform(augmentation, spatial_dims=dims)
        )
        self.steps = max(1, math.ceil(len(self.data.labels) / self.config.batch_size))

    def __call__(self, epoch: int) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        if self.augment is not None:
            self.augment.reseed(self.config.seed * 7919 + epoch)
        order = _epoch_order(self.data.labels, self.config, generator)
        for start in range(0, len(order), self.config.batch_size):
            index = order[start : start + self.config.batch_size]
            if len(index) >= 2 or len(order) == 1:  # a batch of one breaks batch norm
                yield index

    def prepare(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = normalize_images(self.data.images[index.numpy()], self.config).to(self.device)
        if self.augment is not None:
            x = self.augment(x)[0]
        return x, self.targets[index].to(self.device)


def fit_classifier(
    train: Any,
    val: Any | None,
    run_dir: str | os.PathLike[str],
    config: ClassifierConfig,
    *,
    epochs: int | None = None,
    time_budget_s: float | None = None,
    resume: bool = False,
    device: str | None = None,
    amp: bool | None = None,
    progress: bool = True,
) -> RunResult:
    """Train ``config`` on ``train`` (a ``ClassificationSet``), validating on ``val`` each epoch.

    Writes ``run_dir/{config.json, checkpoint_latest.pt, checkpoint_best.pt, log.csv, curves.png}``.

    Args:
        epochs: overrides ``config.epochs``; with ``time_budget_s`` it is an upper bound.
        time_budget_s: stop after this many seconds of training (the last epoch ends early).
        resume: continue from ``checkpoint_latest.pt`` (the config must be the same).
        device: "cpu", "cuda", or None/"auto".
        amp: bf16 autocast; None = where it is faster (CUDA with bf16, AVX-512 BF16 CPUs).

    Raises:
        ConfigError: existing checkpoints without ``resume``; a resumed run with another config;
            training images that do not match the config.
        LockedError: another process trains into ``run_dir``.
        MedsegError: on Ctrl-C, after saying how to resume (completed epochs are saved).
    """
    if train.images.shape[1] != config.in_channels:
        raise ConfigError(
            f"training images have {train.images.shape[1]} channels, "
            f"the config {config.in_channels}"
        )
    dev = resolve_device(device)
    epochs = config.epochs if epochs is None else epochs
    task = classification_task(config, ImageBatches(train, config, dev), val, epochs)
    return run_training(
        task,
        run_dir,
        epochs=epochs,
        use_bf16=bf16_supported(dev) if amp is None else amp,
        time_budget_s=time_budget_s,
        resume=resume,
        progress=progress,
        description=f"train {config.network}",
    )


def classification_task(
    config: ClassifierConfig, batches: ImageBatches, val: Any | None, epochs: int
) -> Task:
    """The classification task on the engine: the config's network (pretrained weights, frozen
    backbone), its registered loss in float32, the backbone/head optimiser groups, an LR
    schedule on steps (or on the time budget's clock), validation on ``val``."""
    model, optimizer = _model_and_optimizer(config, batches.device)
    loss_fn = _loss_function(config, batches.data.labels, batches.device)
    reconstructs = config.resolved_loss == "margin" and getattr(model, "decoder", None) is not None
    dev = batches.device

    def loss(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        if reconstructs:  # capsule network: margin loss + 0.0005 x reconstruction of [0, 1] images
            outputs, reconstruction = model.forward_with_reconstruction(x, y)
            with autocast(dev, False):
                return capsule_loss(outputs.float(), y, reconstruction.float(), _unit_range(x))
        outputs = model(x)
        with autocast(dev, False):  # the loss in float32, whatever the forward pass used
            return loss_fn(outputs, y)

    def set_learning_rate(step: int, budget_fraction: float | None) -> None:
        factor = run_lr_factor(step, epochs * batches.steps, config.lr_schedule, budget_fraction)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    has_validation = val is not None and len(val.labels) > 0
    return Task(
        model=model,
        optimizer=optimizer,
        batches=batches,
        prepare=batches.prepare,
        loss=loss,
        set_learning_rate=set_learning_rate,
        validate=lambda use_bf16, _: validation_row(model, val, config, dev, use_bf16),
        score=lambda row: _score(row, config, has_validation=has_validation),
        train_mode=lambda: (model.train(), keep_frozen_in_eval(model)),
        checkpoint={"classifier_config": config.to_dict()},
        files={"config.json": config.to_dict()},
        compatible=lambda checkpoint: _same_config(checkpoint, config),
        curves=CLASSIFICATION_PANELS if config.task == "classification" else REGRESSION_PANELS,
        progress_keys=("train_loss", "val_auc", "val_accuracy", "val_mae"),
        device=dev,
    )


def _model_and_optimizer(
    config: ClassifierConfig, dev: torch.device
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The config's network (seeded; pretrained weights loaded, backbone frozen as asked) on
    ``dev``, and its optimiser with the backbone's learning rate scaled."""
    torch.manual_seed(config.seed)
    model = build_classifier(config)
    if config.pretrained:
        report = load_pretrained(model, config.pretrained)
        log.info("pretrained weights from %s: %s", config.pretrained, report.summary())
    if config.freeze == "backbone":
        freeze_backbone(model)
    model.to(dev)
    groups = parameter_groups(model, config.learning_rate, config.backbone_lr_factor)
    optimizer = OPTIMIZERS.build(
        config.optimizer,
        groups,
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        momentum=0.9,
    )
    return model, optimizer


def _loss_function(config: ClassifierConfig, labels: np.ndarray, dev: torch.device) -> nn.Module:
    """The registered loss of the config; class-weighted cross-entropy with
    ``class_weighting="loss"``."""
    if (
        config.resolved_loss == "ce"
        and config.class_weighting == "loss"
        and config.task == "classification"
    ):
        weight = torch.as_tensor(
            class_weights(np.asarray(labels).reshape(-1), config.num_outputs), dtype=torch.float32
        )
        return build_loss(LOSS_NAMES["ce"], weight=weight.to(dev))
    return build_loss(LOSS_NAMES[config.resolved_loss])


def _epoch_order(
    labels: np.ndarray, config: ClassifierConfig, generator: torch.Generator
) -> torch.Tensor:
    """The epoch's sample order: class-balanced draws with replacement, or a permutation."""
    if config.task == "classification" and config.class_weighting == "sampler":
        weights = torch.as_tensor(balanced_sample_weights(np.asarray(labels).reshape(-1)))
        return torch.multinomial(weights, len(labels), replacement=True, generator=generator)
    return torch.randperm(len(labels), generator=generator)


def _unit_range(x: torch.Tensor) -> torch.Tensor:
    """Each image scaled to [0, 1] (a reconstruction decoder ends in a sigmoid)."""
    flat = x.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-8)).view_as(x)


@torch.no_grad()
def validation_row(
    model: nn.Module,
    val: Any | None,
    config: ClassifierConfig,
    dev: torch.device,
    use_bf16: bool,
) -> dict[str, float]:
    """Validation loss (cross-entropy runs), accuracy and AUC (or MAE and RMSE) of ``val``."""
    if val is None or not len(val.labels):
        return {}
    probabilities = score_images(model, val.images, config, device=dev, use_bf16=use_bf16)
    row: dict[str, float] = {}
    if config.task == "classification" and config.resolved_loss == "ce":
        row["val_loss"] = float(
            F.nll_loss(probabilities.clamp_min(1e-8).log(), training_targets(val.labels, config))
        )
    metrics = validation_metrics(
        probabilities.numpy(), val.labels, task=config.task, num_outputs=config.num_outputs
    )
    return {**row, **{f"val_{k}": v for k, v in metrics.items()}}


def _score(row: dict[str, Any], config: ClassifierConfig, *, has_validation: bool) -> float:
    if not has_validation:
        return -row["train_loss"]
    return selection_metric(
        {k[4:]: v for k, v in row.items() if k.startswith("val_")}, task=config.task
    )


def _same_config(checkpoint: dict[str, Any], config: ClassifierConfig) -> bool:
    """Resuming may extend the epoch count; everything else must match."""
    try:
        saved = ClassifierConfig.from_dict(checkpoint["classifier_config"])
    except (KeyError, ConfigError):
        return False
    return saved.to_dict() | {"epochs": 0} == config.to_dict() | {"epochs": 0}
