"""Budgets: the memory model against measured peak memory, and time budgets from step times."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import medseg.planning.calibrate as calibrate
from medseg.data import Fingerprint
from medseg.planning import estimate_training_bytes, plan_configuration, plan_dataset
from medseg.planning.calibrate import fit_to_time_budget, measure_step_seconds

PROBE = Path(__file__).with_name("memory_probe.py")


def _fingerprint(shape: tuple[int, ...]) -> Fingerprint:
    cases = {
        f"c{i}": {"shape": list(shape), "spacing": [1.0] * len(shape), "class_voxels": {}}
        for i in range(20)
    }
    return Fingerprint(
        "t",
        len(shape),
        {"0": "MRI"},
        {"background": 0, "a": 1, "b": 2},
        cases,
        [1.0] * len(shape),
        [float(s) for s in shape],
        {},
        {"0": {"mean": 0.0, "std": 1.0, "percentile_00_5": -1.0, "percentile_99_5": 1.0}},
        {},
        1.0,
    )


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak memory"
)
@pytest.mark.parametrize(
    ("configuration", "memory_gb"), [("3d_fullres", 0.25), ("3d_fullres", 0.5), ("2d", 0.5)]
)
def test_planned_step_fits_its_memory_budget_when_measured(
    configuration: str, memory_gb: float
) -> None:
    plan = plan_configuration(_fingerprint((96, 96, 96)), configuration, memory_gb=memory_gb)
    estimate = estimate_training_bytes(
        plan.patch_size,
        plan.batch_size,
        tuple(plan.network_config["features"]),
        tuple(map(tuple, plan.network_config["strides"])),
        plan.in_channels,
        plan.num_classes,
    )
    result = subprocess.run(
        [sys.executable, str(PROBE), json.dumps(plan.to_dict())],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    measured_mb = json.loads(result.stdout)["step_mb"]
    assert measured_mb <= memory_gb * 1024  # the plan keeps its promise
    assert measured_mb >= 0.3 * estimate / 2**20  # and the model is not wildly pessimistic


def test_measured_step_time_is_positive_for_a_tiny_plan() -> None:
    plan = plan_configuration(_fingerprint((16, 16)), "2d", memory_gb=0.1)
    small = replace(
        plan,
        batch_size=2,
        network_config={
            **plan.network_config,
            "features": [4] * len(plan.network_config["strides"]),
        },
    )
    assert measure_step_seconds(small, steps=1) > 0


def _fake_probe(monkeypatch: pytest.MonkeyPatch, seconds_of) -> None:
    """Step times from ``seconds_of(plan)`` instead of a child process measuring them."""

    def probe(plan, **kw):
        return {p: calibrate.ProbeResult(seconds_of(plan)) for p in ("fp32", "bf16")}

    monkeypatch.setattr(calibrate, "probe_step_seconds", probe)


def test_time_budget_sets_epochs_and_recommends_by_affordable_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plans = plan_dataset(_fingerprint((64, 64, 64)), "x", memory_gb=0.5)
    seconds = {3: 1.0, 2: 0.1}
    _fake_probe(monkeypatch, lambda plan: seconds[plan.spatial_dims])
    short = fit_to_time_budget(plans, 1000.0)
    assert short.recommended == "2d"  # 3D affords 850 steps < 2000
    assert (
        short["2d"].num_epochs
        == int(1000 * calibrate.OVERHEAD / 0.1) // short["2d"].steps_per_epoch
    )
    assert "measured 0.100 s per step" in short["2d"].reasons["time_budget"]
    long = fit_to_time_budget(plans, 10_000.0)
    assert long.recommended == "3d_fullres"


def test_a_tight_budget_narrows_the_2d_network(monkeypatch: pytest.MonkeyPatch) -> None:
    plans = plan_dataset(_fingerprint((64, 64)), "x", memory_gb=0.5)
    _fake_probe(monkeypatch, lambda plan: plan.network_config["features"][0] / 16)
    tight = fit_to_time_budget(plans, 300.0)  # 16 features: 1 s per step -> 255 steps < 600
    assert tight["2d"].network_config["features"][0] < plans["2d"].network_config["features"][0]
    assert "halved" in tight["2d"].reasons["time_budget"]
