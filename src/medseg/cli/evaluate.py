"""``medseg evaluate``: metrics for a folder of predictions against references."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import typer

from medseg.cli.options import non_negative_float, number_option, output_folder

_SHOWN = ("dice", "hd95", "assd", "nsd")


def register(app: typer.Typer) -> None:
    """Mount the ``evaluate`` command on the main app."""
    app.command("evaluate")(evaluate)


def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Folder of predicted label maps."),
    ref: Path = typer.Option(
        ..., "--ref", help="Folder of reference label maps (same file names)."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        callback=output_folder,
        help="Output folder for per_case.csv and summary.json.",
    ),
    labels: str | None = typer.Option(
        None,
        help="Labels/regions, e.g. '1,2' or 'wt=1+2+3,tc=1+3,et=3'. "
        "Default: all non-zero reference values.",
    ),
    ignore_label: int | None = typer.Option(
        None,
        "--ignore-label",
        min=0,
        help="Reference value whose voxels count in no metric. Default: the 'ignore' label "
        "(sparse annotations) of the dataset.json in --ref or its parent folder, if any.",
    ),
    tolerance: float = number_option(
        2.0, help="NSD tolerance in mm (>= 0).", parser=non_negative_float, metavar="MM"
    ),
    hd95_mode: Literal["max_directed", "pooled"] = typer.Option(
        "max_directed",
        help="max_directed (larger directed 95th percentile; MONAI, DeepMind) or pooled (MedPy).",
    ),
    surface: Literal["voxel", "surfel"] = typer.Option(
        "voxel", help="voxel (MONAI/MedPy surface voxels) or surfel (DeepMind)."
    ),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", min=1, help="Worker processes (default: CPU count)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Compare predictions with references case by case; write per_case.csv and summary.json."""
    from medseg.evaluation import evaluate_folders, parse_labels

    summary = evaluate_folders(
        pred,
        ref,
        out,
        labels=parse_labels(labels) if labels else None,
        ignore_label="auto" if ignore_label is None else ignore_label,
        tolerance_mm=tolerance,
        hd95_mode=hd95_mode,
        surface=surface,
        jobs=jobs,
        overwrite=overwrite,
        show_progress=True,
    )
    _print_table(summary)
    typer.echo(
        f"wrote {out / 'per_case.csv'} and {out / 'summary.json'} ({summary['n_cases']} cases)"
    )


def _print_table(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    options = summary["options"]
    table = Table(
        title=f"{summary['n_cases']} cases: mean±std (distances in mm)",
        caption=f"(k): k NaN values skipped. NSD at {options['tolerance_mm']:g} mm, "
        f"HD95 {options['hd95_mode']}. All metrics in per_case.csv and summary.json.",
    )
    table.add_column("label")
    for name in _SHOWN:
        table.add_column(name, justify="right")
    for label, stats in summary["per_label"].items():
        table.add_row(label, *(_cell(stats[name]) for name in _SHOWN))
    table.add_row("all", *(_cell(summary["overall"][name]) for name in _SHOWN), style="bold")
    Console().print(table)


def _cell(stats: dict[str, Any]) -> str:
    mean, std, skipped = stats["mean"], stats["std"], stats["nan_count"]
    text = "nan" if mean is None or math.isnan(mean) else f"{mean:.3f}±{std:.3f}"
    return f"{text} ({skipped})" if skipped else text
