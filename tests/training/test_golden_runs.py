"""Behaviour must not move: the golden runs recorded before the training engine was refactored
give the same per-epoch losses and validation scores (to 1e-6) and the same predictions now.

See ``golden_runs.py`` for what each run is and how the record was made.
"""

from __future__ import annotations

import importlib.util
import json
import math
import platform
from pathlib import Path
from typing import Any

import pytest

_spec = importlib.util.spec_from_file_location(
    "golden_runs", Path(__file__).with_name("golden_runs.py")
)
golden_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_runs)
GOLDEN_FILE, RUNS, run_reproducibly = (
    golden_runs.GOLDEN_FILE,
    golden_runs.RUNS,
    golden_runs.run_reproducibly,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        platform.machine().lower() not in ("x86_64", "amd64"),
        reason="the record pins x86 kernels (oneDNN SSE4.1, MKL reproducibility mode)",
    ),
]
TOLERANCE = 1e-6


def _differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    if isinstance(expected, dict):
        if set(expected) != set(actual):
            return [f"{path}: keys {sorted(expected)} != {sorted(actual)}"]
        return [d for k in expected for d in _differences(expected[k], actual[k], f"{path}/{k}")]
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} values != {len(actual)}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in _differences(e, a, f"{path}[{i}]")
        ]
    if isinstance(expected, float) and isinstance(actual, (int, float)):
        same = math.isclose(expected, actual, rel_tol=TOLERANCE, abs_tol=TOLERANCE) or (
            math.isnan(expected) and math.isnan(actual)
        )
        return [] if same else [f"{path}: {expected!r} != {actual!r}"]
    return [] if expected == actual else [f"{path}: {expected!r} != {actual!r}"]


@pytest.mark.parametrize("run", RUNS)
def test_golden_run_is_unchanged(run: str, tmp_path: Path) -> None:
    golden = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))["runs"][run]
    actual = run_reproducibly(tmp_path, (run,))[run]
    assert _differences(golden, actual) == []


def test_difference_finder_catches_a_moved_loss() -> None:
    golden = {"log": {"train_loss": [1.0, 0.5]}, "predictions": {"a": {"sha256": "x"}}}
    assert _differences(golden, golden) == []
    assert _differences(
        golden, {"log": {"train_loss": [1.0, 0.5 + 2e-6]}, "predictions": {"a": {"sha256": "x"}}}
    )
    assert _differences(
        golden, {"log": {"train_loss": [1.0, 0.5]}, "predictions": {"a": {"sha256": "y"}}}
    )
