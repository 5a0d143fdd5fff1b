"""Several processes: DDP with gloo on the CPU, launched by torchrun."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medseg.losses import build_loss
from medseg.training import load_checkpoint

HERE = Path(__file__).parent
pytestmark = pytest.mark.slow


def _torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env=env,
    )


def _why(result: subprocess.CompletedProcess[str]) -> str:
    """The start of stderr holds a worker's own error; the end holds torchrun's summary."""
    err = result.stderr
    return err if len(err) < 4000 else err[:2000] + "\n...\n" + err[-2000:]


def test_ddp_step_equals_the_update_with_averaged_gradients(tmp_path: Path) -> None:
    sys.path.insert(0, str(HERE))
    try:
        import ddp_worker
    finally:
        sys.path.remove(str(HERE))
    result = _torchrun(str(HERE / "ddp_worker.py"), str(tmp_path / "ddp.pt"))
    assert result.returncode == 0, _why(result)
    distributed = torch.load(tmp_path / "ddp.pt", weights_only=True)
    # expected: same initial weights, gradient = mean of the two ranks' gradients, one SGD step
    model = ddp_worker.make_model()
    grads = []
    for rank in (0, 1):
        model.zero_grad()
        image, label = ddp_worker.batch_for(rank)
        build_loss("dice_ce")(model(image), label).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    with torch.no_grad():
        for name, p in model.named_parameters():
            p -= 0.1 * (grads[0][name] + grads[1][name]) / 2
    for name, value in model.state_dict().items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-5, atol=1e-6)


def test_medseg_train_runs_under_torchrun_with_two_processes(tiny_results: Path) -> None:
    result = _torchrun(
        "-m",
        "medseg.cli.main",
        "train",
        str(tiny_results),
        "--config",
        "2d",
        "--fold",
        "0",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--workers",
        "0",
        "--no-validate",
    )
    assert result.returncode == 0, _why(result)
    ckpt = load_checkpoint(tiny_results / "2d" / "fold_0" / "checkpoint_latest.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 2
    assert '"world_size": 2' in (tiny_results / "2d" / "fold_0" / "run.json").read_text(
        encoding="utf-8"
    )


def test_a_time_budget_under_torchrun_stops_every_rank_together(tiny_results: Path) -> None:
    # ranks decide to stop by all-reduce; a rank stopping alone would leave the other hanging in DDP
    result = _torchrun(
        "-m",
        "medseg.cli.main",
        "train",
        str(tiny_results),
        "--config",
        "2d",
        "--fold",
        "0",
        "--epochs",
        "500",
        "--steps-per-epoch",
        "2",
        "--workers",
        "0",
        "--no-validate",
        "--time-budget",
        "3s",
        timeout=120,
    )
    assert result.returncode == 0, _why(result)
    ckpt = load_checkpoint(tiny_results / "2d" / "fold_0" / "checkpoint_latest.pt")
    assert 1 <= ckpt["epoch"] < 500
