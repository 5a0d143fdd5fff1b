"""``medseg nets ...``: inspect the registered networks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from medseg.cli.options import plan_name_option

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


def _network_name(name: str) -> str:
    """``callback=``: a registered network name."""
    from medseg.nets import list_networks

    if name not in list_networks():
        raise typer.BadParameter(f"unknown network {name!r}; 'medseg nets list' shows them")
    return name


def _planned_network(name: str, results: Path, config: str | None) -> tuple[Any, int, tuple, str]:
    """The network of a planned configuration (meta device: no weights), its spatial dims,
    the plan's spacing (mm, network axes) and the configuration's name."""
    import torch

    from medseg.errors import ConfigError
    from medseg.nets import build_network
    from medseg.planning.plan import Plans

    plans = Plans.from_json(results / "plans.json")
    chosen = (
        config
        or plans.recommended
        or (
            "3d_fullres"
            if "3d_fullres" in plans.configurations
            else next(iter(plans.configurations))
        )
    )
    plan = plans[chosen]
    if plan.network != name:
        raise ConfigError(
            f"{results / 'plans.json'}: configuration {chosen} uses network {plan.network!r}, "
            f"not {name!r}; run 'medseg nets receptive-field {plan.network} --plan {results}'"
        )
    with torch.device("meta"):
        net = build_network(
            name, spatial_dims=plan.spatial_dims, in_channels=plan.in_channels,
            out_channels=plan.num_classes, **plan.network_config,
        )  # fmt: skip
    return net, plan.spatial_dims, tuple(plan.spacing[-plan.spatial_dims :]), chosen


@app.command("receptive-field")
def receptive_field_command(
    name: str = typer.Argument(
        ..., callback=_network_name, metavar="NAME", help="A U-Net-skeleton network."
    ),
    plan: Path | None = typer.Option(
        None,
        "--plan",
        exists=True,
        file_okay=False,
        help="RESULTS folder: use its plans.json's kernels, strides and spacing.",
    ),
    config: str | None = plan_name_option(
        None, "Configuration of --plan (default: the recommended, else 3d_fullres, else first)."
    ),
    dims: int = typer.Option(
        3, "--dims", min=2, max=3, help="Without --plan: the 2D or 3D default network, 1 mm."
    ),
) -> None:
    """Print each stage's theoretical receptive field in voxels and mm, per axis."""
    from medseg.nets import build_network
    from medseg.nets.receptive_field import receptive_fields

    if plan is not None:
        net, spatial_dims, spacing, chosen = _planned_network(name, plan, config)
        source = f"{chosen} of {plan}"
    else:
        net = build_network(name, spatial_dims=dims, in_channels=1, out_channels=2)
        spatial_dims, spacing, source = dims, (1.0,) * dims, "default configuration, 1 mm"
    table = Table(title=f"Receptive field of {name}, {source}")
    for column in ("stage", "voxels", "mm", "jump (voxels)"):
        table.add_column(column, no_wrap=True)
    for row in receptive_fields(net, spatial_dims, spacing=spacing):
        table.add_row(
            row.stage,
            " x ".join(str(r) for r in row.size),
            " x ".join(f"{m:.4g}" for m in row.size_mm),
            " x ".join(f"{j:g}" for j in row.jump),
        )
    console.print(table)
