"""The training loop: checkpoints, logs, exact resume, budgets, refusal to clobber a fold."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from medseg.errors import ConfigError, MedsegError
from medseg.training import fit, load_checkpoint, make_splits, model_from_checkpoint
from medseg.training.schedule import lr_factor


def test_fit_writes_checkpoints_log_and_curves(tiny_results: Path) -> None:
    result = fit(tiny_results, "2d", 0, epochs=2, steps_per_epoch=2, num_workers=0, progress=False)
    out = tiny_results / "2d" / "fold_0"
    assert result.epochs == 2 and result.steps == 4 and result.stopped_by == "epochs"
    for name in ("checkpoint_latest.pt", "checkpoint_best.pt", "log.csv", "curves.png"):
        assert (out / name).is_file()
    rows = list(csv.DictReader(open(out / "log.csv", encoding="utf-8")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(float(r["grad_norm"]) > 0 for r in rows)
    model, plan = model_from_checkpoint(out / "checkpoint_latest.pt")
    assert plan.configuration == "2d" and not model.training


def test_ctrl_c_then_resume_continues_exactly_like_an_uninterrupted_run(
    tiny_results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import medseg.training.run_state as run_state

    twin = tmp_path / "twin"
    shutil.copytree(tiny_results, twin)
    fit(tiny_results, "2d", 0, epochs=2, steps_per_epoch=2, num_workers=0, progress=False)

    def interrupt(*args: object, **kwargs: object) -> None:  # Ctrl-C right after epoch 1 is saved
        raise KeyboardInterrupt

    monkeypatch.setattr(run_state, "plot_curves", interrupt)
    with pytest.raises(MedsegError, match="--resume"):
        fit(twin, "2d", 0, epochs=2, steps_per_epoch=2, num_workers=0, progress=False)
    monkeypatch.undo()
    first = load_checkpoint(twin / "2d" / "fold_0" / "checkpoint_latest.pt")
    assert first["epoch"] == 1
    fit(twin, "2d", 0, epochs=2, steps_per_epoch=2, num_workers=0, progress=False, resume=True)
    straight = load_checkpoint(tiny_results / "2d" / "fold_0" / "checkpoint_latest.pt")
    resumed = load_checkpoint(twin / "2d" / "fold_0" / "checkpoint_latest.pt")
    assert resumed["epoch"] == straight["epoch"] == 2 and resumed["step"] == straight["step"]
    for key, value in straight["network_state"].items():
        torch.testing.assert_close(resumed["network_state"][key], value, rtol=0, atol=1e-6)
    exp_avg = [s["exp_avg"] for s in straight["optimizer_state"]["state"].values()]
    exp_avg_resumed = [s["exp_avg"] for s in resumed["optimizer_state"]["state"].values()]
    for a, b in zip(exp_avg, exp_avg_resumed, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_existing_fold_is_not_overwritten_without_resume(tiny_results: Path) -> None:
    fit(tiny_results, "2d", 0, epochs=1, steps_per_epoch=1, num_workers=0, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        fit(tiny_results, "2d", 0, epochs=1, steps_per_epoch=1, num_workers=0, progress=False)


def test_time_budget_stops_before_the_epoch_budget(tiny_results: Path) -> None:
    result = fit(
        tiny_results,
        "2d",
        1,
        epochs=1000,
        steps_per_epoch=1,
        time_budget_s=0.5,
        num_workers=0,
        progress=False,
    )
    assert result.stopped_by == "time_budget" and 1 <= result.epochs < 1000


def test_missing_fold_and_configuration_are_clear_errors(tiny_results: Path) -> None:
    with pytest.raises(ConfigError, match="fold 9 does not exist"):
        fit(tiny_results, "2d", 9, epochs=1, progress=False)
    with pytest.raises(ConfigError, match="no configuration '3d_fullres'"):
        fit(tiny_results, "3d_fullres", 0, epochs=1, progress=False)


def test_training_reduces_the_loss(tiny_results: Path) -> None:
    result = fit(
        tiny_results, "2d", "all", epochs=6, steps_per_epoch=4, num_workers=0, progress=False
    )
    rows = list(csv.DictReader(open(result.run_dir / "log.csv", encoding="utf-8")))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_splits_are_disjoint_and_cover_every_case() -> None:
    ids = [f"c{i}" for i in range(11)]
    splits = make_splits(ids)
    assert len(splits) == 5
    assert sorted(c for s in splits for c in s["val"]) == sorted(ids)
    for s in splits:
        assert not set(s["train"]) & set(s["val"])
    assert make_splits(ids) == splits  # deterministic


def test_poly_schedule_decays_to_zero() -> None:
    assert lr_factor(0, 10, "poly") == 1.0
    assert lr_factor(10, 10, "poly") == 0.0
    assert 0 < lr_factor(5, 10, "poly") < 1
    with pytest.raises(ConfigError):
        lr_factor(0, 10, "bogus")
