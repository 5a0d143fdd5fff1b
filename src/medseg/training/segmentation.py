"""Segmentation training: one configuration and fold of a results folder, on the engine.

``fit`` describes the task and :func:`medseg.training.engine.run_training` runs it:

* batches: patches from the preprocessed case store (the plan's sampling: foreground
  oversampling by default), a new loader per epoch seeded by ``(seed, fold, epoch, rank)``, so
  a resumed run sees exactly the batches an uninterrupted run would; the plan's augmentation
  preset (its mirror axes, elastic probability) on the training device;
* loss: the plan's loss (Dice + cross-entropy by default) with deep supervision;
* validation: nnU-Net's online pseudo Dice on fixed validation patches; the best checkpoint
  follows its exponential moving average.

Under ``torchrun`` the same function runs DDP (gloo on CPU, nccl on CUDA): each rank draws
its own patches and augmentations, validates its share of the patches (the counts are summed),
and rank 0 writes; a checkpoint resumes under another world size (``docs/distributed.md``).

Cascade stages (``plan.previous_stage``, e.g. ``3d_cascade_fullres``) train on the shared
store ``preprocessed/<plan.store_configuration>`` plus the previous stage's cross-validation
predictions (``medseg.data.cascade``): the loader appends them as one channel of class
indices, which become one-hot channels that spatial transforms move with the image and
intensity transforms leave alone, then randomly perturbed (``medseg.transforms.masks``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.data.cascade import check_previous_stage, foreground_one_hot
from medseg.data.loader import list_cases, make_loader
from medseg.device import autocast, available_cpus, resolve_device
from medseg.errors import ConfigError
from medseg.metrics.confusion import ConfusionCounts, dice
from medseg.planning.calibrate import decide_bf16
from medseg.planning.plan import Plan, Plans
from medseg.planning.recipe import build_augmentation, plan_loss
from medseg.training.checkpoint import build_model
from medseg.training.curves import SEGMENTATION_PANELS
from medseg.training.distributed import all_reduce_sum, init_distributed, local_device, shard
from medseg.training.engine import RunResult, Task, run_training
from medseg.training.schedule import build_optimizer, run_lr_factor, set_lr
from medseg.training.segmentation_transfer import starting_weights, train_unfrozen
from medseg.training.splits import fold_cases, load_or_make_splits
from medseg.transforms import Compose, Transform
from medseg.transforms.masks import ForegroundOneHot, RandomMaskMorphology

EMA = 0.9  # smoothing of the validation Dice that picks the best checkpoint (nnU-Net)


def fold_dir(results: Path, configuration: str, fold: int | str) -> Path:
    return Path(results) / configuration / f"fold_{fold}"


@dataclass(frozen=True)
class FoldData:
    """The case store and the fold's cases; ``previous``: the cascade's previous-stage folder."""

    store: Path
    train_ids: list[str]
    val_ids: list[str]
    previous: Path | None
    store_dims: int

    @classmethod
    def open(cls, results: Path, plan: Plan, fold: int | str) -> FoldData:
        store = results / "preprocessed" / plan.store_configuration
        case_ids = list_cases(store)
        train_ids, val_ids = fold_cases(load_or_make_splits(results, case_ids), fold)
        previous = (
            check_previous_stage(results, plan.configuration, plan.previous_stage, case_ids)
            if plan.previous_stage
            else None
        )
        store_dims = np.load(store / f"{case_ids[0]}.npy", mmap_mode="r").ndim - 1
        return cls(store, train_ids, val_ids, previous, store_dims)

    def patch_size(self, plan: Plan) -> tuple[int, ...]:
        """A 2D plan on 3D data samples ``(1, y, x)`` patches: one slice each."""
        if plan.spatial_dims == 2 and self.store_dims == 3:
            return (1, *plan.patch_size)
        return tuple(plan.patch_size)

    def to_net(self, batch: torch.Tensor, plan: Plan) -> torch.Tensor:
        return batch[:, :, 0] if plan.spatial_dims == 2 and self.store_dims == 3 else batch


def segmentation_augmentation(plan: Plan) -> Transform:
    """The plan's preset with its mirror axes and elastic probability; for a cascade stage also
    the previous stage's one-hot masks (moved by the spatial transforms only, then
    re-binarised and perturbed)."""
    if not plan.previous_stage:
        return build_augmentation(plan)
    preset = build_augmentation(plan, intensity_channels=range(plan.image_channels))
    return Compose(
        [
            ForegroundOneHot(plan.num_classes),
            preset,
            RandomMaskMorphology(range(plan.image_channels, plan.in_channels)),
        ]
    )


@dataclass
class PatchBatches:
    """An epoch's training patches (a new loader per epoch, seeded by seed, fold, epoch and
    rank), then the plan's augmentation on the training device (:meth:`prepare`)."""

    data: FoldData
    plan: Plan
    device: torch.device
    steps: int
    workers: int
    seed: int
    fold: int | str
    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps per epoch must be >= 1, got {self.steps}")
        self.augment = segmentation_augmentation(self.plan)

    def __call__(self, epoch: int) -> Iterable[Any]:
        # per rank too (one process: seed * 100_003 + epoch), so ranks draw different augmentations
        self.augment.reseed(self.seed * 100_003 + epoch * self.world + self.rank)
        fold_seed = (self.seed * 1000 + (0 if self.fold == "all" else int(self.fold))) * 100_000
        return make_loader(
            self.data.store,
            patch_size=self.data.patch_size(self.plan),
            batch_size=self.plan.batch_size,
            case_ids=self.data.train_ids,
            mode=self.plan.sampling,
            num_batches=self.steps,
            oversample_foreground=self.plan.foreground_oversampling,
            num_workers=self.workers,
            backend="thread",
            previous_folder=self.data.previous,
            seed=fold_seed + epoch * self.world + self.rank,
        )

    def prepare(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = (t.to(self.device, non_blocking=True) for t in batch)
        return self.augment(self.data.to_net(image, self.plan), self.data.to_net(label, self.plan))


def fit(
    results: str | os.PathLike[str],
    configuration: str,
    fold: int | str = 0,
    *,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    time_budget_s: float | None = None,
    resume: bool = False,
    device: str | None = None,
    num_workers: int | None = None,
    val_batches: int = 4,
    amp: bool | None = None,
    seed: int = 0,
    progress: bool = True,
    pretrained: str | os.PathLike[str] | None = None,
    freeze: str = "none",
    weight_mapping: dict[str, str] | None = None,
    ema_decay: float = 0.0,
    warmup_steps: int = 0,
) -> RunResult:
    """Train ``configuration`` on ``fold`` of the preprocessed data in ``results``.

    Args:
        results: results folder (``plans.json`` and ``preprocessed/<configuration>``).
        configuration: ``2d``, ``3d_fullres``, ``3d_lowres`` or ``3d_cascade_fullres`` (needs
            the ``3d_lowres`` predictions of ``medseg prepare-cascade``).
        fold: a fold index or ``"all"``.
        epochs, steps_per_epoch, time_budget_s: override the plan's budget; stop in time.
        resume: continue from ``checkpoint_latest.pt`` exactly.
        device: ``cpu``, ``cuda`` or None (auto); num_workers: loader threads (<= 4 default).
        amp: bf16 autocast (``--precision``); None: the plan's ``precision`` (``decide_bf16``).
        pretrained, freeze, weight_mapping: start from another model's weights, train the
            decoder only (:func:`~.segmentation_transfer.starting_weights`).
        ema_decay: validate and save an exponential moving average of the weights
            (:mod:`medseg.training.ema`; 0: off).
        warmup_steps: ramp the learning rate linearly over this many first steps.

    Returns:
        The :class:`~medseg.training.engine.RunResult` (``run_dir`` is the fold folder).

    Raises:
        ConfigError: the fold has checkpoints and ``resume`` is False; a cascade stage's
            previous-stage predictions are missing (the message names the commands to run).
        LockedError: another process trains this fold.
    """
    # setup: the plan, the fold's cases, the device and its precision
    results = Path(results)
    plan = Plans.from_json(results / "plans.json")[configuration]
    data = FoldData.open(results, plan, fold)
    rank, world = init_distributed()
    dev = local_device(resolve_device(device), world)
    use_bf16, why = (amp, "set by --precision") if amp is not None else decide_bf16(plan, dev)
    workers = num_workers if num_workers is not None else min(4, available_cpus())
    steps = plan.steps_per_epoch if steps_per_epoch is None else steps_per_epoch
    epochs = plan.num_epochs if epochs is None else epochs
    batches = PatchBatches(data, plan, dev, steps, workers, seed, fold, rank=rank, world=world)
    # the task: the plan's network, loss and optimiser; online validation Dice
    start_from, transfer = starting_weights(pretrained, freeze, weight_mapping)
    task = segmentation_task(
        plan, batches, epochs, val_batches=val_batches, prepare=start_from, warmup=warmup_steps
    )
    levers = {"ema_decay": ema_decay, "warmup_steps": warmup_steps}
    task.files = {"run.json": _run_record(dev, world, seed, (use_bf16, why), transfer, levers)}
    task.checkpoint.update(fold=fold, configuration=configuration)
    return run_training(
        task,
        fold_dir(results, configuration, fold),
        epochs=epochs,
        use_bf16=use_bf16,
        time_budget_s=time_budget_s,
        resume=resume,
        progress=progress,
        description=f"train {configuration} fold {fold}",
        resume_hint=f"medseg train {results} --config {configuration} --fold {fold} --resume",
        ema_decay=ema_decay,
    )


def _run_record(
    dev: torch.device,
    world: int,
    seed: int,
    precision: tuple[bool, str],
    transfer: dict[str, Any],
    levers: dict[str, Any],
) -> dict[str, Any]:
    """``run.json``: where and how the run trained (levers that are off are left out)."""
    return {
        "device": str(dev),
        "world_size": world,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seed": seed,
        "bf16": precision[0],
        "precision_reason": precision[1],
        **{k: v for k, v in levers.items() if v},
        **transfer,
    }


def segmentation_task(
    plan: Plan,
    batches: PatchBatches,
    epochs: int,
    *,
    val_batches: int = 4,
    prepare: Callable[[nn.Module], None] | None = None,
    warmup: int = 0,
) -> Task:
    """The segmentation task on the engine: the plan's network (DDP under torchrun), its loss
    (``medseg.planning.choices.PlanLoss``: deep supervision, the VAE terms, the ignore label),
    its optimiser and LR schedule, validation on fixed patches. ``prepare`` gets the fresh
    network first (pretrained weights, a frozen encoder); ``warmup``: steps of linear LR
    warm-up before the plan's schedule."""
    torch.manual_seed(batches.seed)
    model = build_model(plan)
    if prepare is not None:
        prepare(model)
    model = model.to(batches.device)
    optimizer = build_optimizer(model, plan)
    # the deep-supervision head of weight 0 (nnU-Net's coarsest) gets no gradient: DDP must
    # be told, or its second step fails ("Expected to have finished reduction ...")
    net = (
        nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
        if batches.world > 1
        else model
    )
    loss_fn = plan_loss(plan)
    data, dev = batches.data, batches.device
    validation = list(  # fixed patches; each rank validates its shard, the counts are summed
        make_loader(
            data.store,
            patch_size=data.patch_size(plan),
            batch_size=plan.batch_size,
            case_ids=data.val_ids,
            num_batches=val_batches,
            num_workers=0,
            seed=10_000 + batches.seed,
            previous_folder=data.previous,
        )
    )
    validation = shard(validation, batches.rank, batches.world)
    total_steps = epochs * batches.steps

    def set_learning_rate(step: int, budget_fraction: float | None) -> None:
        factor = run_lr_factor(step, total_steps, plan.lr_schedule, budget_fraction, warmup=warmup)
        set_lr(optimizer, plan.learning_rate, factor)

    return Task(
        model=model,
        optimizer=optimizer,
        network=net,
        train_mode=lambda: train_unfrozen(net, model),
        batches=batches,
        prepare=batches.prepare,
        loss=lambda batch: loss_fn(net(batch[0]), batch[1], batch[0]),
        set_learning_rate=set_learning_rate,
        validate=lambda bf16, rows: validation_row(
            model, validation, plan, data, dev, bf16, rows, world=batches.world
        ),
        score=lambda row: row["val_dice_ema"],
        curves=SEGMENTATION_PANELS,
        checkpoint={"plan": plan.to_dict()},
        compatible=lambda ckpt: _same_plan(ckpt, plan),
        device=dev,
        rank=batches.rank,
        world=batches.world,
        progress_keys=("train_loss", "val_dice", "data_wait_share"),
    )


def _same_plan(checkpoint: dict[str, Any], plan: Plan) -> bool:
    try:
        return Plan.from_dict(checkpoint["plan"]) == plan
    except (KeyError, TypeError, ConfigError):
        return False


def validation_row(
    model: nn.Module,
    batches: list,
    plan: Plan,
    data: FoldData,
    dev: torch.device,
    use_bf16: bool,
    rows: list[dict[str, Any]],
    *,
    world: int = 1,
) -> dict[str, float]:
    """Online validation Dice per foreground class, their mean and its EMA over epochs
    (``world`` > 1: ``batches`` is this rank's shard; the counts are summed over ranks)."""
    dice_per_class = _validate(model, batches, plan, data, dev, use_bf16, world)
    mean_dice = float(np.nanmean(dice_per_class)) if len(dice_per_class) else float("nan")
    ema = rows[-1]["val_dice_ema"] if rows else None
    ema = mean_dice if ema is None or not np.isfinite(ema) else EMA * ema + (1 - EMA) * mean_dice
    return {
        "val_dice": mean_dice,
        "val_dice_ema": ema,
        **{f"val_dice_{k + 1}": float(v) for k, v in enumerate(dice_per_class)},
    }


@torch.inference_mode()
def _validate(
    model: nn.Module,
    batches: list,
    plan: Plan,
    data: FoldData,
    dev: torch.device,
    use_bf16: bool,
    world: int = 1,
) -> np.ndarray:
    """Dice per foreground class from (TP, FP, FN) summed over the validation patches
    (nnU-Net's pseudo Dice). Voxels whose target is negative (-1: the ``ignore`` label of
    sparse annotations) count nowhere."""
    model.eval()
    stats = np.zeros((plan.num_classes - 1, 3))
    for image, label in batches:
        image = data.to_net(image, plan).to(dev)
        if plan.previous_stage:
            image = torch.cat(
                [image[:, :-1], foreground_one_hot(image[:, -1:], plan.num_classes, image.dtype)], 1
            )
        with autocast(dev, use_bf16):
            logits = model(image)
        pred, target = logits.float().argmax(1), data.to_net(label, plan).to(dev)[:, 0]
        annotated = target >= 0
        for k in range(1, plan.num_classes):
            p, t = (pred == k) & annotated, target == k
            stats[k - 1] += [(p & t).sum().item(), (p & ~t).sum().item(), (~p & t).sum().item()]
    model.train()
    stats = all_reduce_sum(stats, world)
    return np.array([dice(ConfusionCounts(tp, fp, fn, 0)) for tp, fp, fn in stats])
