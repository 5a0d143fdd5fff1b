"""``medseg report``: one self-contained HTML report of a results folder."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli.options import output_file


def register(app: typer.Typer) -> None:
    """Mount the ``report`` command on the main app."""
    app.command("report")(report)


def report(
    results: Path = typer.Argument(
        ..., help="Results folder (plans.json, <config>/fold_<k>, evaluation/)."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        callback=output_file,
        help="Report file (default: RESULTS/report.html).",
    ),
    title: str | None = typer.Option(
        None, help="Page title (default: 'medseg report: <dataset>')."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report."),
) -> None:
    """Write RESULTS/report.html: plans, metrics, Dice boxplots, training curves, case overlays."""
    from medseg.report import build_report

    path = build_report(results, out=out, overwrite=overwrite, title=title)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
