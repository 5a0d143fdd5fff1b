"""``medseg fed``: federated training across (simulated) sites with Flower.

* ``medseg fed split DATASET -o SITES --sites 3 [--by random|prefix] [--shift shift.json]``:
  one nnU-Net v2 dataset per site with its scanner shift, plus ``SITES/sites.json``;
* ``medseg fed run SITES -o RESULTS --config 2d --rounds R --local-steps N
  --strategy fedavg|fedprox [--mu 0.01] [--fedbn]``: one plan from the sites' aggregates,
  then Flower's Simulation runtime; ``medseg predict -m RESULTS`` uses the global model.
  ``--superlink HOST:PORT`` submits the run to a running SuperLink instead (deployment
  runtime; a non-loopback address needs ``--root-certificates``); ``--dp-clip C --dp-noise
  Z`` clip and noise each site's update before it leaves (client-side DP, epsilon logged).

See ``docs/federated.md`` (shift file, threat model, TLS for a real deployment).
"""

from __future__ import annotations

import math
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


def superlink_address(text: str | None) -> str | None:
    """``HOST:PORT`` (IPv4, [IPv6] or a name) with a port in 1..65535."""
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"must be HOST:PORT (e.g. 127.0.0.1:9093), got {text}")
    return text


def open_unit(text: str) -> float:
    """A number in (0, 1) (a DP delta)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:  # False for NaN
        raise typer.BadParameter(f"must be a number in (0, 1), got {text}")
    return value


SUPERLINK_OPTION = typer.Option(
    None,
    "--superlink",
    parser=superlink_address,
    metavar="HOST:PORT",
    help="Run on Flower's deployment runtime: the SuperLink's address (its SuperNodes started "
    "with --node-config \"partition-id=I site-results='RESULTS/sites/site_I'\"); default: "
    "the simulation. A non-loopback address needs --root-certificates.",
)
ROOT_CERTIFICATES_OPTION = typer.Option(
    None,
    "--root-certificates",
    exists=True,
    dir_okay=False,
    help="The CA certificate (PEM) of the SuperLink's TLS certificate.",
)
TIMEOUT_OPTION = typer.Option(
    3600, "--timeout", min=1, help="Seconds a deployed run may take before it is stopped."
)
DP_CLIP_OPTION = number_option(
    0.0,
    "--dp-clip",
    help="Client-side DP: clip each site's update to this L2 norm (0: off).",
    parser=non_negative_float,
)
DP_NOISE_OPTION = number_option(
    0.0,
    "--dp-noise",
    help="Client-side DP: Gaussian noise multiplier z (std z x clip per weight).",
    parser=non_negative_float,
)
DP_DELTA_OPTION = number_option(
    1e-5, "--dp-delta", help="The delta of the reported DP epsilon, in (0, 1).", parser=open_unit
)


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
    superlink: str | None = SUPERLINK_OPTION,
    root_certificates: Path | None = ROOT_CERTIFICATES_OPTION,
    timeout: int = TIMEOUT_OPTION,
    dp_clip: float = DP_CLIP_OPTION,
    dp_noise: float = DP_NOISE_OPTION,
    dp_delta: float = DP_DELTA_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
) -> None:
    """Train one global model over the sites (Flower simulation, one ClientApp per site; or
    a running SuperLink with --superlink)."""
    options = {
        "config": config,
        "rounds": rounds,
        "local_steps": local_steps,
        "strategy": strategy,
        "mu": mu,
        "fedbn": fedbn,
        "seed": seed,
        "dp_clip": dp_clip,
        "dp_noise": dp_noise,
        "dp_delta": dp_delta,
        "overwrite": overwrite,
    }
    if superlink is not None:
        from medseg.federated.deploy import run_deployed

        certificates = str(root_certificates) if root_certificates else None
        result = run_deployed(
            sites,
            out,
            superlink=superlink,
            root_certificates=certificates,
            timeout=timeout,
            **options,
        )
    else:
        from medseg.federated.run import run_federated

        result = run_federated(sites, out, cpus=cpus, **options)
    for row in result["rounds"]:
        typer.echo(
            f"round {row['round']}: mean Dice {row.get('val_dice', float('nan')):.3f}, worst "
            f"site {row.get('worst_site_dice', float('nan')):.3f}, {row['seconds']:.1f} s, "
            f"{(row['bytes_up'] + row['bytes_down']) / 1e6:.1f} MB"
        )
    if dp_clip > 0:
        from medseg.federated.privacy import dp_epsilon

        epsilon = dp_epsilon(dp_noise, rounds, dp_delta)
        typer.echo(
            f"client-side DP: each site ({epsilon:.3g}, {dp_delta:g})-DP over {rounds} rounds"
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
