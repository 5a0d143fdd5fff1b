"""``medseg measure``: volumes, surfaces and connected components of a folder of masks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from medseg.cli.cluster_options import ADDRESS_OPTION, EXECUTOR_OPTION, Executor, where
from medseg.cli.options import output_file


def register(app: typer.Typer) -> None:
    """Mount the ``measure`` command on the main app."""
    app.command("measure")(measure)


def measure(
    pred: Path = typer.Argument(..., help="Folder of label maps (predictions or references)."),
    out: Path = typer.Option(
        ..., "--out", "-o", callback=output_file, help="CSV to write: one row per case and label."
    ),
    components: Path | None = typer.Option(
        None,
        "--components",
        callback=output_file,
        help="Also write one row per connected component (centroid in world mm, bounding box).",
    ),
    images: Path | None = typer.Option(
        None,
        "--images",
        help="Folder of the cases' images (CASE_0000.<ext>): each mask must share its grid.",
    ),
    labels: str | None = typer.Option(
        None,
        help="Labels/regions, e.g. '1,2' or 'wt=1+2+3'. Default: every non-zero value found.",
    ),
    connectivity: Literal["full", "face"] = typer.Option(
        "full",
        help="Component neighbourhood: full (26 in 3D, 8 in 2D) or face (6 in 3D, 4 in 2D).",
    ),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", min=1, help="Worker processes (default: CPU count)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    executor: Executor = EXECUTOR_OPTION,
    address: str | None = ADDRESS_OPTION,
) -> None:
    """Measure each mask without a reference: volume (mL) or area (mm2), surface, components."""
    from medseg.evaluation import measure_folder, parse_labels

    result = measure_folder(
        pred,
        out,
        components_csv=components,
        images=images,
        labels=parse_labels(labels) if labels else None,
        connectivity=connectivity,
        jobs=jobs,
        overwrite=overwrite,
        show_progress=True,
        **where(executor, address),
    )
    unit = "volumes in mL" if result["spatial_dims"] == 3 else "areas in mm2"
    typer.echo(
        f"measured {result['n_cases']} case(s), label(s) {', '.join(result['labels']) or 'none'} "
        f"({unit}, {result['n_components']} component(s)); wrote {out}"
        + (f" and {components}" if components else "")
    )
