"""The training engine under a task of 30 lines (the example in docs/architecture.md): a toy
regression trains, checkpoints, resumes exactly, stops on a time budget, skips a bad step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from medseg.errors import ConfigError, MedsegError
from medseg.training import Task, load_checkpoint, run_training
from medseg.training.engine import Precision, TimeBudget


def line_fit_task(seed: int = 0) -> Task:
    """Fit y = 3x - 1 with one linear layer: 8 batches of 16 points per epoch."""
    torch.manual_seed(seed)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def batches(epoch: int):
        generator = torch.Generator().manual_seed(epoch)  # seeded by the epoch: exact resume
        for _ in range(8):
            x = torch.rand(16, 1, generator=generator)
            yield x, 3 * x - 1

    def validate(use_bf16: bool, rows: list) -> dict[str, float]:
        x = torch.linspace(0, 1, 50)[:, None]
        with torch.no_grad():
            return {"val_mae": float((model(x) - (3 * x - 1)).abs().mean())}

    return Task(
        model=model,
        optimizer=optimizer,
        batches=batches,
        loss=lambda batch: nn.functional.mse_loss(model(batch[0]), batch[1]),
        validate=validate,
        score=lambda row: -row["val_mae"],
        set_learning_rate=lambda step, fraction: None,
        checkpoint={"task": "line"},
        compatible=lambda ckpt: ckpt.get("task") == "line",
        curves=(("loss", ("train_loss",), "log"), ("validation", ("val_mae",), "linear")),
    )


def _train(folder: Path, epochs: int, **kwargs: object):
    return run_training(
        line_fit_task(),
        folder,
        epochs=epochs,
        use_bf16=False,
        progress=False,
        **kwargs,
    )


def test_a_toy_task_trains_and_writes_its_run(tmp_path: Path) -> None:
    result = _train(tmp_path / "run", 30)
    assert result.epochs == 30 and result.steps == 240 and result.stopped_by == "epochs"
    for name in ("checkpoint_latest.pt", "checkpoint_best.pt", "log.csv", "curves.png"):
        assert (tmp_path / "run" / name).is_file()
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint_best.pt", kind="weights")
    assert checkpoint["task"] == "line" and checkpoint["log"][-1]["val_mae"] < 0.05
    weight, bias = (
        checkpoint["network_state"]["weight"].item(),
        checkpoint["network_state"]["bias"].item(),
    )
    assert weight == pytest.approx(3, abs=0.2) and bias == pytest.approx(-1, abs=0.2)
    # each epoch says how long its validation took, a part of the epoch's time
    for row in checkpoint["log"]:
        assert 0 <= row["val_seconds"] <= row["epoch_seconds"]


def test_an_interrupted_run_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medseg.training.run_state as run_state

    _train(tmp_path / "straight", 4)
    plot = run_state.plot_curves

    def interrupt_after_epoch_2(rows: list, path: Path, panels: object) -> None:
        plot(rows, path, panels)
        if rows[-1]["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_state, "plot_curves", interrupt_after_epoch_2)
    with pytest.raises(MedsegError, match="interrupted.*--resume"):
        _train(tmp_path / "split", 4)
    monkeypatch.setattr(run_state, "plot_curves", plot)
    with pytest.raises(ConfigError, match="--resume"):
        _train(tmp_path / "split", 4)
    _train(tmp_path / "split", 4, resume=True)
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint_latest.pt", kind="weights")
    resumed = load_checkpoint(tmp_path / "split" / "checkpoint_latest.pt", kind="weights")
    assert resumed["step"] == straight["step"] == 32
    for name, value in straight["network_state"].items():
        assert torch.equal(resumed["network_state"][name], value)
    assert [r["train_loss"] for r in resumed["log"]] == [r["train_loss"] for r in straight["log"]]


def test_resume_without_a_checkpoint_says_so_and_starts_fresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = _train(tmp_path / "run", 1, resume=True)
    assert result.epochs == 1 and "no checkpoint_latest.pt to resume from" in caplog.text


def test_another_task_cannot_resume_this_run(tmp_path: Path) -> None:
    _train(tmp_path / "run", 1)
    other = line_fit_task()
    other.checkpoint = {"task": "other"}
    other.compatible = lambda ckpt: ckpt.get("task") == "other"
    with pytest.raises(ConfigError, match="another plan or configuration"):
        run_training(
            other,
            tmp_path / "run",
            epochs=2,
            use_bf16=False,
            resume=True,
            progress=False,
        )


def test_a_time_budget_ends_the_run_and_counts_across_resumes(tmp_path: Path) -> None:
    result = _train(tmp_path / "run", 10_000, time_budget_s=0.5)
    assert result.stopped_by == "time_budget" and 1 <= result.epochs < 10_000
    spent = load_checkpoint(tmp_path / "run" / "checkpoint_latest.pt", kind="weights")[
        "elapsed_seconds"
    ]
    assert spent > 0
    # resumed with a budget the first run already spent: one step, then the run stops
    again = _train(tmp_path / "run", 10_000, time_budget_s=spent, resume=True)
    assert again.stopped_by == "time_budget" and again.steps == result.steps + 1
    budget = TimeBudget(10.0, elapsed_before=9.5)
    assert budget.fraction() == pytest.approx(0.95, abs=0.01) and not budget.exhausted()
    with pytest.raises(ConfigError, match="time budget"):
        TimeBudget(float("nan"))


def test_a_non_finite_step_is_skipped_and_too_many_switch_bf16_off(tmp_path: Path) -> None:
    task = line_fit_task()
    loss = task.loss
    task.loss = lambda batch: loss(batch) * (float("inf") if batch[0][0, 0] < 0.5 else 1.0)
    result = run_training(task, tmp_path / "run", epochs=2, use_bf16=True, progress=False)
    log = load_checkpoint(tmp_path / "run" / "checkpoint_latest.pt", kind="weights")["log"]
    assert result.steps == 16 and log[0]["skipped_steps"] > 0
    assert [row["bf16"] for row in log] == [
        True,
        False,
    ]  # > 5 % of the steps lost: float32 from epoch 2
    assert all(torch.isfinite(v).all() for v in task.model.state_dict().values())
    precision = Precision(torch.device("cpu"), True)
    precision.after_epoch(skipped=0, steps=100)
    assert precision.use_bf16


def test_zero_epochs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        _train(tmp_path / "run", 0)


@pytest.mark.parametrize("step_seconds", [0.02, 0.07, 0.13])
def test_the_budget_schedule_ends_its_decay_when_the_budget_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step_seconds: float
) -> None:
    """With a fake clock (each step takes ``step_seconds``), 15-step epochs and a 0.5 s
    budget: training runs into the epoch that crosses the budget and stops within one step
    of it, and the clock-driven cosine schedule is then within one step of zero."""
    from medseg.training import engine
    from medseg.training.schedule import run_lr_factor

    now = [0.0]
    monkeypatch.setattr(engine.time, "perf_counter", lambda: now[0])
    task = line_fit_task()
    factors: list[float] = []
    loss = task.loss

    def timed_loss(batch):
        now[0] += step_seconds
        return loss(batch)

    def batches(epoch: int):
        generator = torch.Generator().manual_seed(epoch)
        for _ in range(15):
            x = torch.rand(4, 1, generator=generator)
            yield x, 3 * x - 1

    task.loss, task.batches = timed_loss, batches
    task.set_learning_rate = lambda step, fraction: factors.append(
        run_lr_factor(step, 10_000 * 15, "cosine", fraction)
    )
    result = run_training(
        task, tmp_path / "run", epochs=10_000, use_bf16=False, time_budget_s=0.5, progress=False
    )
    assert result.stopped_by == "time_budget"
    steps = result.steps
    assert steps * step_seconds >= 0.5 > (steps - 1) * step_seconds  # stopped at the budget
    # the last step's factor: the schedule at (budget - one step) / budget, near zero
    last_fraction = (steps - 1) * step_seconds / 0.5
    assert factors[-1] == pytest.approx(run_lr_factor(0, 1, "cosine", last_fraction), abs=1e-6)
    assert factors[-1] <= run_lr_factor(0, 1, "cosine", 1 - step_seconds / 0.5) + 1e-9
    assert result.epochs == math.ceil(steps / 15)  # the crossing epoch was started
