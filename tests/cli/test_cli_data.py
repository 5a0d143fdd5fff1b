"""The console script: help, version, one-line errors, data check / fingerprint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medseg import __version__


def _medseg(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        env=env,
    )


def test_help_lists_command_groups() -> None:
    result = _medseg("--help")
    assert result.returncode == 0
    assert "data" in result.stdout


def test_version_prints_the_package_version() -> None:
    result = _medseg("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_user_error_is_one_line_on_stderr_with_exit_code_1(tmp_path: Path) -> None:
    result = _medseg("data", "check", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing'}: dataset folder does not exist"
    ]
    assert "Traceback" not in result.stderr


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    result = _medseg("--verbose", "data", "check", str(tmp_path / "missing"))
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_data_check_exit_codes(make_dataset, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", num_cases=2)
    clean = _medseg("data", "check", str(root), "--jobs", "1")
    assert clean.returncode == 0 and "OK" in clean.stdout
    (root / "labelsTr" / "case_001.nii.gz").write_bytes(b"broken")
    broken = _medseg("data", "check", str(root), "--jobs", "1")
    assert broken.returncode == 1
    assert "case_001.nii.gz: cannot read" in broken.stdout
    assert "1 problem(s)" in broken.stderr


def test_data_fingerprint_writes_json_and_refuses_overwrite(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fp.json"
    first = _medseg("data", "fingerprint", str(tiny_dataset), "-o", str(out), "--jobs", "1")
    assert first.returncode == 0, first.stderr
    assert json.loads(out.read_text(encoding="utf-8"))["median_shape"] == [6.0, 8.0, 10.0]
    second = _medseg("data", "fingerprint", str(tiny_dataset), "-o", str(out))
    assert second.returncode == 1 and "--overwrite" in second.stderr


@pytest.mark.parametrize("args", [["data", "fingerprint"], ["data", "check", "--bogus"]])
def test_usage_errors_exit_nonzero(args: list[str]) -> None:
    assert _medseg(*args).returncode != 0
