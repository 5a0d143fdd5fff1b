"""``medseg evaluate`` through the console script: outputs, table, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg.io import Image, write_image

MEDSEG = Path(sys.executable).parent / "medseg"


def _write_pair(root: Path, case: str, pred_shape=(4, 10, 10)) -> None:
    ref = np.zeros((4, 10, 10), np.uint8)
    ref[1:3, 2:7, 2:7] = 1
    pred = np.zeros(pred_shape, np.uint8)
    pred[1:3, 3:8, 2:7] = 1
    write_image(Image(ref, (5.0, 0.7, 0.7)), root / "ref" / f"{case}.nii.gz")
    write_image(Image(pred, (5.0, 0.7, 0.7)), root / "pred" / f"{case}.nii.gz")


def _evaluate(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if not MEDSEG.exists():
        pytest.skip("the medseg console script is not installed in this environment")
    args = [str(MEDSEG), "evaluate", "--pred", str(root / "pred"), "--ref", str(root / "ref")]
    return subprocess.run(
        [*args, "-o", str(root / "out"), "--jobs", "1", *extra],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )


def test_cli_writes_both_outputs_and_prints_a_table(tmp_path) -> None:
    _write_pair(tmp_path, "case_a")
    done = _evaluate(tmp_path, "--tolerance", "1", "--hd95-mode", "pooled", "--labels", "1")
    assert done.returncode == 0, done.stderr
    assert "dice" in done.stdout and "hd95" in done.stdout and "0.800" in done.stdout
    rows = (tmp_path / "out" / "per_case.csv").read_text(encoding="utf-8").splitlines()
    assert rows[1].startswith("case_a,1,40,10,10,")
    assert '"hd95_mode": "pooled"' in (tmp_path / "out" / "summary.json").read_text(
        encoding="utf-8"
    )


def test_cli_refuses_to_overwrite_with_exit_code_1_and_one_line(tmp_path) -> None:
    _write_pair(tmp_path, "case_a")
    assert _evaluate(tmp_path).returncode == 0
    again = _evaluate(tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'out' / 'per_case.csv'}: already exists; "
        "pass --overwrite to replace it"
    ]
    assert _evaluate(tmp_path, "--overwrite").returncode == 0


def test_cli_shape_mismatch_exits_1_with_one_line_naming_the_case(tmp_path) -> None:
    _write_pair(tmp_path, "case_a")
    _write_pair(tmp_path, "case_b", pred_shape=(4, 10, 9))
    done = _evaluate(tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1
    assert "case 'case_b'" in lines[0] and "shape" in lines[0] and "Traceback" not in done.stderr


def test_cli_bad_hd95_mode_is_a_usage_error_naming_the_valid_modes(tmp_path) -> None:
    _write_pair(tmp_path, "case_a")
    done = _evaluate(tmp_path, "--hd95-mode", "mean")  # a choice option: click exits 2
    assert done.returncode == 2 and "max_directed" in done.stderr and "Traceback" not in done.stderr


def test_cli_unreadable_labels_option_exits_1(tmp_path) -> None:
    _write_pair(tmp_path, "case_a")
    done = _evaluate(tmp_path, "--labels", "1,x")
    assert done.returncode == 1 and "--labels" in done.stderr
