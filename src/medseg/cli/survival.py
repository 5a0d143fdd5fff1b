"""``medseg survival ...``: train a deep Cox model on images, predict log-risks, run a demo.

DATA is a CSV ``case,time,event`` (optionally ``path``; without it the image is
``images/<case>.png`` next to the CSV): see ``medseg.data.survival_table`` and
``docs/survival.md``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
import typer
from rich.console import Console

from medseg.cli.options import (
    device_option,
    duration,
    number_option,
    output_file,
    output_folder,
    time_budget_option,
)

console = Console()
app = typer.Typer(
    no_args_is_help=True,
    help="Survival analysis from images: deep Cox models (train, predict, demo).",
)

#: The networks ``--net`` offers (``medseg.training.survival.SURVIVAL_NETWORKS``).
SurvivalNet = Literal["cox_head"]
DEMO_TIME_BUDGET = "30s"


def val_fraction(text: str) -> float:
    """``parser=`` for ``--val-fraction``: a share in ``(0, 0.9]``."""
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number") from None
    if not 0 < value <= 0.9:  # False for NaN
        raise typer.BadParameter(f"must be in (0, 0.9], got {text}")
    return value


@app.command("train")
def train_command(
    data: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="Survival CSV: case,time,event[,path]."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", callback=output_folder, help="Run folder (created)."
    ),
    net: SurvivalNet = typer.Option("cox_head", "--net", help="Network with a log-risk output."),
    epochs: int = typer.Option(30, "--epochs", min=1, help="Most epochs (with --time-budget too)."),
    time_budget: float = time_budget_option("Training time, e.g. 5m."),
    val_frac: float = typer.Option(
        0.2,
        "--val-fraction",
        parser=val_fraction,
        metavar="SHARE",
        help="Cases held out (stratified by event) for the C-index that picks the best epoch.",
    ),
    batch_size: int = typer.Option(
        32, "--batch-size", min=2, help="Cases per step (>= 16 advised: a Cox batch needs events)."
    ),
    lr: float = number_option(1e-3, "--lr", help="Learning rate (AdamW, cosine decay)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from checkpoint_latest.pt."),
    device_name: str = device_option(),
    seed: int = typer.Option(0, "--seed", min=0, help="Weights, batches and the validation split."),
) -> None:
    """Train a Cox model on DATA; the best epoch has the highest validation C-index."""
    summary = train_from_csv(
        data,
        output,
        net=net,
        epochs=epochs,
        time_budget_s=time_budget,
        val_fraction=val_frac,
        batch_size=batch_size,
        learning_rate=lr,
        resume=resume,
        device=device_name,
        seed=seed,
    )
    console.print(
        f"{summary['epochs']} epoch(s), {summary['steps']} steps in {summary['seconds']:.0f} s "
        f"(stopped by {summary['stopped_by']}); best validation C-index "
        f"{summary['best_c_index']:.3f} on {summary['val_cases']} cases; run: {output}"
    )


@app.command("predict")
def predict_command(
    run: Path = typer.Argument(..., exists=True, help="Run folder (or one checkpoint)."),
    data: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CSV case[,path][,time,event]."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", callback=output_file, help="CSV to write: case,log_risk."
    ),
    device_name: str = device_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing CSV."),
) -> None:
    """Log-risks (higher: earlier event) of DATA's images, in its row order; with times and
    events in DATA also Harrell's C-index."""
    c_index = predict_to_csv(run, data, output, device=device_name, overwrite=overwrite)
    console.print(f"wrote {output}")
    if c_index is not None:
        console.print(f"C-index {c_index:.3f}")


@app.command("demo")
def demo_command(
    output: Path = typer.Option(
        ..., "--output", "-o", callback=output_folder, help="Folder for data/ and run/."
    ),
    dims: int = typer.Option(2, "--dims", min=2, max=3, help="2D or 3D phantoms."),
    cases: int = typer.Option(200, "--cases", min=20, help="Training cases (test: half)."),
    time_budget: float = typer.Option(
        DEMO_TIME_BUDGET,
        "--time-budget",
        parser=duration,
        metavar="DURATION",
        help="Training time, e.g. 30s or 2m.",
    ),
    epochs: int = typer.Option(15, "--epochs", min=1, help="Most epochs."),
    seed: int = typer.Option(0, "--seed", min=0),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier demo."),
) -> None:
    """Phantoms whose lesion size sets the hazard; train briefly; compare the held-out C-index
    with the true risk's (the ceiling)."""
    result = run_demo(
        output,
        dims=dims,
        cases=cases,
        time_budget_s=time_budget,
        epochs=epochs,
        seed=seed,
        overwrite=overwrite,
    )
    console.print(
        f"held-out phantoms ({result['test_cases']} cases, {result['test_events']} events): "
        f"C-index {result['c_index']:.3f}, true risk {result['true_c_index']:.3f} (ceiling); "
        f"trained {result['epochs']} epoch(s) in {result['seconds']:.0f} s"
    )


