"""The training loop: one readable function over model, loss, optimiser and loader.

``fit`` trains one configuration and fold from the preprocessed case store:

1. data: ``make_loader`` draws patches (foreground oversampling) in background workers;
   a new loader per epoch, seeded by ``(seed, fold, epoch)``, so a resumed run sees exactly
   the batches an uninterrupted run would;
2. augmentation: the plan's preset on the training device, whole batches at once;
3. step: forward (bf16 autocast on CUDA and AVX-512-BF16 CPUs), Dice+CE with deep supervision, backward,
   gradient clipping (norm 12, as nnU-Net), optimiser step, per-step LR schedule;
4. epoch end: online validation Dice on fixed validation patches, a CSV log row, curves,
   ``checkpoint_latest.pt`` and ``checkpoint_best.pt`` (by the EMA of the validation Dice),
   all written atomically.

Ctrl-C saves the last completed epoch (already on disk) and says how to resume. Under
``torchrun`` the same function runs DDP (gloo on CPU, nccl on CUDA); rank 0 writes.

Cascade stages (``plan.previous_stage``, e.g. ``3d_cascade_fullres``) train on the shared
store ``preprocessed/<plan.store_configuration>`` plus the previous stage's cross-validation
predictions ``preprocessed/<configuration>/<case>_prev.npy`` (written by
``medseg prepare-cascade``). The loader appends them as one channel of class indices; here
they become one-hot channels (one per foreground class) that the spatial transforms move
with the image while the intensity transforms leave them alone (``CascadeAugment``), and are
then randomly eroded/dilated/opened/closed (nnU-Net's perturbation of the previous stage).
"""

from __future__ import annotations

