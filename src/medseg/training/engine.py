"""The training engine: one loop under every trainer.

A trainer describes its task (:class:`Task`: the model and optimiser, its batches, its loss,
its validation and the metric that picks the best checkpoint); :func:`run_training` does the
rest, the same way for every task:

* the step (:func:`train_step`): bf16 autocast where it pays off, backward, gradient
  clipping, and a step whose gradient norm is not finite skipped and counted, as a GradScaler
  would; a run that loses too many steps to bf16 overflow continues in float32
  (:class:`Precision`, recorded in the checkpoint so a resumed run keeps it);
* budgets: an epoch count and an optional time budget (:class:`TimeBudget`, one place decides,
  all-reduced under DDP so every rank stops at the same step);
* the run state (:mod:`medseg.training.run_state`): after every epoch ``checkpoint_latest.pt``
  and (when the metric improved) ``checkpoint_best.pt``, ``log.csv`` and ``curves.png``, all
  atomically; ``resume`` continues exactly (weights, optimiser, RNG, log, precision, time used);
* progress (tqdm) and Ctrl-C (the completed epochs are on disk; the message says how to resume);
* weight EMA (``ema_decay`` > 0, :mod:`medseg.training.ema`): an exponential moving average of
  the weights, updated after every step; validation and the saved ``network_state`` use it, and
  the checkpoint keeps the training weights too, so a resumed run continues exactly.

``docs/architecture.md`` shows a complete trainer in 30 lines.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medseg.device import autocast
from medseg.errors import ConfigError, MedsegError
from medseg.fileutil import remove_stale_temporaries, run_lock, write_json_atomic
from medseg.training.curves import Panel
from medseg.training.distributed import any_rank, finish_distributed
from medseg.training.ema import WeightEMA, check_decay, ema_weights, start_ema
from medseg.training.run_state import LATEST, RunState, resume_run, save_epoch

log = logging.getLogger(__name__)

GRAD_CLIP = 12.0  # nnU-Net's gradient-norm clip
MAX_SKIPPED_SHARE = (
    0.05  # of an epoch's steps lost to bf16 overflow before the run switches to float32
)


@dataclass
class Task:
    """What a trainer supplies; :func:`run_training` owns the loop around it.

    Attributes:
        model: the module whose weights are trained, saved and resumed.
        optimizer: its optimiser (the engine saves and restores its state).
        batches: ``epoch -> iterable of batches``; seed it from the epoch, so a resumed run
            sees exactly the batches an uninterrupted one would.
        loss: ``batch -> scalar loss``, called under autocast (forward + loss).
        validate: ``(use_bf16, rows) -> {name: value}`` after each epoch (``rows``: the log so
            far); the entries join the epoch's log row.
        score: ``row -> float``, higher is better: picks ``checkpoint_best.pt``.
        set_learning_rate: ``(step, budget_fraction) -> None`` before each step
            (``budget_fraction``: share of the time budget used, None without one).
        prepare: ``batch -> batch`` outside autocast before the loss (to the device,
            augmentation); its time is not counted as waiting for data.
        network: the module called in the step when it differs from ``model`` (a DDP wrapper).
        train_mode: puts the network in training mode each epoch (default ``network.train()``).
        checkpoint: extra entries of every checkpoint (the plan or config that rebuilds it).
        compatible: ``checkpoint -> bool``: may this run resume from it.
        files: JSON files written into the run folder once the run may start
            (``{"config.json": {...}}``).
        device: where the task's tensors live (for autocast).
        rank, world: the DDP rank and world size (rank 0 writes; decisions are all-reduced).
        curves: panels of ``curves.png`` (``medseg.training.curves.plot_curves``).
        progress_keys: log columns shown on the progress bar.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    batches: Callable[[int], Iterable[Any]]
    loss: Callable[[Any], torch.Tensor]
    validate: Callable[[bool, list[dict[str, Any]]], dict[str, float]]
    score: Callable[[dict[str, Any]], float]
    set_learning_rate: Callable[[int, float | None], None]
    prepare: Callable[[Any], Any] | None = None
    network: nn.Module | None = None
    train_mode: Callable[[], None] | None = None
    checkpoint: dict[str, Any] = field(default_factory=dict)
    compatible: Callable[[dict[str, Any]], bool] | None = None
    files: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world: int = 1
    curves: Sequence[Panel] = (("loss", ("train_loss",), "linear"),)
    progress_keys: tuple[str, ...] = ("train_loss",)

    def __post_init__(self) -> None:
        if self.network is None:
            self.network = self.model


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its folder, epochs completed, optimiser steps, best metric, the seconds
    this process trained, and ``"epochs"`` or ``"time_budget"``."""

    run_dir: Path
    epochs: int
    steps: int
    best_metric: float
    seconds: float
    stopped_by: str


@dataclass(frozen=True)
class StepResult:
    loss: float
    grad_norm: float
    skipped: bool


class Precision:
    """bf16 autocast on or off for a run, switched off for good after too many overflows.

    bf16's 8-bit mantissa can blow up gradients (batch norm on tiny feature maps: ResNet-18
    at 28^3 lost up to 18 % of its steps); float32 loses none.
    """

    def __init__(self, device: torch.device, use_bf16: bool) -> None:
        self.device, self.use_bf16 = device, use_bf16

    def autocast(self) -> torch.autocast:
        return autocast(self.device, self.use_bf16)

    def after_epoch(self, skipped: int, steps: int) -> None:
        if self.use_bf16 and skipped > MAX_SKIPPED_SHARE * steps:
            self.use_bf16 = False
            log.warning(
                "bf16 overflowed in %d of %d steps; training continues in float32", skipped, steps
            )


class TimeBudget:
    """Seconds of training allowed across resumes; ``None`` seconds: no limit.

    Under DDP every decision is all-reduced, so all ranks stop at the same step.
    """

    def __init__(
        self, seconds: float | None, *, elapsed_before: float = 0.0, world: int = 1
    ) -> None:
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"time budget must be a positive number of seconds, got {seconds}")
        self.seconds, self.elapsed_before, self.world = seconds, elapsed_before, world
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def fraction(self) -> float | None:
        """Share of the budget used (for schedules that follow the clock), None without one."""
        return None if self.seconds is None else min(self.elapsed() / self.seconds, 1.0)

    def exhausted(self) -> bool:
        return self.seconds is not None and any_rank(self.elapsed() > self.seconds, self.world)


def train_step(
    task: Task, batch: Any, precision: Precision, parameters: list[nn.Parameter]
) -> StepResult:
    """One optimiser step: forward and loss under autocast, backward, clip, step or skip."""
    task.optimizer.zero_grad(set_to_none=True)
    with precision.autocast():
        loss = task.loss(batch)
    loss.backward()
    norm = float(nn.utils.clip_grad_norm_(parameters, GRAD_CLIP))
    skipped = not math.isfinite(norm)
    if skipped:  # an overflow in a low-precision backward: drop this step, as a GradScaler would
        task.optimizer.zero_grad(set_to_none=True)
    else:
        task.optimizer.step()
    return StepResult(float(loss.detach()), norm, skipped)


def _train_epoch(
    task: Task,
    epoch: int,
    state: RunState,
    precision: Precision,
    budget: TimeBudget,
    ema: WeightEMA | None = None,
) -> tuple[dict[str, Any], bool]:
    """Train one epoch (updating ``ema`` after each step taken); returns its log entries and
    whether the time budget ran out."""
    (task.train_mode or task.network.train)()
    parameters = [p for p in task.model.parameters() if p.requires_grad]
    losses, norms, skipped, wait, out_of_time = [], [], 0, 0.0, False
    batches = iter(task.batches(epoch))
    while True:
        fetch_start = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            break
        wait += time.perf_counter() - fetch_start
        if task.prepare is not None:
            batch = task.prepare(batch)
        task.set_learning_rate(state.step, budget.fraction())
        result = train_step(task, batch, precision, parameters)
        losses.append(result.loss)
        if result.skipped:
            skipped += 1
        else:
            norms.append(result.grad_norm)
            if ema is not None:
                ema.update(task.model)
        state.step += 1
        if budget.exhausted():
            out_of_time = True  # end this epoch early; it is still validated and saved
            break
    if skipped:
        log.warning(
            "epoch %d: %d step(s) had non-finite gradients and were skipped", epoch + 1, skipped
        )
    row = {
        "epoch": epoch + 1,
        "step": state.step,
        "train_loss": float(np.mean(losses)) if losses else math.nan,
        "lr": task.optimizer.param_groups[-1]["lr"],
        "grad_norm": float(np.mean(norms)) if norms else 0.0,
        "skipped_steps": skipped,
        "bf16": precision.use_bf16,
        "data_wait_seconds": wait,
    }
    precision.after_epoch(skipped, len(losses))
    return row, out_of_time


def run_training(
    task: Task,
    run_dir: str | os.PathLike[str],
    *,
    epochs: int,
    use_bf16: bool,
    time_budget_s: float | None = None,
    resume: bool = False,
    progress: bool = True,
    description: str = "train",
    resume_hint: str = "the same command plus --resume",
    ema_decay: float = 0.0,
) -> RunResult:
    """Train ``task`` for ``epochs`` (or until the time budget), writing into ``run_dir``.

    Args:
        task: what to train (see :class:`Task`).
        run_dir: the run's folder (created): checkpoints, ``log.csv``, ``curves.png``.
        epochs: epochs in all (a resumed run continues up to this count).
        use_bf16: bf16 autocast on ``task.device`` (a resumed run keeps its recorded choice).
        time_budget_s: stop once this many seconds of training (across resumes) are used: an
            epoch ends early at the budget (then it is validated and saved), so the
            clock-driven learning-rate schedule ends its decay with the run.
        resume: continue from ``run_dir/checkpoint_latest.pt``.
        resume_hint: how to resume, for the Ctrl-C message.
        ema_decay: validate and save an EMA of the weights (:mod:`medseg.training.ema`; 0:
            off; a resumed run keeps the decay its checkpoint recorded).

    Raises:
        ConfigError: ``epochs`` < 1, ``ema_decay`` outside [0, 1), existing checkpoints
            without ``resume``, or a checkpoint the task cannot resume from.
        LockedError: another process is training into ``run_dir``.
        MedsegError: on Ctrl-C, after saying how to resume (completed epochs are saved).
    """
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    ema_decay = check_decay(ema_decay)
    run_dir, rank, world = Path(run_dir), task.rank, task.world
    # one run per folder: a second one is refused, naming the first (the OS drops the lock
    # when a process dies, even by kill -9); then what an interrupted write left is removed
    with run_lock(run_dir, "trained") if rank == 0 else contextlib.nullcontext():
        if rank == 0:
            remove_stale_temporaries(run_dir)
        state = resume_run(task, run_dir, resume=resume)
        # resumed: checkpoint_latest.pt's EMA (its network_state) and training weights
        ema = start_ema(task.model, run_dir / LATEST if state.epoch else None, ema_decay)
        if rank == 0:
            for name, contents in task.files.items():
                write_json_atomic(run_dir / name, contents)
        _warn_if_trained(run_dir, state, epochs)
        precision = Precision(task.device, use_bf16 if state.use_bf16 is None else state.use_bf16)
        budget = TimeBudget(time_budget_s, elapsed_before=state.elapsed_seconds, world=world)
        bar = tqdm(
            total=None if time_budget_s is not None else epochs,
            initial=state.epoch,
            unit="epoch",
            desc=description + (f" ({time_budget_s:.0f} s budget)" if time_budget_s else ""),
            disable=not progress or rank != 0,
        )  # with a time budget: no epoch total, so no false ETA
        try:
            stopped_by = _run_epochs(
                task, run_dir, state, precision, budget, bar, epochs=epochs, rank=rank, ema=ema
            )
        except KeyboardInterrupt:
            raise MedsegError(
                f"interrupted; epochs completed so far are saved in {run_dir / LATEST}. "
                f"Continue with {resume_hint}"
            ) from None
        finally:
            bar.close()
        finish_distributed(world)
    return RunResult(
        run_dir,
        state.epoch,
        state.step,
        state.best_metric,
        budget.elapsed() - budget.elapsed_before,
        stopped_by,
    )


def _warn_if_trained(run_dir: Path, state: RunState, epochs: int) -> None:
    if state.epoch >= epochs:
        log.warning(
            "%s: already trained %d epoch(s), not fewer than the %d asked; nothing to train "
            "(ask for more epochs to continue)",
            run_dir,
            state.epoch,
            epochs,
        )


def _run_epochs(
    task: Task,
    run_dir: Path,
    state: RunState,
    precision: Precision,
    budget: TimeBudget,
    bar: tqdm,
    *,
    epochs: int,
    rank: int,
    ema: WeightEMA | None = None,
) -> str:
    """Train, validate and save epoch after epoch (with ``ema``: validate and save its
    weights); returns what stopped the run."""
    first = state.epoch
    for epoch in range(state.epoch, epochs):
        # an epoch starts whenever budget is left, and stops at the budget: the run trains to
        # its end and the clock-driven schedule finishes its decay (a rule "start no epoch
        # that would overrun" left up to one epoch of budget unused, at a high learning rate)
        if epoch > first and budget.exhausted():
            return "time_budget"
        epoch_start = time.perf_counter()
        row, out_of_time = _train_epoch(task, epoch, state, precision, budget, ema)
        with ema_weights(task.model, task.checkpoint, ema):
            validation_start = time.perf_counter()
            row.update(task.validate(precision.use_bf16, state.rows))
            row["val_seconds"] = time.perf_counter() - validation_start
            seconds = time.perf_counter() - epoch_start
            row["epoch_seconds"] = seconds
            row["data_wait_share"] = row.pop("data_wait_seconds") / max(seconds, 1e-9)
            elapsed = budget.elapsed()
            state.end_epoch(row, task.score(row), use_bf16=precision.use_bf16, elapsed=elapsed)
            if rank == 0:
                save_epoch(task, run_dir, state)
        bar.set_postfix({k: f"{row[k]:.3f}" for k in task.progress_keys if k in row})
        bar.update(1)
        if out_of_time:
            return "time_budget"
    return "epochs"
