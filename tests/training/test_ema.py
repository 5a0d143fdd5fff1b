"""Weight EMA (``medseg.training.ema``) on the engine: the average itself (decay 0, a 2-step
hand computation), validation and checkpoints with the EMA weights, an exact resume, a
checkpoint that loads with ``weights_only=True``, and the segmentation trainer's option."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from medseg.errors import ConfigError, MedsegError
from medseg.training import Task, load_checkpoint, run_training
from medseg.training.ema import WeightEMA, check_decay


def _set(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_decay_zero_follows_the_plain_weights() -> None:
    model = nn.Sequential(nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2))
    ema = WeightEMA(model, 0.0)
    for value in (0.5, -2.0, 7.0):
        _set(model, value)
        model.train()(torch.randn(2, 1, 4, 4, 4))  # moves batch norm's running statistics
        ema.update(model)
        for key, weights in model.state_dict().items():
            assert torch.equal(ema.shadow[key], weights), key
    assert ema.shadow["1.num_batches_tracked"].item() == 3  # integer buffers are copied


@pytest.mark.parametrize(
    ("decay", "expected"),
    [
        # d1 = min(0.5, 1/10) = 0.1, d2 = min(0.5, 2/11): 0.1*0 + 0.9*1 = 0.9, then
        # (2/11)*0.9 + (9/11)*3 = 28.8/11
        (0.5, 28.8 / 11),
        # d = 0.05 both times (below the warm-up rule): 0.95, then 0.05*0.95 + 0.95*3 = 2.8975
        (0.05, 2.8975),
    ],
)
def test_two_updates_by_hand(decay: float, expected: float) -> None:
    model = nn.Conv2d(1, 1, 1)
    _set(model, 0.0)
    ema = WeightEMA(model, decay)
    _set(model, 1.0)
    ema.update(model)
    _set(model, 3.0)
    ema.update(model)
    assert ema.updates == 2
    for value in ema.shadow.values():
        assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("decay", [1.0, -0.1, math.nan, "0.9"])
def test_a_bad_decay_is_refused_naming_it(decay: object) -> None:
    with pytest.raises(ConfigError, match=r"ema_decay must be a number in \[0, 1\)"):
        check_decay(decay)  # type: ignore[arg-type]


def volume_task(seen: list[dict[str, torch.Tensor]] | None = None) -> Task:
    """A 3D toy: one Conv3d learns to double its input; ``seen`` collects the weights that
    each validation ran with."""
    torch.manual_seed(0)
    model = nn.Conv3d(1, 1, 3, padding=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)

    def batches(epoch: int):
        generator = torch.Generator().manual_seed(epoch)
        for _ in range(4):
            x = torch.rand(2, 1, 5, 5, 5, generator=generator)
            yield x, 2 * x

    def validate(use_bf16: bool, rows: list) -> dict[str, float]:
        if seen is not None:
            seen.append({k: v.clone() for k, v in model.state_dict().items()})
        x = torch.rand(1, 1, 5, 5, 5, generator=torch.Generator().manual_seed(99))
        with torch.no_grad():
            return {"val_mae": float((model(x) - 2 * x).abs().mean())}

    return Task(
        model=model,
        optimizer=optimizer,
        batches=batches,
        loss=lambda batch: nn.functional.mse_loss(model(batch[0]), batch[1]),
        validate=validate,
        score=lambda row: -row["val_mae"],
        set_learning_rate=lambda step, fraction: None,
        checkpoint={"task": "volume"},
        compatible=lambda ckpt: ckpt.get("task") == "volume",
    )


def _train(folder: Path, epochs: int, task: Task | None = None, **kwargs: object):
    return run_training(
        task or volume_task(), folder, epochs=epochs, use_bf16=False, progress=False, **kwargs
    )


def test_validation_and_checkpoints_use_the_ema_weights(tmp_path: Path) -> None:
    seen: list[dict[str, torch.Tensor]] = []
    task = volume_task(seen)
    _train(tmp_path / "run", 3, task, ema_decay=0.9)
    # weights_only=True: the EMA entry is tensors, numbers and strings only
    latest = torch.load(tmp_path / "run" / "checkpoint_latest.pt", weights_only=True)
    entry = latest["ema"]
    assert entry["decay"] == 0.9 and entry["updates"] == 12
    for key, value in latest["network_state"].items():
        assert torch.equal(seen[-1][key], value)  # the last validation ran with the EMA
        assert not torch.equal(entry["train_network_state"][key], value)  # it is not plain
        assert torch.equal(task.model.state_dict()[key], entry["train_network_state"][key])
    best = load_checkpoint(tmp_path / "run" / "checkpoint_best.pt", kind="weights")
    assert "ema" in best and best["epoch"] in (1, 2, 3)


def test_without_ema_the_checkpoint_has_no_ema_entry(tmp_path: Path) -> None:
    _train(tmp_path / "run", 1)
    assert "ema" not in load_checkpoint(tmp_path / "run" / "checkpoint_latest.pt", kind="weights")


def test_an_interrupted_ema_run_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medseg.training.run_state as run_state

    _train(tmp_path / "straight", 4, ema_decay=0.8)
    plot = run_state.plot_curves

    def interrupt_after_epoch_2(rows: list, path: Path, panels: object) -> None:
        plot(rows, path, panels)
        if rows[-1]["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_state, "plot_curves", interrupt_after_epoch_2)
    with pytest.raises(MedsegError, match="interrupted"):
        _train(tmp_path / "split", 4, ema_decay=0.8)
    monkeypatch.setattr(run_state, "plot_curves", plot)
    _train(tmp_path / "split", 4, ema_decay=0.8, resume=True)
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint_latest.pt", kind="weights")
    resumed = load_checkpoint(tmp_path / "split" / "checkpoint_latest.pt", kind="weights")
    assert resumed["step"] == straight["step"] == 16
    assert resumed["ema"]["updates"] == straight["ema"]["updates"] == 16
    for key, value in straight["network_state"].items():
        assert torch.equal(resumed["network_state"][key], value)  # the EMA
        trained = straight["ema"]["train_network_state"][key]
        assert torch.equal(resumed["ema"]["train_network_state"][key], trained)
    assert [r["val_mae"] for r in resumed["log"]] == [r["val_mae"] for r in straight["log"]]


def test_a_resumed_run_keeps_its_recorded_decay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _train(tmp_path / "run", 1, ema_decay=0.8)
    _train(tmp_path / "run", 2, ema_decay=0.0, resume=True)
    latest = load_checkpoint(tmp_path / "run" / "checkpoint_latest.pt", kind="weights")
    assert latest["ema"]["decay"] == 0.8 and latest["ema"]["updates"] == 8
    assert "recorded (0.8), not 0" in caplog.text


def test_segmentation_fit_trains_with_ema_and_warmup(tiny_results: Path) -> None:
    from medseg.training import fit

    result = fit(
        tiny_results,
        "2d",
        0,
        epochs=2,
        steps_per_epoch=2,
        num_workers=0,
        progress=False,
        amp=False,
        ema_decay=0.5,
        warmup_steps=4,
    )
    latest = load_checkpoint(result.run_dir / "checkpoint_latest.pt", kind="segmentation")
    assert latest["ema"]["updates"] == 4 and "plan" in latest
    assert latest["log"][0]["lr"] < latest["log"][1]["lr"]  # epoch 1 ended inside the warm-up
    run = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["ema_decay"] == 0.5 and run["warmup_steps"] == 4


def test_the_train_command_passes_ema_and_warmup(tiny_results: Path) -> None:
    from typer.testing import CliRunner

    from medseg.cli.main import app

    args = ["train", str(tiny_results), "-c", "2d", "--fold", "0", "--epochs", "1"]
    args += ["--steps-per-epoch", "2", "--workers", "0", "--no-validate"]
    result = CliRunner().invoke(app, [*args, "--ema-decay", "0.9", "--warmup-steps", "2"])
    assert result.exit_code == 0, result.output
    run_dir = tiny_results / "2d" / "fold_0"
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["ema_decay"] == 0.9 and run["warmup_steps"] == 2
    latest = load_checkpoint(run_dir / "checkpoint_latest.pt", kind="segmentation")
    assert latest["ema"]["updates"] == 2
