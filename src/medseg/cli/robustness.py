"""``medseg robustness``: the trained ensemble's accuracy under image noise and artefacts."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import typer

from medseg.cli import options


def register(app: typer.Typer) -> None:
    """Mount the ``robustness`` command on the main app."""
    app.command("robustness")(robustness)


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def robustness(
    results: Path = typer.Argument(..., help="Results folder with the trained folds."),
    images: Path = typer.Option(
        ...,
        "--input",
        "-i",
        help="Folder of CASE_0000.nii.gz... images (or a dataset folder: its imagesTs).",
    ),
    ref: Path = typer.Option(..., "--ref", help="Folder of reference label maps CASE.nii.gz."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        callback=options.output_folder,
        help="Output folder for robustness.csv/.json/.png. Default: RESULTS/robustness.",
    ),
    perturb: str = typer.Option(
        "noise,bias,blur,lowres,contrast",
        "--perturb",
        help="Comma-separated image perturbations (see docs/robustness.md for each level).",
    ),
    levels: int = typer.Option(
        5, "--levels", min=2, help="Levels per perturbation, level 0 = unchanged image."
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        callback=options.configurations,
        help="Plans to ensemble (as for 'medseg predict'). Default: every trained configuration.",
    ),
    folds: str | None = typer.Option(
        None, "--folds", callback=options.folds, help="Folds, e.g. '0,1'. Default: all trained."
    ),
    checkpoint: options.Checkpoint = typer.Option("best", "--checkpoint"),
    cases: int | None = typer.Option(
        None, "--cases", min=1, help="Only the first N cases (sorted by id)."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the noise and bias fields."),
    mirror: bool = typer.Option(
        True, "--mirror/--no-mirror", help="Test-time mirroring along the plan's mirror axes."
    ),
    device: str | None = options.device_option(),
    jobs: int = typer.Option(
        1, "--jobs", "-j", min=1, help="Worker processes over cases (each loads the models)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Predict every case degraded by each perturbation at each level; score Dice and HD95."""
    from medseg.evaluation.robustness import robustness as run_robustness

    out = out if out is not None else results / "robustness"
    start = time.perf_counter()
    summary = run_robustness(
        results,
        images,
        ref,
        out,
        perturbations=_split(perturb) or [],
        levels=levels,
        configurations=_split(config),
        folds=_split(folds),
        checkpoint=checkpoint,
        cases=cases,
        seed=seed,
        mirror=mirror,
        device=device,
        jobs=jobs,
        overwrite=overwrite,
        progress=True,
    )
    _print_table(summary)
    typer.echo(
        f"{summary['n_cases']} case(s) in {time.perf_counter() - start:.1f} s -> "
        f"{out / 'robustness.csv'}, robustness.json, robustness.png"
    )


def _print_table(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    perturbations = summary["perturbations"]
    levels = max(len(entry["levels"]) for entry in perturbations.values())
    table = Table(
        title=f"Dice (mean over labels, then cases) by level, {summary['n_cases']} case(s)",
        caption="parameter in brackets; drop = level 0 minus the last level",
    )
    table.add_column("perturbation")
    for level in range(levels):
        table.add_column(str(level), justify="right")
    table.add_column("drop", justify="right")
    for name, entry in perturbations.items():
        cells = [
            f"{_number(e['labels']['all']['dice']['mean'])} [{e['parameter']:.3g}]"
            for e in entry["levels"]
        ]
        drop = entry["levels"][-1]["labels"]["all"]["dice_drop"]
        table.add_row(f"{name} ({entry['parameter_name']})", *cells, _number(drop))
    Console().print(table)


def _number(value: Any) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.3f}"
