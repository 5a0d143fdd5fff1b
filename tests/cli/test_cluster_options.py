"""``--executor``/``--address`` on the per-case commands: checked at parse time, and a missing
Ray named with its extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli.main import app

COMMANDS = [
    ["data", "check", "ds"],
    ["data", "fingerprint", "ds", "-o", "fp.json"],
    ["preprocess", "results"],
    ["predict", "-i", "in", "-o", "out", "-m", "results"],
    ["evaluate", "--pred", "p", "--ref", "r", "-o", "out"],
    ["measure", "p", "-o", "m.csv"],
]


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    return result, " ".join(result.output.replace("│", " ").split())


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_bad_executor_and_address_are_usage_errors(command: list[str]) -> None:
    result, text = _invoke([*command, "--executor", "dask"])  # parse errors come first
    assert result.exit_code == 2 and "Invalid value for '--executor'" in text and "ray" in text
    result, text = _invoke([*command, "--executor", "ray", "--address", "http://x"])
    assert result.exit_code == 2 and "Invalid value for '--address'" in text
    assert "ray://HOST:PORT" in text


def test_address_needs_the_ray_executor(tiny_dataset: Path) -> None:
    result, text = _invoke(["data", "check", str(tiny_dataset), "--address", "auto"])
    assert result.exit_code == 2 and "--address needs --executor ray" in text


def test_missing_ray_names_the_extra(tiny_dataset: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    result, text = _invoke(["data", "check", str(tiny_dataset), "--executor", "ray"])
    assert result.exit_code == 1
    assert "pip install 'medseg[cluster]'" in str(result.exception)
