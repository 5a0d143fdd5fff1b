"""``medseg survival``: train on a CSV, predict log-risks in the CSV's order (with the C-index
when outcomes are given), the demo, and every value checked at parse time."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, get_args, get_origin

import numpy as np
import pytest
import torch
import typer.main
from typer.testing import CliRunner

from medseg.cli.survival import SurvivalNet, app
from medseg.data.phantoms_survival import make_survival_phantoms
from medseg.errors import DatasetError, OverwriteError
from medseg.metrics.survival import concordance_index
from medseg.training.survival import SURVIVAL_NETWORKS


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


GE, LE = "greater than or equal to ", "less than or equal to "  # typer's words for min=, max=


def _invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path]:
    data = make_survival_phantoms(tmp_path / "data", n_train=60, n_test=20, size=16, seed=1)
    result = _invoke("train", data / "train.csv", "-o", tmp_path / "run", "--epochs", "2")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps long lines at its own width
    assert "best validation C-index" in text and "on 12 cases" in text
    return data, tmp_path / "run"


def test_train_then_predict_in_the_csv_order(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = trained
    assert (run / "checkpoint_best.pt").is_file() and (run / "log.csv").is_file()
    rows = _rows(data / "test.csv")[::-1]  # another order than the files'
    shuffled = tmp_path / "shuffled.csv"
    with open(shuffled, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", "path", "time", "event"])
        writer.writeheader()
        writer.writerows([{**r, "path": f"data/{r['path']}"} for r in rows])
    result = _invoke("predict", run, shuffled, "-o", tmp_path / "risks.csv")
    assert result.exit_code == 0, result.output
    risks = _rows(tmp_path / "risks.csv")
    assert [r["case"] for r in risks] == [r["case"] for r in rows]
    risk = np.array([float(r["log_risk"]) for r in risks])
    time, event = (np.array([float(r[k]) for r in rows]) for k in ("time", "event"))
    assert f"C-index {concordance_index(time, risk, event):.3f}" in " ".join(result.output.split())


def test_predict_without_outcomes_prints_no_c_index(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    data, run = trained
    table = tmp_path / "cases.csv"
    table.write_text("case\n" + "\n".join(r["case"] for r in _rows(data / "test.csv")[:3]))
    (tmp_path / "images").symlink_to(data / "images")
    result = _invoke("predict", run, table, "-o", tmp_path / "risks.csv")
    assert result.exit_code == 0, result.output
    assert "C-index" not in result.output
    assert len(_rows(tmp_path / "risks.csv")) == 3
    again = _invoke("predict", run, table, "-o", tmp_path / "risks.csv")
    assert isinstance(again.exception, OverwriteError)
    assert (
        _invoke("predict", run, table, "-o", tmp_path / "risks.csv", "--overwrite").exit_code == 0
    )


def test_a_bad_row_stops_training_with_one_line(tmp_path: Path) -> None:
    data = make_survival_phantoms(tmp_path / "data", n_train=8, n_test=2, size=16)
    lines = (data / "train.csv").read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 2)[0] + ",,1"  # an event without a time
    (data / "train.csv").write_text("\n".join(lines) + "\n")
    result = _invoke("train", data / "train.csv", "-o", tmp_path / "run")
    assert isinstance(result.exception, DatasetError)
    message = str(result.exception)
    assert "\n" not in message and "train.csv: line 5: an event without a time" in message
    assert not (tmp_path / "run").exists()


def test_demo_prints_the_c_index_and_the_ceiling(tmp_path: Path) -> None:
    result = _invoke(
        "demo", "-o", tmp_path / "demo", "--cases", "40", "--epochs", "1", "--time-budget", "20s"
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "C-index" in text and "true risk" in text
    assert (tmp_path / "demo" / "risks.csv").is_file()
    assert len(_rows(tmp_path / "demo" / "risks.csv")) == 20


@pytest.mark.parametrize(
    ("args", "option", "accepted"),
    [
        (["train", "FILE", "-o", "r", "--val-fraction", "0.95"], "--val-fraction", "(0, 0.9]"),
        (["train", "FILE", "-o", "r", "--val-fraction", "nan"], "--val-fraction", "(0, 0.9]"),
        (["train", "FILE", "-o", "r", "--epochs", "0"], "--epochs", GE + "1"),
        (["train", "FILE", "-o", "r", "--batch-size", "1"], "--batch-size", GE + "2"),
        (["train", "FILE", "-o", "r", "--net", "resnet18"], "--net", "cox_head"),
        (["train", "FILE", "-o", "r", "--time-budget", "soon"], "--time-budget", "20m"),
        (["train", "FILE", "-o", "r", "--lr", "0"], "--lr", "> 0"),
        (["train", "FILE", "-o", "r", "--seed", "-1"], "--seed", GE + "0"),
        (["train", "FILE", "-o", "FILE"], "--output", "existing file"),
        (["train", "missing.csv", "-o", "r"], "data", "does not exist"),
        (["predict", "missing", "FILE", "-o", "x.csv"], "run", "does not exist"),
        (["predict", "FILE", "FILE", "-o", "DIR"], "--output", "is a folder"),
        (["demo", "-o", "d", "--dims", "4"], "--dims", LE + "3"),
        (["demo", "-o", "d", "--cases", "5"], "--cases", GE + "20"),
    ],
)
def test_a_bad_value_is_a_usage_error(
    args: list[str], option: str, accepted: str, tmp_path: Path, usage_error
) -> None:
    (tmp_path / "a_file").write_text("x")
    places = {"FILE": str(tmp_path / "a_file"), "DIR": str(tmp_path)}
    result = _invoke(*[places.get(a, a) for a in args])
    message = usage_error(result.output)
    assert result.exit_code == 2, message
    assert f"Invalid value for '{option}'" in message and accepted in message


def test_every_option_is_checked_at_parse_time(type_descriptor) -> None:
    unchecked = []
    for name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            descriptor = type_descriptor(param)
            info, annotation = descriptor.parameter_info, descriptor.annotation
            if annotation in (bool, "bool") or get_origin(annotation) is Literal:
                continue
            checks = (info.parser, info.callback, info.min, info.max)
            if all(c is None for c in checks) and not getattr(info, "exists", False):
                unchecked.append(f"{name} {param.name}")
    assert unchecked == []


def test_the_net_choices_are_the_survival_networks() -> None:
    assert get_args(SurvivalNet) == SURVIVAL_NETWORKS
