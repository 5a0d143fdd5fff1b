"""DDP at scale (issue 18, item 5): batch equivalence, sharded validation, resume across
world sizes. Two gloo processes on the CPU, launched by ``torchrun --standalone``."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from medseg.planning.plan import Plans
from medseg.training import load_checkpoint
from medseg.training.segmentation import fit

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
try:
    import ddp_worker
    from test_ddp import _torchrun, _why
finally:
    sys.path.remove(str(HERE))

pytestmark = pytest.mark.slow
FOLD = ("2d", "fold_0")


def _train_cli(results: Path, epochs: int, *extra: str):
    args = ["-m", "medseg.cli.main", "train", str(results), "--config", "2d", "--fold", "0"]
    args += ["--epochs", str(epochs), "--steps-per-epoch", "2", "--workers", "0", *extra]
    return _torchrun(*args, timeout=240)


def test_two_processes_at_batch_b_equal_one_process_at_2b(tmp_path: Path) -> None:
    result = _torchrun(str(HERE / "ddp_worker.py"), "--equal", str(tmp_path / "ddp.pt"))
    assert result.returncode == 0, _why(result)
    distributed = torch.load(tmp_path / "ddp.pt", weights_only=True)
    model = ddp_worker.make_model().double()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    single = ddp_worker.train_equal(model, model, *ddp_worker.samples())
    moved = 0.0
    for name, value in single.items():
        torch.testing.assert_close(distributed[name], value, rtol=0, atol=1e-6)
        moved = max(moved, float((value - start[name]).abs().max()))
    assert moved > 1e-3  # the steps changed the weights, so the comparison says something


def test_sharded_validation_equals_one_process(tiny_results: Path, tmp_path: Path) -> None:
    out = tmp_path / "row.json"
    result = _torchrun(str(HERE / "ddp_worker.py"), "--validate", str(tiny_results), str(out))
    assert result.returncode == 0, _why(result)
    distributed = json.loads(out.read_text(encoding="utf-8"))
    single = ddp_worker.validation_row(str(tiny_results))
    assert 0.0 < single["val_dice"] < 1.0  # a non-trivial Dice, not 0 or 1 on both sides
    assert distributed == pytest.approx(single, abs=1e-12)


def _three_stage_plan(results: Path) -> None:
    """3 stages: 3 deep-supervision outputs, the coarsest of weight 0 (its head gets no
    gradient, which DDP must be told about)."""
    plans = Plans.from_json(results / "plans.json")
    config = {
        "features": [4, 8, 8],
        "kernel_sizes": [[3, 3]] * 3,
        "strides": [[1, 1], [2, 2], [2, 2]],
    }
    plan = replace(plans["2d"], network_config={**plans["2d"].network_config, **config})
    Plans(plans.dataset_name, plans.dataset_path, {"2d": plan}).to_json(results / "plans.json")


def test_a_two_process_checkpoint_resumes_in_one_process(
    tiny_results: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _three_stage_plan(tiny_results)
    result = _train_cli(tiny_results, 2)
    assert result.returncode == 0, _why(result)
    latest = tiny_results.joinpath(*FOLD, "checkpoint_latest.pt")
    before = load_checkpoint(latest)
    assert (before["epoch"], before["step"], before["world_size"]) == (2, 4, 2)
    with caplog.at_level(logging.WARNING, logger="medseg.training.run_state"):
        run = fit(tiny_results, "2d", 0, epochs=3, steps_per_epoch=2, resume=True,
                  num_workers=0, progress=False)  # fmt: skip
    assert "the world size changed" in caplog.text and "saved by 2 process(es)" in caplog.text
    after = load_checkpoint(latest)
    assert (run.epochs, run.steps, after["world_size"]) == (3, 6, 1)
    assert after["log"][:2] == before["log"]  # the run continued: its first epochs kept
    # AdamW (the CPU default) counts its steps: 6 only if the 2-process state was loaded
    counts = {float(s["step"]) for s in after["optimizer_state"]["state"].values()}
    assert counts == {6.0}


def test_a_one_process_checkpoint_resumes_in_two_processes(tiny_results: Path) -> None:
    fit(tiny_results, "2d", 0, epochs=1, steps_per_epoch=2, num_workers=0, progress=False)
    result = _train_cli(tiny_results, 2, "--resume", "--no-validate")
    assert result.returncode == 0, _why(result)
    assert "saved by 1 process(es), resumed by 2" in result.stderr
    after = load_checkpoint(tiny_results.joinpath(*FOLD, "checkpoint_latest.pt"))
    assert (after["epoch"], after["step"], after["world_size"]) == (2, 4, 2)


def test_an_elastic_restart_resumes_from_the_latest_checkpoint(tiny_results: Path) -> None:
    # torchrun restarts every worker when one dies; `--resume` on each start continues the run
    result = _torchrun(
        "--max-restarts", "1", str(HERE / "ddp_worker.py"), "--elastic", str(tiny_results),
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, _why(result)
    ckpt = load_checkpoint(tiny_results.joinpath(*FOLD, "checkpoint_latest.pt"))
    assert (ckpt["epoch"], ckpt["step"], len(ckpt["log"])) == (2, 4, 2)
    assert "exitcode: 3" in result.stderr  # a worker did die once, and the run still ended well
