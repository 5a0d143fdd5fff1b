"""``medseg nets ...``: inspect the registered networks."""

from __future__ import annotations

from typing import Literal

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.callback()
def nets() -> None:
    """Inspect the registered networks (segmentation and classification)."""


@app.command("list")
def list_command(
    in_channels: int = typer.Option(
        1, "--in-channels", min=1, help="Image channels for the counts."
    ),
    out_channels: int = typer.Option(2, "--out-channels", min=1, help="Classes for the counts."),
    task: Literal["segmentation", "classification"] | None = typer.Option(
        None, "--task", help="Only segmentation or classification networks."
    ),
) -> None:
    """List the networks with their parameter counts for the 2D and 3D defaults."""
    from medseg.nets import describe_networks

    table = Table(title=f"Networks (defaults, {in_channels} -> {out_channels} channels)")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("params 2D", justify="right")
    table.add_column("params 3D", justify="right")
    table.add_column("description")
    for row in describe_networks(in_channels=in_channels, out_channels=out_channels, task=task):
        table.add_row(row.name, row.task, f"{row.params_2d:,}", f"{row.params_3d:,}", row.summary)
    console.print(table)