import atexit
import csv
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from medseg.data.loader import PREVIOUS_SUFFIX, list_cases, make_loader
from medseg.device import available_cpus, bf16_supported, resolve_device
from medseg.errors import ConfigError, MedsegError
from medseg.fileutil import atomic_path, write_json_atomic
from medseg.losses import build_loss
from medseg.losses.deep_supervision import DeepSupervisionLoss
from medseg.planning.plan import Plan, Plans
from medseg.training.checkpoint import (
    build_model,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from medseg.training.curves import plot_curves
from medseg.training.schedule import build_optimizer, lr_factor, set_lr
from medseg.training.splits import fold_cases, load_or_make_splits
from medseg.transforms import Compose, IntensityTransform, Transform, build_transform

log = logging.getLogger(__name__)
GRAD_CLIP = 12.0
EMA = 0.9
PREVIOUS_STAGE_FILE = "previous_stage.json"  # in preprocessed/<cascade configuration>/, written by prepare-cascade
# nnU-Net perturbs the previous stage's masks: per sample and foreground class, with this
# probability, one of dilation / erosion / opening / closing with a cube of radius 1-2 voxels
P_MORPHOLOGY = 0.4


@dataclass(frozen=True)
class FitResult:
    fold_dir: Path
    epochs: int
    steps: int
    best_metric: float
    seconds: float
    stopped_by: str  # "epochs" | "time_budget"


def fold_dir(results: Path, configuration: str, fold: int | str) -> Path:
    return results / configuration / f"fold_{fold}"


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        # torn down at exit, not after each fit, so one process can train several folds
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _any_rank(flag: bool, world: int) -> bool:
    """True when ``flag`` is true on any rank: ranks must agree to stop, or the others hang in DDP."""
    if world == 1:
        return flag
    value = torch.tensor([float(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _finish_distributed(world: int) -> None:
    """Ranks leave together; a rank that exits while gloo still talks to it aborts the job."""
    if world > 1 and dist.is_initialized():
        dist.barrier()


def leave_distributed_run() -> None:
    """End a finished ``torchrun`` process at once: barrier, flush, ``os._exit(0)``.

    A normal exit tears gloo down in C++ destructors, and a worker thread still joinable
    there aborts the process ("terminate called without an active exception", SIGABRT; seen
    here in about 1 of 15 runs on a loaded machine, even after ``destroy_process_group``).
    Every output is already written (atomically) when this is called; a no-op in one process.
    """
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _patch_for_store(plan: Plan, store_dims: int) -> tuple[int, ...]:
    """A 2D plan on 3D data samples ``(1, y, x)`` patches: one slice each."""
    if plan.spatial_dims == 2 and store_dims == 3:
        return (1, *plan.patch_size)
    return tuple(plan.patch_size)


def _to_net(batch: torch.Tensor, plan: Plan, store_dims: int) -> torch.Tensor:
    return batch[:, :, 0] if plan.spatial_dims == 2 and store_dims == 3 else batch


def previous_stage_dir(results: Path, plan: Plan) -> Path:
    """Where a cascade stage's previous-stage segmentations of the training cases live."""
    return Path(results) / "preprocessed" / plan.configuration


def check_previous_stage(results: Path, plan: Plan, case_ids: list[str]) -> Path:
    """The folder of ``<case>_prev.npy`` for a cascade stage, every case present.

    Raises:
        ConfigError: some are missing; the message says which commands produce them.
    """
    folder = previous_stage_dir(results, plan)
    missing = [c for c in case_ids if not (folder / f"{c}{PREVIOUS_SUFFIX}").is_file()]
    if missing:
        listing = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConfigError(
            f"{plan.configuration} trains on the {plan.previous_stage} stage's predictions of the training cases, "
            f"missing in {folder} for {len(missing)} of {len(case_ids)} case(s) ({listing}). Train the "
            f"{plan.previous_stage} folds first ('medseg train {results} --config {plan.previous_stage} --fold K' "
            f"for each fold, or --fold all), then run 'medseg prepare-cascade {results}'"
        )
    _warn_if_stale(folder)
    return folder


def _warn_if_stale(folder: Path) -> None:
    record = folder / PREVIOUS_STAGE_FILE
    if not record.is_file():
        return
    checkpoints = json.loads(record.read_text()).get("checkpoints", {})
    changed = [p for p, mtime in checkpoints.items() if not Path(p).is_file() or Path(p).stat().st_mtime_ns != mtime]
    if changed:
        log.warning("%s: the previous-stage checkpoint(s) %s changed since their predictions were made; "
                    "rerun 'medseg prepare-cascade --overwrite' to refresh them", folder, changed)


def expand_previous(image: torch.Tensor, plan: Plan) -> torch.Tensor:
    """``(B, C + 1, *S)`` with class indices in the last channel -> ``(B, C + K - 1, *S)`` with
    one one-hot channel per foreground class (the cascade network's input)."""
    indices = image[:, -1:].round()
    onehot = [(indices == k).to(image.dtype) for k in range(1, plan.num_classes)]
    return torch.cat([image[:, :-1], *onehot], dim=1)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    pool = F.max_pool3d if mask.ndim == 5 else F.max_pool2d
    return pool(mask, 2 * radius + 1, stride=1, padding=radius)


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return 1 - _dilate(1 - mask, radius)


def perturb_masks(masks: torch.Tensor, generator: torch.Generator, p: float = P_MORPHOLOGY) -> torch.Tensor:
    """Random morphology on binary ``(B, K, *S)`` masks: each (sample, channel) with
    probability ``p`` gets one of dilation, erosion, opening, closing (cube of radius 1 or 2)."""
    batch, channels = masks.shape[:2]
    chosen = torch.rand(batch, channels, generator=generator) < p
    ops = torch.randint(0, 4, (batch, channels), generator=generator)
    radii = torch.randint(1, 3, (batch, channels), generator=generator)
    if not bool(chosen.any()):
        return masks
    out = masks.clone()
    for b, c in chosen.nonzero().tolist():
        m, r, op = masks[b : b + 1, c : c + 1], int(radii[b, c]), int(ops[b, c])
        if op == 0:
            m = _dilate(m, r)
        elif op == 1:
            m = _erode(m, r)
        elif op == 2:
            m = _dilate(_erode(m, r), r)
        else:
            m = _erode(_dilate(m, r), r)
        out[b, c] = m[0, 0]
    return out


class CascadeAugment:
    """The plan's augmentation for a cascade input whose last channel holds class indices.

    The indices become one-hot channels first; spatial transforms (rotation, scaling,
    mirroring) move them together with the image (linear interpolation of the one-hot
    channels, re-binarised at 0.5 afterwards), intensity transforms see only the image
    channels, and the masks are then perturbed (``perturb_masks``). All randomness comes from
    the wrapped pipeline's generator, so ``reseed`` makes it repeatable.
    """

    def __init__(self, augment: Transform, plan: Plan, *, p_morphology: float = P_MORPHOLOGY) -> None:
        self.augment, self.plan, self.p_morphology = augment, plan, p_morphology

    def reseed(self, seed: int) -> None:
        self.augment.reseed(seed)

    def _apply(self, transform: Transform, image: torch.Tensor, label: torch.Tensor | None,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(transform, Compose):
            for child in transform.transforms:
                image, label = self._apply(child, image, label, generator)
            return image, label
        if isinstance(transform, IntensityTransform):
            n = self.plan.image_channels
            head, label = transform(image[:, :n], label, generator=generator)
            return torch.cat([head, image[:, n:]], dim=1), label
        return transform(image, label, generator=generator)

    def __call__(self, image: torch.Tensor, label: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        generator = self.augment.generator
        image, label = self._apply(self.augment, expand_previous(image, self.plan), label, generator)
        n = self.plan.image_channels
        masks = (image[:, n:] > 0.5).to(image.dtype)
        masks = perturb_masks(masks, generator, self.p_morphology)
        return torch.cat([image[:, :n], masks], dim=1), label


def _online_dice(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> np.ndarray:
    """Per foreground class (TP, FP, FN) summed over the batch (nnU-Net's pseudo Dice)."""
    pred = logits.argmax(1)
    target = target[:, 0]
    stats = np.zeros((num_classes - 1, 3))
    for k in range(1, num_classes):
        p, t = pred == k, target == k
        stats[k - 1] = [(p & t).sum().item(), (p & ~t).sum().item(), (~p & t).sum().item()]
    return stats


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
) -> FitResult:
    """Train ``configuration`` on ``fold`` of the preprocessed data in ``results``.

    Args:
        results: results folder (``plans.json`` and ``preprocessed/<configuration>``).
        configuration: ``2d``, ``3d_fullres``, ``3d_lowres`` or ``3d_cascade_fullres`` (needs
            the ``3d_lowres`` predictions of ``medseg prepare-cascade``).
        fold: a fold index or ``"all"``.
        epochs, steps_per_epoch: override the plan's budget.
        time_budget_s: stop before an epoch that would exceed this many seconds.
        resume: continue from ``checkpoint_latest.pt`` (exactly: weights, optimiser,
            schedule, RNG, log).
        device: ``cpu``, ``cuda`` or None (auto).
        num_workers: loader workers (default: CPU count, at most 4).
        amp: bf16 autocast; None: on where the device supports it natively.

    Raises:
        OverwriteError-like ConfigError: the fold has checkpoints and ``resume`` is False.
        ConfigError: a cascade stage's previous-stage predictions are missing (the message
            names the commands to run).
    """
    results = Path(results)
    plans = Plans.from_json(results / "plans.json")
    plan = plans[configuration]
    store = results / "preprocessed" / plan.store_configuration
    case_ids = list_cases(store)
    train_ids, val_ids = fold_cases(load_or_make_splits(results, case_ids), fold)
    previous = check_previous_stage(results, plan, case_ids) if plan.previous_stage else None
    out = fold_dir(results, configuration, fold)
    rank, world = _distributed()
    dev = resolve_device(device)
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    latest = out / "checkpoint_latest.pt"
    if latest.exists() and not resume:
        raise ConfigError(f"{out}: fold already has checkpoints; pass --resume to continue (or remove the folder)")
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        write_json_atomic(out / "run.json", {"device": str(dev), "world_size": world, "torch": torch.__version__,
                                             "threads": torch.get_num_threads(), "seed": seed,
                                             "bf16": bf16_supported(dev) if amp is None else amp})
    torch.manual_seed(seed)

    model = build_model(plan).to(dev)
    optimizer = build_optimizer(model, plan)
    total_epochs = epochs if epochs is not None else plan.num_epochs
    steps = steps_per_epoch if steps_per_epoch is not None else plan.steps_per_epoch
    start_epoch, step, best, ema, rows = 0, 0, -math.inf, None, []
    if resume and latest.exists():
        ckpt = load_checkpoint(latest)
        if ckpt["plan"] != plan.to_dict():
            raise ConfigError(f"{latest}: checkpoint was trained with another plan; cannot resume")
        model.load_state_dict(ckpt["network_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        start_epoch, step, best, rows = ckpt["epoch"], ckpt["step"], ckpt["best_metric"], ckpt["log"]
        ema = ckpt.get("ema_metric")
        set_rng_state(ckpt["rng_state"])
        log.info("resuming %s fold %s at epoch %d", configuration, fold, start_epoch)
    net: nn.Module = nn.parallel.DistributedDataParallel(model) if world > 1 else model

    loss_fn = DeepSupervisionLoss(build_loss(plan.loss))
    store_dims = np.load(store / f"{case_ids[0]}.npy", mmap_mode="r").ndim - 1
    patch = _patch_for_store(plan, store_dims)
    augment: Transform | CascadeAugment = build_transform(plan.augmentation, spatial_dims=plan.spatial_dims)
    if previous is not None:
        augment = CascadeAugment(augment, plan)
    workers = num_workers if num_workers is not None else min(4, available_cpus())
    use_amp = bf16_supported(dev) if amp is None else amp
    val_loader = list(make_loader(store, patch_size=patch, batch_size=plan.batch_size, case_ids=val_ids,
                                  num_batches=val_batches, num_workers=0, seed=10_000 + seed,
                                  previous_folder=previous))
    started = time.perf_counter()
    stopped_by = "epochs"
    epoch_seconds: list[float] = []
    # with a time budget the epoch count is an upper bound: show seconds instead, so the ETA is true
    bar = tqdm(total=None if time_budget_s is not None else total_epochs, initial=start_epoch,
               desc=f"train {configuration} fold {fold}" + (f" ({time_budget_s:.0f} s budget)" if time_budget_s else ""),
               unit="epoch", disable=not progress or rank != 0)
    try:
        for epoch in range(start_epoch, total_epochs):
            if time_budget_s is not None and epoch_seconds:
                if _any_rank(time.perf_counter() - started + np.mean(epoch_seconds[-3:]) > time_budget_s, world):
                    stopped_by = "time_budget"
                    break
            epoch_start = time.perf_counter()
            augment.reseed(seed * 100_003 + epoch)
            loader = make_loader(store, patch_size=patch, batch_size=plan.batch_size, case_ids=train_ids,
                                 mode="oversample", oversample_foreground=plan.foreground_oversampling,
                                 num_batches=steps, num_workers=workers, backend="thread", previous_folder=previous,
                                 seed=(seed * 1000 + (0 if fold == "all" else int(fold))) * 100_000 + epoch * world + rank)
            net.train()
            losses, norms, wait, skipped = [], [], 0.0, 0
            fetch_start = time.perf_counter()
            for image, label in loader:
                wait += time.perf_counter() - fetch_start
                image, label = image.to(dev, non_blocking=True), label.to(dev, non_blocking=True)
                image, label = augment(_to_net(image, plan, store_dims), _to_net(label, plan, store_dims))
                lr = set_lr(optimizer, plan.learning_rate, lr_factor(step, total_epochs * steps, plan.lr_schedule))
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss = loss_fn(net(image), label)
                loss.backward()
                norm = float(nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP))
                if math.isfinite(norm):
                    norms.append(norm)
                    optimizer.step()
                else:  # an overflow in a low-precision backward: drop this step, as a GradScaler would
                    optimizer.zero_grad(set_to_none=True)
                    skipped += 1
                losses.append(float(loss.detach()))
                step += 1
                if time_budget_s is not None and _any_rank(time.perf_counter() - started > time_budget_s, world):
                    stopped_by = "time_budget"  # end this epoch early; it is still validated and saved
                    break
                fetch_start = time.perf_counter()
            dice = _validate(model, val_loader, plan, store_dims, dev, use_amp)
            mean_dice = float(np.nanmean(dice)) if len(dice) else float("nan")
            ema = mean_dice if ema is None or not np.isfinite(ema) else EMA * ema + (1 - EMA) * mean_dice
            seconds = time.perf_counter() - epoch_start
            epoch_seconds.append(seconds)
            row = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                   "val_dice": mean_dice, "val_dice_ema": ema, "lr": lr, "grad_norm": float(np.mean(norms)) if norms else 0.0,
                   "epoch_seconds": seconds, "data_wait_share": wait / max(seconds, 1e-9), "skipped_steps": skipped}
            if skipped:
                log.warning("epoch %d: %d step(s) had non-finite gradients and were skipped", epoch + 1, skipped)
            row.update({f"val_dice_{k + 1}": float(v) for k, v in enumerate(dice)})
            rows.append(row)
            if rank == 0:
                is_best = ema > best
                best = max(best, ema)
                state = {"network_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
                         "plan": plan.to_dict(), "epoch": epoch + 1, "step": step, "best_metric": best,
                         "ema_metric": ema, "log": rows, "rng_state": rng_state(), "fold": fold,
                         "configuration": configuration}
                save_checkpoint(latest, **state)
                if is_best:
                    save_checkpoint(out / "checkpoint_best.pt", **state)
                write_log(out / "log.csv", rows)
                plot_curves(rows, out / "curves.png")
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", dice=f"{mean_dice:.3f}", wait=f"{row['data_wait_share']:.0%}")
            bar.update(1)
            if stopped_by == "time_budget":
                break
    except KeyboardInterrupt:
        bar.close()
        raise MedsegError(
            f"interrupted; epochs completed so far are saved in {latest}. "
            f"Continue with: medseg train {results} --config {configuration} --fold {fold} --resume"
        ) from None
    bar.close()
    _finish_distributed(world)
    completed = rows[-1]["epoch"] if rows else 0
    return FitResult(out, completed, step, best, time.perf_counter() - started, stopped_by)


@torch.inference_mode()
def _validate(model: nn.Module, batches: list, plan: Plan, store_dims: int, dev: torch.device, use_amp: bool) -> np.ndarray:
    model.eval()
    stats = np.zeros((plan.num_classes - 1, 3))
    for image, label in batches:
        image = _to_net(image, plan, store_dims).to(dev)
        if plan.previous_stage:
            image = expand_previous(image, plan)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(image)
        stats += _online_dice(logits.float(), _to_net(label, plan, store_dims).to(dev), plan.num_classes)
    model.train()
    tp, fp, fn = stats.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """The training log rows as CSV (atomically); columns in first-seen order."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
