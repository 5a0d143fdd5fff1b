"""A crash in a native kernel never takes the user's run down: the step probe runs in a child
process; when its bf16 step dies or hangs, the plan (or the training run) uses float32 and says
why; ``--precision`` overrides."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from medseg.errors import MedsegError
from medseg.planning import Plans, calibrate
from medseg.planning.calibrate import decide_bf16, fit_to_time_budget, probe_step_seconds
from medseg.planning.steps import with_precision

HERE = Path(__file__).parent
pytestmark = pytest.mark.slow  # each probe spawns a Python process (about 3 s)


@pytest.fixture
def crashing(monkeypatch: pytest.MonkeyPatch):
    """Return a function installing a stand-in child (``crashing_probe.<name>``)."""
    monkeypatch.syspath_prepend(str(HERE))
    import crashing_probe

    monkeypatch.setattr(calibrate, "_PROBED", {})
    monkeypatch.setattr(calibrate, "bf16_supported", lambda device: True)  # as on an AMX machine

    def install(name: str) -> None:
        monkeypatch.setattr(calibrate, "_probe_child", getattr(crashing_probe, name))

    return install


def _small_plans(tiny_plans: Plans) -> Plans:
    def small(p):
        d = p.spatial_dims
        network = {
            **p.network_config,
            "features": [4, 8],
            "kernel_sizes": [[3] * d] * 2,
            "strides": [[1] * d, [2] * d],
        }
        return replace(p, patch_size=(8,) * d, batch_size=1, network_config=network)

    configs = {n: small(p) for n, p in tiny_plans.configurations.items()}
    return replace(tiny_plans, configurations=configs)


@pytest.fixture
def tiny_plans(make_dataset, tmp_path: Path) -> Plans:
    from medseg.planning.steps import plan

    root = make_dataset(tmp_path / "ds", num_cases=3, shape=(16, 16), spacing=(1.0, 1.0))
    plans = plan(root, tmp_path / "results", progress=False)
    return _small_plans(plans)


def test_a_step_that_segfaults_in_the_child_is_reported_not_fatal(
    tiny_plans: Plans, crashing
) -> None:
    crashing("segfault_in_bf16")
    plan = tiny_plans["2d"]
    probes = probe_step_seconds(plan, steps=1)
    assert probes["bf16"].seconds is None and "signal 11 (SIGSEGV)" in probes["bf16"].failure
    assert probes["fp32"].seconds > 0  # measured before, in the same child


def test_a_hung_step_is_killed_after_the_timeout(
    tiny_plans: Plans, crashing, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashing("hang_in_bf16")
    monkeypatch.setattr(calibrate, "BF16_TIMEOUT_MIN_S", 5.0)
    result = calibrate._run_probe(tiny_plans["2d"], "cpu", 1, ("fp32", "bf16"), timeout_s=60)
    assert result["fp32"].seconds > 0
    assert result["bf16"].seconds is None
    assert re.fullmatch(r"did not finish within \d+ s", result["bf16"].failure)


def test_a_time_budget_plan_trains_in_float32_where_bf16_crashes(
    tiny_plans: Plans, crashing
) -> None:
    crashing("segfault_in_bf16")
    plans = fit_to_time_budget(tiny_plans, 60, device="cpu")
    plan = plans["2d"]
    assert plan.precision == "fp32"
    assert "signal 11" in plan.reasons["precision"] and "(fp32)" in plan.reasons["time_budget"]


def test_an_explicit_bf16_that_crashes_is_an_error_not_a_silent_switch(
    tiny_plans: Plans, crashing
) -> None:
    crashing("segfault_in_bf16")
    with pytest.raises(
        MedsegError, match="bf16 training step was killed by signal 11.*drop --precision bf16"
    ):
        fit_to_time_budget(
            with_precision(tiny_plans, "bf16"), 60, device="cpu", precision_forced=True
        )


def test_training_an_unprobed_plan_probes_first_and_falls_back_to_float32(
    tiny_results: Path, crashing, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    from medseg.training import fit

    crashing("segfault_in_bf16")
    plan = Plans.from_json(tiny_results / "plans.json")["2d"]
    assert plan.precision == "auto"
    assert decide_bf16(replace(plan, precision="fp32"), torch.device("cpu")) == (
        False,
        "the plan says fp32",
    )
    result = fit(tiny_results, "2d", 0, epochs=1, steps_per_epoch=1, num_workers=0, progress=False)
    run = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["bf16"] is False and "signal 11" in run["precision_reason"]
    assert "training in float32 instead" in caplog.text


def test_the_cli_precision_option_sets_every_configuration(tiny_plans: Plans) -> None:
    plans = with_precision(tiny_plans, "fp32")
    assert {p.precision for p in plans.configurations.values()} == {"fp32"}
    assert all("--precision" in p.reasons["precision"] for p in plans.configurations.values())
    with pytest.raises(Exception, match="bf16 or fp32"):
        with_precision(tiny_plans, "fp16")


if sys.platform != "linux":  # pragma: no cover
    pytestmark = [pytestmark, pytest.mark.skip(reason="signals as on Linux")]


def test_plan_and_train_take_an_explicit_precision_from_the_cli(
    make_dataset, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from medseg.cli.main import app

    root = make_dataset(tmp_path / "ds", num_cases=3, shape=(16, 16), spacing=(1.0, 1.0))
    results = tmp_path / "results"
    done = CliRunner().invoke(
        app, ["plan", str(root), "-o", str(results), "--precision", "fp32", "--explain"]
    )
    assert done.exit_code == 0, done.output
    assert "precision: fp32" in done.output and "set by --precision" in done.output
    assert Plans.from_json(results / "plans.json")["2d"].precision == "fp32"
