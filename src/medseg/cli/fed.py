"""``medseg fed``: federated training across (simulated) sites with Flower.

* ``medseg fed split DATASET -o SITES --sites 3 [--by random|prefix] [--shift shift.json]``:
  one nnU-Net v2 dataset per site with its scanner shift, plus ``SITES/sites.json``;
* ``medseg fed run SITES -o RESULTS --config 2d --rounds R --local-steps N
  --strategy fedavg|fedprox [--mu 0.01] [--fedbn]``: one plan from the sites' aggregates,
  then Flower's Simulation runtime; ``medseg predict -m RESULTS`` uses the global model.

See ``docs/federated.md`` (shift file, threat model, TLS for a real deployment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from medseg.cli.options import non_negative_float, number_option, output_folder

app = typer.Typer(
    no_args_is_help=True,
    help="Federated training: split a dataset into shifted sites, train with Flower "
    "(FedAvg, FedProx, FedBN) without moving cases.",
)

STRATEGY_OPTION = typer.Option(
    "fedavg", "--strategy", help="fedavg or fedprox (proximal term --mu)."
)
MU_OPTION = number_option(
    0.01, "--mu", help="FedProx's proximal weight (>= 0).", parser=non_negative_float
)
FEDBN_OPTION = typer.Option(False, "--fedbn", help="Keep normalisation layers local.")
SEED_OPTION = typer.Option(0, "--seed", min=0, help="Seed of the weights and the batches.")
CPUS_OPTION = typer.Option(None, "--cpus", min=1, help="CPUs for the simulation.")
OVERWRITE_OPTION = typer.Option(False, "--overwrite", help="Replace an existing run.")


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="fed", help=app.info.help)


@app.command("split")
def split(
    dataset: Path = typer.Argument(..., help="A dataset folder (nnU-Net v2, MSD or 2D folder)."),
    out: Path = typer.Option(..., "--out", "-o", callback=output_folder, help="The sites folder."),
    sites: int = typer.Option(3, "--sites", min=2, help="Number of sites (random split)."),
    by: Literal["random", "prefix"] = typer.Option(
        "random", "--by", help="random, or one site per case-id prefix (text before the last _)."
    ),
    shift: Path | None = typer.Option(
        None, "--shift", help='A JSON file {"dirichlet": a, "sites": [{"gain": 1.2, ...}]}.'
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the split and the shifts."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing split."),
) -> None:
    """Split a dataset into sites, each with its own acquisition shift."""
    from medseg.federated.sites import split_sites

    record = split_sites(
        dataset, out, sites=sites, by=by, shifts=shift, seed=seed, overwrite=overwrite
    )
    for site in record["sites"]:
        typer.echo(f"{site['name']}: {site['cases']} cases")


@app.command("run")
def run(
    sites: Path = typer.Argument(..., help="A `medseg fed split` folder (site_* datasets)."),
    out: Path = typer.Option(..., "--out", "-o", callback=output_folder, help="Results folder."),
    config: Literal["2d", "3d_fullres", "3d_lowres"] = typer.Option(
        "2d", "--config", "-c", help="The configuration to train."
    ),
    rounds: int = typer.Option(10, "--rounds", min=1, help="Federated rounds."),
    local_steps: int = typer.Option(
        50, "--local-steps", min=1, help="Optimiser steps per site and round."
    ),
    strategy: Literal["fedavg", "fedprox"] = STRATEGY_OPTION,
    mu: float = MU_OPTION,
    fedbn: bool = FEDBN_OPTION,
    seed: int = SEED_OPTION,
    cpus: int | None = CPUS_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
) -> None:
    """Train one global model over the sites (Flower simulation, one ClientApp per site)."""
    from medseg.federated.run import run_federated

    result = run_federated(
        sites,
        out,
        config=config,
        rounds=rounds,
        local_steps=local_steps,
        strategy=strategy,
        mu=mu,
        fedbn=fedbn,
        seed=seed,
        cpus=cpus,
        overwrite=overwrite,
    )
    for row in result["rounds"]:
        typer.echo(
            f"round {row['round']}: mean Dice {row.get('val_dice', float('nan')):.3f}, worst "
            f"site {row.get('worst_site_dice', float('nan')):.3f}, {row['seconds']:.1f} s, "
            f"{(row['bytes_up'] + row['bytes_down']) / 1e6:.1f} MB"
        )
    typer.echo(f"global model: {out / config / 'fold_0'}")


@app.command("compare")
def compare(
    sites: Path = typer.Argument(..., help="A `medseg fed split` folder (site_* datasets)."),
    out: Path = typer.Option(..., "--out", "-o", callback=output_folder, help="Results folder."),
    rounds: int = typer.Option(5, "--rounds", min=1, help="Federated rounds."),
    local_steps: int = typer.Option(
        20, "--local-steps", min=1, help="Steps per site and round (budget: sites x rounds x N)."
    ),
    strategy: Literal["fedavg", "fedprox"] = STRATEGY_OPTION,
    mu: float = MU_OPTION,
    fedbn: bool = FEDBN_OPTION,
    seed: int = SEED_OPTION,
    cpus: int | None = CPUS_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
) -> None:
    """Centralised vs federated vs local-only with equal total steps, scored on every site."""
    from medseg.federated.compare import compare_training

    result = compare_training(
        sites,
        out,
        rounds=rounds,
        local_steps=local_steps,
        strategy=strategy,
        mu=mu,
        fedbn=fedbn,
        seed=seed,
        cpus=cpus,
        overwrite=overwrite,
    )
    names = list(next(iter(result["rows"].values()))["sites"])
    typer.echo(f"{'model':30s} {'mean':>6s} {'worst':>6s} " + " ".join(f"{n:>7s}" for n in names))
    for model, row in result["rows"].items():
        cells = " ".join(f"{row['sites'][n]:7.3f}" for n in names)
        typer.echo(f"{model:30s} {row['mean']:6.3f} {row['worst']:6.3f} {cells}")
