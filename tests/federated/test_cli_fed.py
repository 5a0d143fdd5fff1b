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
        (["run", str(tmp_path), "-o", "r", "--superlink", "localhost"], "--superlink"),
        (["run", str(tmp_path), "-o", "r", "--superlink", "127.0.0.1:70000"], "--superlink"),
        (["run", str(tmp_path), "-o", "r", "--root-certificates", "no.pem"], "--root-certificates"),
        (["run", str(tmp_path), "-o", "r", "--dp-clip", "-1"], "--dp-clip"),
        (["run", str(tmp_path), "-o", "r", "--dp-noise", "nan"], "--dp-noise"),
        (["run", str(tmp_path), "-o", "r", "--dp-delta", "1"], "--dp-delta"),
        (["run", str(tmp_path), "-o", "r", "--dp-delta", "tiny"], "--dp-delta"),
        (["run", str(tmp_path), "-o", "r", "--timeout", "0"], "--timeout"),
        (["split", str(tmp_path), "-o", "s", "--sites", "1"], "--sites"),
        (["split", str(tmp_path), "-o", "s", "--by", "hospital"], "--by"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and option in result.output, (args, result.output)


def test_a_network_superlink_without_certificates_is_one_line(tmp_path):
    result = CliRunner().invoke(
        _main(),
        ["fed", "run", str(tmp_path), "-o", str(tmp_path / "r"), "--superlink", "10.0.0.5:9093"],
    )
    assert result.exit_code != 0
    assert "10.0.0.5:9093: not a loopback address" in str(result.exception or result.output)
    assert not (tmp_path / "r").exists()
