"""``medseg fed`` (mounted by ``register``): split from the shell; bad values are usage errors."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from medseg.cli.fed import app, register
from medseg.data.phantoms import generate_dataset


def _main() -> typer.Typer:
    main = typer.Typer()
    main.command("noop")(lambda: None)
    register(main)
    return main


def test_split_from_the_shell(tmp_path):
    data = generate_dataset(tmp_path / "ds", spatial_dims=2, num_cases=6)
    shift = tmp_path / "shift.json"
    shift.write_text(json.dumps({"sites": [{"noise": 0.2}]}))
    args = ["fed", "split", str(data), "-o", str(tmp_path / "s"), "--shift", str(shift)]
    result = CliRunner().invoke(_main(), [*args, "--sites", "3", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.count("cases") == 3
    again = CliRunner().invoke(_main(), [*args, "--sites", "3"])
    assert again.exit_code == 1  # no overwrite without --overwrite


def test_bad_values_are_usage_errors(tmp_path):
    runner = CliRunner()
    for args, option in [
        (["run", str(tmp_path), "-o", "r", "--strategy", "fedsgd"], "--strategy"),
        (["run", str(tmp_path), "-o", "r", "--mu", "-1"], "--mu"),
        (["run", str(tmp_path), "-o", "r", "--rounds", "0"], "--rounds"),
        (["split", str(tmp_path), "-o", "s", "--sites", "1"], "--sites"),
        (["split", str(tmp_path), "-o", "s", "--by", "hospital"], "--by"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and option in result.output, (args, result.output)
