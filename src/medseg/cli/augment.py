"""``medseg augment ...``: look at what augmentation does to a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from medseg.cli.options import output_file, probability

app = typer.Typer(no_args_is_help=True, help="Preview data augmentation.")


@app.callback()
def augment() -> None:
    """Preview data augmentation (a group, so ``preview`` stays a subcommand)."""


@app.command("preview")
def preview(
    dataset: Path = typer.Argument(..., help="Dataset folder (nnU-Net / MSD layout)."),
    out: Path = typer.Option(..., "--out", "-o", callback=output_file, help="Output PNG."),
    preset: Literal["nnunet_default", "light"] = typer.Option(
        "nnunet_default", help="Augmentation preset."
    ),
    p: float | None = typer.Option(
        None,
        "--p",
        parser=probability,
        metavar="[0,1]",
        help="Replace every probability (1.0 shows every transform).",
    ),
    cases: int = typer.Option(3, min=1, help="Number of cases (rows)."),
    augmented: int = typer.Option(4, min=1, help="Augmented versions per case (columns)."),
    seed: int = typer.Option(0, min=0, help="Random seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> None:
    """Save a grid of a few cases, each with several augmented versions and its label overlaid."""
    from medseg.transforms.preview import preview_dataset

    path = preview_dataset(
        dataset,
        out,
        preset=preset,
        p=p,
        n_cases=cases,
        n_augmented=augmented,
        seed=seed,
        overwrite=overwrite,
    )
    typer.echo(f"wrote {path} ({cases} cases x {augmented} augmented versions, preset {preset})")