def train_from_csv(
    data: Path,
    output: Path,
    *,
    net: str = "cox_head",
    epochs: int = 30,
    time_budget_s: float | None = None,
    val_fraction: float = 0.2,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    resume: bool = False,
    device: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Read DATA, hold out ``val_fraction`` (stratified by event), train; a summary dict."""
    from medseg.data.survival_table import read_survival_csv, validation_split
    from medseg.training.survival import config_for, fit_survival

    table = read_survival_csv(data)
    assert table.time is not None and table.event is not None  # outcome="required"
    train_rows, val_rows = validation_split(table.event, val_fraction, seed)
    train, val = table.subset(train_rows), table.subset(val_rows)
    config = config_for(
        train.images,
        network=net,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
    )
    result = fit_survival(
        train.images,
        train.time,
        train.event,
        output,
        config,
        val=(val.images, val.time, val.event),
        time_budget_s=time_budget_s,
        resume=resume,
        device=device,
        progress=progress,
    )
    return {
        "epochs": result.epochs,
        "steps": result.steps,
        "seconds": result.seconds,
        "stopped_by": result.stopped_by,
        "best_c_index": result.best_metric,
        "train_cases": len(train_rows),
        "val_cases": len(val_rows),
    }


def predict_to_csv(
    run: Path, data: Path, output: Path, *, device: str | None = None, overwrite: bool = False
) -> float | None:
    """Write ``case,log_risk`` for DATA's rows (in order); the C-index when DATA has outcomes."""
    from medseg.data.survival_table import read_survival_csv
    from medseg.fileutil import check_writable, csv_safe, write_text_atomic
    from medseg.metrics.survival import concordance_index
    from medseg.training.survival import predict_risk

    check_writable(output, overwrite=overwrite)
    table = read_survival_csv(data, outcome="optional")
    risk = predict_risk(run, table.images, device=device)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case", "log_risk"])
    writer.writerows([csv_safe(c), f"{r:.6f}"] for c, r in zip(table.cases, risk, strict=True))
    write_text_atomic(output, buffer.getvalue())
    if not table.has_outcome:
        return None
    return concordance_index(table.time, risk, table.event)


def run_demo(
    output: Path,
    *,
    dims: int = 2,
    cases: int = 200,
    time_budget_s: float | None = 30.0,
    epochs: int = 15,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Make ``OUT/data`` (phantoms), train ``OUT/run``, predict ``OUT/data/test.csv`` into
    ``OUT/risks.csv``; returns the held-out C-index and the true risk's."""
    from medseg.data.phantoms_survival import make_survival_phantoms
    from medseg.metrics.survival import concordance_index

    data = make_survival_phantoms(
        output / "data",
        n_train=cases,
        n_test=max(cases // 2, 10),
        spatial_dims=dims,
        seed=seed,
        overwrite=overwrite,
    )
    if overwrite:
        for name in ("checkpoint_latest.pt", "checkpoint_best.pt"):
            (output / "run" / name).unlink(missing_ok=True)
    summary = train_from_csv(
        data / "train.csv",
        output / "run",
        epochs=epochs,
        time_budget_s=time_budget_s,
        seed=seed,
        progress=progress,
    )
    c_index = predict_to_csv(
        output / "run", data / "test.csv", output / "risks.csv", overwrite=overwrite
    )
    with open(data / "truth.csv", newline="", encoding="utf-8") as handle:
        truth = {row["case"]: float(row["log_risk"]) for row in csv.DictReader(handle)}
    with open(data / "test.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    time = np.array([float(r["time"]) for r in rows])
    event = np.array([int(r["event"]) for r in rows])
    true_risk = np.array([truth[r["case"]] for r in rows])
    return {
        **summary,
        "c_index": c_index,
        "true_c_index": concordance_index(time, true_risk, event),
        "test_cases": len(rows),
        "test_events": int(event.sum()),
    }
