"""Training VoxelMorph on the shared engine: unsupervised (or label-assisted) registration.

:func:`fit_registration` describes the task and :func:`medseg.training.engine.run_training`
runs it. Cases are split once (seeded; ``split.json``); each step registers a random
training case onto another one (inter-subject) or onto the ``atlas`` case. The loss is the
image dissimilarity (``-local_ncc`` or MSE) of the fixed and the warped moving image, plus
``smooth`` times the gradient smoothness of the predicted field (the velocity when
diffeomorphic), plus ``label_weight`` times ``1 - Dice`` of the linearly warped one-hot moving
labels when the dataset has labels. Validation each epoch on fixed held-out pairs: the mean
Dice of the labels warped with nearest neighbours (``val_dice``, which picks
``checkpoint_best.pt``), the local NCC and the folding percentage; without labels the
validation NCC picks the checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medseg.data.dataset import load_dataset
from medseg.device import autocast, bf16_supported, resolve_device
from medseg.errors import ConfigError
from medseg.losses.registration import gradient_smoothness, local_ncc, mse, warped_label_dice
from medseg.registration.config import CONFIG_KEY, RegistrationConfig, RegistrationModel
from medseg.registration.data import Volumes, load_volumes
from medseg.registration.jacobian import folding_percent
from medseg.registration.pairs import (
    ListedPairBatches,
    check_pair_shapes,
    read_pairs_file,
    same_subject_pairs,
    split_pairs,
)
from medseg.registration.scores import mean_label_dice
from medseg.registration.warp import warp
from medseg.training.engine import RunResult, Task, run_training


def split_cases(case_ids: list[str], config: RegistrationConfig) -> tuple[list[str], list[str]]:
    """Training and validation cases (the atlas in neither): a seeded permutation, the last
    ``val_fraction`` held out (at least 2 when validating, so a pair exists)."""
    ids = [c for c in case_ids if c != config.atlas]
    order = np.random.default_rng(config.seed).permutation(len(ids))
    count = 0 if config.val_fraction == 0 else max(2, round(config.val_fraction * len(ids)))
    if len(ids) - count < (1 if config.atlas else 2):
        raise ConfigError(
            f"{config.dataset}: {len(case_ids)} case(s) leave too few to train on after holding "
            f"out {count} for validation; lower val_fraction or add cases"
        )
    held = {ids[i] for i in order[len(ids) - count :]}
    return [c for c in ids if c not in held], [c for c in ids if c in held]


def validation_pairs(val_ids: list[str], config: RegistrationConfig) -> list[tuple[str, str]]:
    """``(moving, fixed)`` pairs of held-out cases: each case onto the atlas, or seeded
    distinct pairs (at most ``val_pairs``)."""
    if not val_ids:
        return []
    if config.atlas:
        return [(c, config.atlas) for c in val_ids[: config.val_pairs]]
    all_pairs = [(m, f) for m in val_ids for f in val_ids if m != f]
    rng = np.random.default_rng(config.seed + 1)
    chosen = rng.permutation(len(all_pairs))[: config.val_pairs]
    return [all_pairs[i] for i in sorted(chosen)]


class PairBatches:
    """An epoch's ``steps_per_epoch`` batches of ``(moving, fixed)`` row indices."""

    def __init__(self, rows: dict[str, int], train_ids: list[str], config: RegistrationConfig):
        self.train = torch.tensor([rows[c] for c in train_ids])
        self.atlas = rows[config.atlas] if config.atlas else None
        self.config = config

    def __call__(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        n, size = len(self.train), self.config.batch_size
        for _ in range(self.config.steps_per_epoch):
            moving = torch.randint(n, (size,), generator=generator)
            if self.atlas is not None:
                yield self.train[moving], torch.full((size,), self.atlas)
                continue
            shift = torch.randint(1, n, (size,), generator=generator)  # a different case
            yield self.train[moving], self.train[(moving + shift) % n]


def registration_loss(
    model: RegistrationModel,
    volumes: Volumes,
    config: RegistrationConfig,
    index: tuple[torch.Tensor, torch.Tensor],
    dev: torch.device,
) -> torch.Tensor:
    """Similarity + smoothness (+ label Dice) of one batch of ``(moving, fixed)`` rows."""
    moving_rows, fixed_rows = index
    moving, fixed = volumes.images[moving_rows].to(dev), volumes.images[fixed_rows].to(dev)
    warped, flow, predicted = model(moving, fixed)
    with autocast(dev, False):
        if config.loss == "ncc":
            loss = -local_ncc(fixed.float(), warped, config.window)
        else:
            loss = mse(fixed.float(), warped)
        loss = loss + config.smooth * gradient_smoothness(predicted.float())
        if config.label_weight > 0 and volumes.labels is not None:
            onehot = [
                F.one_hot(volumes.labels[r].to(dev), volumes.num_classes).movedim(-1, 1).float()
                for r in (moving_rows, fixed_rows)
            ]
            dice = warped_label_dice(onehot[1], warp(onehot[0], flow))
            loss = loss + config.label_weight * (1.0 - dice)
    return loss


@torch.no_grad()
def validate(
    model: RegistrationModel,
    volumes: Volumes,
    rows: dict[str, int],
    pairs: list[tuple[str, str]],
    config: RegistrationConfig,
    dev: torch.device,
    use_bf16: bool,
) -> dict[str, float]:
    """Mean warped-label Dice (nearest), local NCC and folding % over the validation pairs."""
    if not pairs:
        return {"val_dice": math.nan, "val_ncc": math.nan, "val_folding_percent": math.nan}
    model.eval()
    dice, ncc, folding = [], [], []
    for moving_id, fixed_id in pairs:
        m, f = rows[moving_id], rows[fixed_id]
        fixed = volumes.images[f : f + 1].to(dev)
        with autocast(dev, use_bf16):
            warped, flow, _ = model(volumes.images[m : m + 1].to(dev), fixed)
        ncc.append(float(local_ncc(fixed.float(), warped.float(), config.window)))
        folding.append(folding_percent(flow.float()))
        if volumes.labels is not None:
            moved = warp(volumes.labels[m : m + 1, None].to(dev), flow.float(), mode="nearest")
            dice.append(mean_label_dice(volumes.labels[f].numpy(), moved[0, 0].cpu().numpy()))
    return {
        "val_dice": float(np.nanmean(dice)) if dice else math.nan,
        "val_ncc": float(np.mean(ncc)),
        "val_folding_percent": float(np.mean(folding)),
    }


def _score(row: dict[str, Any]) -> float:
    for key in ("val_dice", "val_ncc"):
        if math.isfinite(row.get(key, math.nan)):
            return row[key]
    return -row["train_loss"]


def _resolved(dataset: str | os.PathLike[str], config: RegistrationConfig | None):
    """The dataset, its cases and the config with ``dataset``, ``spatial_dims`` and
    ``shape`` filled in from the data."""
    config = config or RegistrationConfig(dataset=str(dataset))
    data = load_dataset(dataset)
    case_ids = [c.case_id for c in data.cases if c.case_id not in config.exclude]
    if config.atlas and config.atlas not in case_ids:
        raise ConfigError(f"{dataset}: --atlas {config.atlas!r} is not a case of the dataset")
    probe = load_volumes(
        data,
        case_ids,
        divisor=config.divisor,
        normalisation=config.normalisation,
        shape=config.shape or None,
    )
    config = dataclasses.replace(
        config,
        dataset=str(dataset),
        spatial_dims=probe.images.ndim - 2,
        shape=tuple(probe.images.shape[2:]),
    )
    return config, case_ids, probe


def listed_pairs(config: RegistrationConfig, case_ids: list[str]) -> list[tuple[str, str]]:
    """The run's listed ``(moving, fixed)`` pairs: from ``pairs_file``, else same-subject."""
    if config.pairs_file is not None:
        return read_pairs_file(config.pairs_file, case_ids)
    return same_subject_pairs(
        case_ids,
        config.pair_pattern,
        moving_frame=config.moving_frame,
        both_directions=config.both_directions,
    )


def _pairing(config: RegistrationConfig, case_ids: list[str], volumes: Volumes, rows):
    """The batches, the validation pairs and ``split.json`` of the run's pair mode."""
    if not config.listed_pairs:
        train_ids, val_ids = split_cases(case_ids, config)
        pairs = validation_pairs(val_ids, config)
        split = {"train": train_ids, "val": val_ids, "val_pairs": [list(p) for p in pairs]}
        return PairBatches(rows, train_ids, config), pairs, split
    listed = listed_pairs(config, case_ids)
    check_pair_shapes(listed, volumes.shapes, config.dataset)
    train_pairs, val_pairs = split_pairs(listed, config.val_fraction, config.seed)
    batches = ListedPairBatches(
        rows, train_pairs, config.batch_size, config.steps_per_epoch, config.seed
    )
    split = {
        "train_pairs": [list(p) for p in train_pairs],
        "val_pairs": [list(p) for p in val_pairs[: config.val_pairs]],
    }
    return batches, val_pairs[: config.val_pairs], split


def fit_registration(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: RegistrationConfig | None = None,
    *,
    epochs: int | None = None,
    time_budget_s: float | None = None,
    resume: bool = False,
    device: str | None = None,
    amp: bool | None = None,
    progress: bool = True,
) -> RunResult:
    """Train VoxelMorph on ``dataset`` into ``out`` (``config.json``, ``split.json``,
    checkpoints, ``log.csv``, ``curves.png``).

    Args:
        dataset: an nnU-Net v2 / MSD dataset folder (labels optional in use).
        config: the settings (:class:`RegistrationConfig`); its ``dataset``, ``spatial_dims``
            and ``shape`` are filled in from ``dataset``.
        epochs: overrides ``config.epochs`` (an upper bound with ``time_budget_s``).
        time_budget_s: stop after this many seconds of training.
        resume: continue from ``checkpoint_latest.pt`` (same config).
        device: "cpu", "cuda", or None/"auto"; amp: bf16 autocast (None: where it pays off).

    Raises:
        ConfigError: an unknown atlas, too few cases, existing checkpoints without
            ``resume``; DatasetError: cases of different spacing (refused).
    """
    config, case_ids, volumes = _resolved(dataset, config)
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    rows = {c: i for i, c in enumerate(volumes.case_ids)}
    batches, pairs, split = _pairing(config, case_ids, volumes, rows)
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    model = RegistrationModel(config).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    task = Task(
        model=model,
        optimizer=optimizer,
        batches=batches,
        loss=lambda index: registration_loss(model, volumes, config, index, dev),
        validate=lambda use_bf16, _: validate(model, volumes, rows, pairs, config, dev, use_bf16),
        score=_score,
        set_learning_rate=lambda step, fraction: None,  # constant, as VoxelMorph
        checkpoint={CONFIG_KEY: config.to_dict()},
        compatible=lambda ckpt: _same_run(ckpt.get(CONFIG_KEY), config),
        files={"config.json": config.to_dict(), "split.json": split},
        device=dev,
        curves=(
            ("loss", ("train_loss",), "linear"),
            ("validation", ("val_dice", "val_ncc"), "unit"),
        ),
        progress_keys=("train_loss", "val_dice", "val_ncc"),
    )
    return run_training(
        task,
        Path(out),
        epochs=config.epochs,
        use_bf16=bf16_supported(dev) if amp is None else amp,
        time_budget_s=time_budget_s,
        resume=resume,
        progress=progress,
        description="register train",
        resume_hint="the same `medseg register train` command plus --resume",
    )


def _same_run(saved: Any, config: RegistrationConfig) -> bool:
    if not isinstance(saved, dict):
        return False
    try:  # settings added since the run was saved take their defaults
        saved = RegistrationConfig.from_dict(saved).to_dict()
    except ConfigError:
        return False
    return {**saved, "epochs": config.epochs} == config.to_dict()
