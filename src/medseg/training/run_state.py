"""A run's state on disk: resume it exactly, save it after every epoch.

``RUN/checkpoint_latest.pt`` is written after every epoch and ``RUN/checkpoint_best.pt`` when
the task's metric improved, each holding everything to resume: weights, optimiser state, the
epoch and step counters, the best metric, the log rows, the RNG states, the seconds trained
(so a time budget continues across resumes), whether bf16 is still on, plus the task's own
entries (the plan or config that rebuilds the model). ``RUN/log.csv`` and ``RUN/curves.png``
follow the log. Every file is written atomically, so an interrupted write never corrupts the
previous one.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.errors import ConfigError
from medseg.fileutil import atomic_path, csv_safe
from medseg.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from medseg.training.curves import plot_curves

if TYPE_CHECKING:
    from medseg.training.engine import Task

log = logging.getLogger(__name__)
LATEST, BEST = "checkpoint_latest.pt", "checkpoint_best.pt"


@dataclass
class RunState:
    """Counters and log of a run; ``use_bf16`` None until the run decided (or a checkpoint said)."""

    epoch: int = 0
    step: int = 0
    best_metric: float = -math.inf
    rows: list[dict[str, Any]] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    use_bf16: bool | None = None
    is_best: bool = False

    def end_epoch(
        self, row: dict[str, Any], metric: float, *, use_bf16: bool, elapsed: float
    ) -> None:
        """Record a finished epoch's log row and selection metric (higher is better)."""
        self.rows.append(row)
        self.epoch = int(row["epoch"])
        self.is_best = metric > self.best_metric
        self.best_metric = max(self.best_metric, metric)
        self.use_bf16, self.elapsed_seconds = use_bf16, elapsed


def resume_run(task: Task, run_dir: Path, *, resume: bool) -> RunState:
    """The state to start from: fresh, or loaded from ``checkpoint_latest.pt`` into the task's
    model and optimiser (and the RNGs) when ``resume``.

    Raises:
        ConfigError: checkpoints exist but ``resume`` is False; the checkpoint is unreadable or
            was trained with another plan/config.
    """
    latest = run_dir / LATEST
    if latest.exists() and not resume:
        raise ConfigError(
            f"{run_dir}: this run already has checkpoints; pass --resume to continue "
            "(or choose another output folder)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        return RunState()
    if not latest.exists():
        log.warning(
            "%s: no %s to resume from (nothing was saved yet, or the write was interrupted); "
            "training starts from scratch",
            run_dir,
            LATEST,
        )
        return RunState()
    checkpoint = load_checkpoint(latest, kind="weights")
    if task.compatible is not None and not task.compatible(checkpoint):
        raise ConfigError(
            f"{latest}: this checkpoint was trained with another plan or configuration; "
            "cannot resume (use another output folder)"
        )
    task.model.load_state_dict(checkpoint["network_state"])
    task.optimizer.load_state_dict(checkpoint["optimizer_state"])
    set_rng_state(checkpoint["rng_state"])
    log.info("resuming %s at epoch %d", run_dir, checkpoint["epoch"])
    saved_world = checkpoint.get("world_size")  # None: saved before medseg recorded it
    if saved_world is not None and saved_world != task.world:
        log.warning(
            "%s: saved by %d process(es), resumed by %d: the world size changed; training "
            "continues from step %d on the same schedule, each step now over %d rank batch(es) "
            "(see docs/distributed.md)",
            latest,
            saved_world,
            task.world,
            checkpoint["step"],
            task.world,
        )
    return RunState(
        epoch=checkpoint["epoch"],
        step=checkpoint["step"],
        best_metric=checkpoint["best_metric"],
        rows=list(checkpoint["log"]),
        elapsed_seconds=checkpoint.get("elapsed_seconds", 0.0),
        use_bf16=checkpoint.get("amp"),
    )


def save_epoch(task: Task, run_dir: Path, state: RunState) -> None:
    """Write the checkpoints, ``log.csv`` and ``curves.png`` after an epoch (atomically)."""
    contents = {
        "network_state": task.model.state_dict(),
        "optimizer_state": task.optimizer.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "best_metric": state.best_metric,
        "log": state.rows,
        "rng_state": rng_state(),
        "elapsed_seconds": state.elapsed_seconds,
        "amp": state.use_bf16,
        "world_size": task.world,
        **task.checkpoint,
    }
    save_checkpoint(run_dir / LATEST, **contents)
    if state.is_best:
        save_checkpoint(run_dir / BEST, **contents)
    write_log(run_dir / "log.csv", state.rows)
    plot_curves(state.rows, run_dir / "curves.png", task.curves)


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """The training log rows as CSV (atomically); columns in first-seen order, text cells that a
    spreadsheet would run as formulas quoted (``csv_safe``)."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows({k: csv_safe(v) for k, v in row.items()} for row in rows)
