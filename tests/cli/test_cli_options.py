"""Every CLI value is checked at parse time: a bad one is a usage error (exit code 2) whose one
line names the option and what it accepts, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Literal, get_args, get_origin, get_type_hints

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from medseg.cli import demo as demo_cli
from medseg.cli import options
from medseg.cli.main import app
from medseg.errors import ConfigError, MedsegError

PREDICT = ["predict", "-i", "in", "-o", "out", "-m", "results"]
EVALUATE = ["evaluate", "--pred", "p", "--ref", "r", "-o", "out"]
PHANTOMS = ["data", "phantoms", "out"]
PREVIEW = ["augment", "preview", "ds", "-o", "x.png"]
CLASSIFY = ["classify", "train", "data", "-o", "run"]
GE, LE = "greater than or equal to ", "less than or equal to "  # typer's words for min=, max=

# (arguments, the option the message names, a piece of the message); FILE and DIR stand for
# an existing file and an existing folder
REJECTED = [
    (["train", "results", "--steps-per-epoch", "0"], "--steps-per-epoch", GE + "1"),
    (["train", "results", "--epochs", "0"], "--epochs", GE + "1"),
    (["train", "results", "--ema-decay", "1"], "--ema-decay", LE + "0.9999"),
    (["train", "results", "--warmup-steps", "-1"], "--warmup-steps", GE + "0"),
    (["train", "results", "--fold", "abc"], "--fold", ">= 0 or 'all'"),
    (["train", "results", "--fold", "-1"], "--fold", ">= 0 or 'all'"),
    (["train", "results", "--device", "tpu9"], "--device", "auto, cpu, cuda or cuda:N"),
    (["train", "results", "--time-budget", "nan"], "--time-budget", "> 0"),
    (["train", "results", "--time-budget", "-5m"], "--time-budget", "> 0"),
    (["train", "results", "--time-budget", "soon"], "--time-budget", "20m"),
    (["train", "results", "--config", "4d"], "--config", "3d_fullres"),
    (["train", "results", "--config", "2d-Attn"], "--config", "<configuration>-<variant>"),
    (["train", "results", "--config", "4d-attn"], "--config", "<configuration>-<variant>"),
    (["prepare-cascade", "results", "--config", "3d"], "--config", "3d_cascade_fullres"),
    (["train", "results", "--workers", "-1"], "--workers", GE + "0"),
    (["train", "results", "--precision", "fp16"], "--precision", "bf16"),
    (["plan", "ds", "-o", "out", "--precision", "half"], "--precision", "fp32"),
    (["plan", "ds", "-o", "FILE"], "--output", "is an existing file"),
    (["plan", "ds", "-o", "out", "--memory-gb", "-1"], "--memory-gb", "> 0"),
    (["plan", "ds", "-o", "out", "--memory-gb", "inf"], "--memory-gb", "> 0"),
    (["plan", "ds", "-o", "out", "--device", "cuda:0"], "--device", "cpu"),
    (["plan", "ds", "-o", "out", "--time-budget", "0s"], "--time-budget", "> 0"),
    (["plan", "ds", "-o", "out", "--jobs", "0"], "--jobs", GE + "1"),
    (["preprocess", "results", "--config", "2d,4d"], "--config", "4d"),
    (["preprocess", "results", "--config", ","], "--config", "comma-separated"),
    (["prepare-cascade", "results", "--checkpoint", "newest"], "--checkpoint", "latest"),
    (["prepare-cascade", "results", "--device", "gpu"], "--device", "cuda:N"),
    ([*PREDICT, "--overlap", "1.0"], "--overlap", "[0, 1)"),
    ([*PREDICT, "--overlap", "-0.1"], "--overlap", "[0, 1)"),
    ([*PREDICT, "--overlap", "nan"], "--overlap", "[0, 1)"),
    ([*PREDICT, "--overlap", "half"], "--overlap", "not a number"),
    (["predict", "-i", "in", "-o", "FILE", "-m", "results"], "--output", "is an existing file"),
    ([*PREDICT, "--folds", "0,x"], "--folds", ">= 0 or 'all'"),
    ([*PREDICT, "--config", "3d"], "--config", "3d"),
    ([*PREDICT, "--config", "2d,2d-"], "--config", "2d-"),
    ([*PREDICT, "--device", "cuda:x"], "--device", "cuda:N"),
    ([*PREDICT, "--checkpoint", "final"], "--checkpoint", "latest"),
    ([*EVALUATE, "--tolerance", "nan"], "--tolerance", ">= 0"),
    ([*EVALUATE, "--tolerance", "-1"], "--tolerance", ">= 0"),
    ([*EVALUATE, "--hd95-mode", "mean"], "--hd95-mode", "pooled"),
    ([*EVALUATE, "--surface", "mesh"], "--surface", "surfel"),
    ([*EVALUATE, "--jobs", "0"], "--jobs", GE + "1"),
    ([*EVALUATE, "--ignore-label", "-1"], "--ignore-label", GE + "0"),
    (["evaluate", "--pred", "p", "--ref", "r", "-o", "FILE"], "--out", "is an existing file"),
    (["report", "results", "-o", "DIR"], "--out", "is a folder"),
    (["demo", "--epochs", "0"], "--epochs", GE + "1"),
    (["demo", "--steps-per-epoch", "0"], "--steps-per-epoch", GE + "1"),
    (["demo", "--time-budget", "nan"], "--time-budget", "> 0"),
    (["demo", "--config", "4d"], "--config", "3d_fullres"),
    (["demo", "--device", "tpu9"], "--device", "cuda:N"),
    (["demo", "-o", "FILE"], "--out", "is an existing file"),
    (["data", "check", "ds", "-j", "0"], "--jobs", GE + "1"),
    (["data", "fingerprint", "ds", "-o", "DIR"], "--output", "is a folder"),
    (["data", "phantoms", "FILE"], "out", "is an existing file"),
    ([*PHANTOMS, "--dims", "4"], "--dims", LE + "3"),
    ([*PHANTOMS, "--cases", "0"], "--cases", GE + "1"),
    ([*PHANTOMS, "--seed", "-1"], "--seed", GE + "0"),
    ([*PHANTOMS, "--noise", "pink"], "--noise", "gaussian"),
    ([*PHANTOMS, "--noise-std", "nan"], "--noise-std", ">= 0"),
    ([*PHANTOMS, "--bias", "inf"], "--bias", ">= 0"),
    ([*PHANTOMS, "--anisotropy", "0"], "--anisotropy", "> 0"),
    ([*PHANTOMS, "--p-absent", "1.5"], "--p-absent", "[0, 1]"),
    ([*PHANTOMS, "--supersample", "0"], "--supersample", GE + "1"),
    (["augment", "preview", "ds", "-o", "DIR"], "--out", "is a folder"),
    ([*PREVIEW, "--p", "2"], "--p", "[0, 1]"),
    ([*PREVIEW, "--preset", "heavy"], "--preset", "light"),
    ([*PREVIEW, "--cases", "0"], "--cases", GE + "1"),
    (["nets", "list", "--in-channels", "0"], "--in-channels", GE + "1"),
    (["nets", "list", "--task", "detection"], "--task", "classification"),
    ([*CLASSIFY, "--lr", "nan"], "--lr", "> 0"),
    ([*CLASSIFY, "--lr", "0"], "--lr", "> 0"),
    ([*CLASSIFY, "--backbone-lr-factor", "-1"], "--backbone-lr-factor", "> 0"),
    ([*CLASSIFY, "--epochs", "0"], "--epochs", GE + "1"),
    ([*CLASSIFY, "--folds", "0"], "--folds", GE + "1"),
    ([*CLASSIFY, "--batch-size", "0"], "--batch-size", GE + "1"),
    ([*CLASSIFY, "--time-budget", "10x"], "--time-budget", "20m"),
    ([*CLASSIFY, "--net-options", "[1]"], "--net-options", "JSON object"),
    ([*CLASSIFY, "--net-options", "{bad"], "--net-options", "JSON object"),
    ([*CLASSIFY, "--task", "segmentation"], "--task", "regression"),
    ([*CLASSIFY, "--freeze", "all"], "--freeze", "backbone"),
    ([*CLASSIFY, "--augmentation", "heavy"], "--augmentation", "nnunet_default"),
    ([*CLASSIFY, "--balance", "oversample"], "--balance", "sampler"),
    ([*CLASSIFY, "--loss", "dice"], "--loss", "margin"),
    ([*CLASSIFY, "--device", "tpu"], "--device", "cuda:N"),
    ([*CLASSIFY, "--seed", "-1"], "--seed", GE + "0"),
    ([*CLASSIFY, "--pretrained", "missing.pt"], "--pretrained", "does not exist"),
    (["classify", "train", "data", "-o", "FILE"], "--output", "is an existing file"),
    (["classify", "predict", "run", "data", "-o", "DIR"], "--output", "is a folder"),
    (["classify", "predict", "run", "data", "-o", "p.csv", "--split", "holdout"], "--split", "val"),
    (["classify", "evaluate", "p.csv", "-o", "FILE"], "--output", "is an existing file"),
    (["classify", "explain", "run", "data", "--count", "0"], "--count", GE + "1"),
    (["classify", "explain", "run", "data", "--method", "lime"], "--method", "saliency"),
    (["classify", "phantoms", "out", "--dims", "1"], "--dims", GE + "2"),
    (["classify", "phantoms", "out", "--size", "8"], "--size", GE + "16"),
    (["classify", "phantoms", "out", "--kind", "blob"], "--kind", "lesion"),
    (["classify", "phantoms", "out", "--n-per-class", "0"], "--n-per-class", GE + "1"),
    (["classify", "demo", "--dims", "4"], "--dims", LE + "3"),
    (["classify", "demo", "--epochs", "0"], "--epochs", GE + "1"),
]


def _invoke(args: list[str], tmp_path: Path):
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    (tmp_path / "a_folder").mkdir(exist_ok=True)
    places = {"FILE": str(tmp_path / "a_file"), "DIR": str(tmp_path / "a_folder")}
    return CliRunner().invoke(app, [places.get(arg, arg) for arg in args], env={"COLUMNS": "200"})


def _readable(args: list[str]) -> str:
    return " ".join(args[:2] + args[-2:]) if len(args) > 4 else " ".join(args)


@pytest.mark.parametrize(
    ("args", "option", "accepted"), REJECTED, ids=[_readable(args) for args, _, _ in REJECTED]
)
def test_a_bad_value_is_a_usage_error_naming_the_option_and_the_range(
    args: list[str], option: str, accepted: str, tmp_path: Path, usage_error
) -> None:
    result = _invoke(args, tmp_path)
    message = usage_error(result.output)
    assert result.exit_code == 2, message
    assert f"Invalid value for '{option}'" in message
    assert accepted in message
    assert "Traceback" not in result.output


@pytest.mark.slow  # a fresh interpreter imports torch: ~3 s
def test_the_console_script_prints_no_traceback_for_a_bad_value(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", "train", str(tmp_path), "--steps-per-epoch", "0"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        env=env,
    )
    assert result.returncode == 2
    assert "Invalid value for '--steps-per-epoch'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_accepted_value_reaches_the_command(tmp_path: Path) -> None:
    # --overlap 0 and --folds all pass parsing; the missing input folder is the command's error
    result = _invoke(
        [*PREDICT[:2], str(tmp_path / "missing"), *PREDICT[3:], "--overlap", "0", "--folds", "all"],
        tmp_path,
    )
    assert result.exit_code != 2
    assert isinstance(result.exception, MedsegError)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("20m", 1200.0), ("1.5h", 5400.0), ("45", 45.0), (" 2M ", 120.0)],
)
def test_durations_read_as_seconds(text: str, seconds: float) -> None:
    assert options.parse_duration(text) == seconds
    assert options.duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "0", "-1s", "nan", "infh", "1d"])
def test_parse_duration_rejects_what_is_not_a_positive_finite_duration(text: str) -> None:
    with pytest.raises(ConfigError, match="duration must be > 0"):
        options.parse_duration(text)


def test_accepted_values_come_back_normalised() -> None:
    assert options.fold("03") == "3" and options.fold("ALL") == "all"
    assert options.folds("0, 2") == "0,2" and options.folds(None) is None
    assert options.device("CUDA:1") == "cuda:1" and options.device("auto") == "auto"
    assert options.configurations("2d, 3d_lowres") == "2d,3d_lowres"
    assert options.configurations("2d,2d-attn_v2") == "2d,2d-attn_v2"
    assert options.plan_name(" 3d_fullres-dice ") == "3d_fullres-dice"
    assert options.overlap("0") == 0.0 and options.probability("1") == 1.0
    assert options.json_object('{"dropout": 0.2}') == {"dropout": 0.2}


def test_an_output_folder_may_be_new_or_an_existing_folder(tmp_path: Path) -> None:
    assert options.output_folder(tmp_path) == tmp_path
    assert options.output_folder(tmp_path / "new") == tmp_path / "new"
    with pytest.raises(typer.BadParameter, match="existing file"):
        options.output_folder(Path(__file__))


def test_cli_choices_match_the_library() -> None:
    from medseg.data.classification import SPLITS
    from medseg.pipeline.demo import DEMO_EPOCHS, DEMO_STEPS_PER_EPOCH
    from medseg.planning.plan import CONFIGURATIONS

    assert get_args(options.Configuration) == CONFIGURATIONS
    from medseg.planning.plan import VARIANT_NAME

    assert options.VARIANT_NAME.pattern == VARIANT_NAME.pattern
    from medseg.cli.pipeline import plan_command
    from medseg.planning.choices import OPTIMIZER_NAMES
    from medseg.planning.plan import SAMPLING_MODES
    from medseg.planning.recipe import AUGMENTATION_PRESETS
    from medseg.training.schedule import OPTIMIZERS

    hints = get_type_hints(plan_command)
    assert get_args(get_args(hints["sampling"])[0]) == SAMPLING_MODES
    assert get_args(get_args(hints["augment"])[0]) == AUGMENTATION_PRESETS
    assert set(get_args(get_args(hints["optimizer"])[0])) == set(OPTIMIZER_NAMES)
    assert tuple(OPTIMIZERS.names()) == OPTIMIZER_NAMES
    assert get_args(options.Split) == SPLITS
    assert (demo_cli.DEMO_EPOCHS, demo_cli.DEMO_STEPS_PER_EPOCH) == (
        DEMO_EPOCHS,
        DEMO_STEPS_PER_EPOCH,
    )


# values only the command can judge (an input must exist, a network must be registered, a
# layer must be in the model): each fails there with one line naming it (exit code 1)
CHECKED_BY_THE_COMMAND = {
    "plan": {"dataset", "network", "loss", "settings", "variant", "n4", "histogram_matching"},
    "preprocess": {"results"},
    "train": {"results", "pretrained", "weight_map"},
    "prepare-cascade": {"results"},
    "crossval": {"results"},
    "predict": {"input_dir", "results", "series_uid"},
    "evaluate": {"pred", "ref", "labels", "lesion_labels"},
    "measure": {"pred", "images", "labels"},
    "robustness": {"results", "images", "ref", "perturb"},
    "explain": {"label", "layer"},
    "report": {"results", "title"},
    "demo": {"data"},
    "data check": {"dataset"},
    "register train": {"atlas"},
    "enhance train": {"data"},
    "fed split": {"dataset", "shift"},
    "fed run": {"sites"},
    "fed compare": {"sites"},
    "enhance apply": {"image", "model"},
    "data sparsify": {"dataset"},
    "data fingerprint": {"dataset"},
    "augment preview": {"dataset"},
    "classify train": {"data", "net"},
    "classify predict": {"run", "data"},
    "classify evaluate": {"predictions"},
    "classify explain": {"run", "data", "layer"},
    "classify report": {"run"},
    "classify demo": {"net"},
    "classic run": {"method", "input_path", "output_path", "init", "atlases"},
    "classic benchmark": {"dataset"},
    "prompt finetune": {"dataset", "weights", "encoder", "configuration"},
    "prompt predict": {"image", "model"},
    "prompt auto": {"image", "model"},
    "prompt evaluate": {"model", "dataset"},
}


def _commands(command, path: tuple[str, ...] = ()):
    children = getattr(command, "commands", None)
    if not children:
        yield " ".join(path), command
    for name, child in (children or {}).items():
        yield from _commands(child, (*path, name))


def _unchecked(param, type_descriptor) -> bool:
    descriptor = type_descriptor(param)
    info, annotation = descriptor.parameter_info, descriptor.annotation
    if annotation in (bool, "bool") or get_origin(annotation) is Literal:
        return False
    return (
        info.parser is None
        and info.callback is None
        and info.min is None
        and info.max is None
        and not getattr(info, "exists", False)
    )


def test_every_value_is_checked_at_parse_time_or_by_its_command(type_descriptor) -> None:
    unchecked = {
        name: {p.name for p in command.params if _unchecked(p, type_descriptor)}
        for name, command in _commands(typer.main.get_command(app))
    }
    assert {k: v for k, v in unchecked.items() if v} == CHECKED_BY_THE_COMMAND


@pytest.mark.parametrize("path", [name for name, _ in _commands(typer.main.get_command(app))])
def test_every_command_has_help(path: str) -> None:
    result = CliRunner().invoke(app, [*path.split(), "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
