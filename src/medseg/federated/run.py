"""``run_federated``: plan, preprocess and train a federation of sites with Flower.

Steps: :func:`~.sites.check_sites` refuses a bad site before round 1 (naming it);
:func:`~.planning.federated_plan` makes one plan from the sites' aggregates; each site
preprocesses its own cases into ``RESULTS/sites/<site>/`` (in a real deployment that folder
is on the site's machine; nothing in it is sent); Flower's Simulation runtime
(``flwr.simulation.run_simulation``, Ray backend) then runs the ``ServerApp`` and one
``ClientApp`` per site (``medseg.federated.flower``). ``RESULTS/<config>/fold_0/`` holds the
global model's checkpoints, which ``medseg predict -m RESULTS`` loads as any fold.
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from medseg.device import available_cpus
from medseg.errors import ConfigError
from medseg.federated.aggregate import FederatedError
from medseg.federated.planning import federated_plan
from medseg.federated.privacy import dp_epsilon
from medseg.federated.sites import check_sites
from medseg.fileutil import check_writable, write_json_atomic
from medseg.planning.preprocessing import preprocess

log = logging.getLogger(__name__)
FLWR_VERSION = "1.42"
STRATEGIES = ("fedavg", "fedprox")


def require_flwr() -> None:
    """Raise a clear ConfigError when ``flwr`` is missing or of another version."""
    try:
        version = importlib.metadata.version("flwr")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            "federated training needs Flower and the Ray its simulation runs on: "
            "pip install 'medseg[federated,cluster]'"
        ) from None
    if not version.startswith(FLWR_VERSION + "."):
        raise ConfigError(
            f"federated training was written for flwr {FLWR_VERSION}.x, found {version}: "
            f"pip install 'flwr=={FLWR_VERSION}.*'"
        )


def check_address(address: str, certificates: tuple[str, ...] | None) -> None:
    """Refuse a non-loopback SuperLink address without TLS certificates (CA, cert, key)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not certificates:
        raise ConfigError(
            f"{address}: not a loopback address; a federation over a network needs TLS "
            "certificates (--root-certificates, --ssl-certfile, --ssl-keyfile) and SuperNode "
            "authentication, see docs/federated.md"
        )


def prepare_sites(
    sites_dir: Path, out: Path, configuration: str
) -> tuple[Any, list[str], dict[str, Any]]:
    """Check the sites, plan them together, preprocess each; returns the plan, the sites'
    results folders and what each site sent for planning."""
    sites = check_sites(sites_dir)
    plans, fingerprint, summaries = federated_plan(sites)
    if configuration not in plans.configurations:
        raise ConfigError(
            f"no configuration '{configuration}'; planned: {list(plans.configurations)}"
        )
    out.mkdir(parents=True, exist_ok=True)
    replace(plans, dataset_path=str(sites_dir.resolve())).to_json(out / "plans.json")
    fingerprint.to_json(out / "fingerprint.json")
    site_dirs = []
    for name, ds in sites.items():
        site_out = out / "sites" / name
        site_out.mkdir(parents=True, exist_ok=True)
        (site_out / "splits.json").unlink(missing_ok=True)  # the site's cases may have changed
        replace(plans, dataset_path=str(ds.root.resolve())).to_json(site_out / "plans.json")
        preprocess(site_out, configurations=[configuration], jobs=1, progress=False)
        site_dirs.append(str(site_out.resolve()))
    return plans[configuration], site_dirs, summaries


def prepare_run(
    sites_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: str = "2d",
    rounds: int = 3,
    local_steps: int = 10,
    strategy: str = "fedavg",
    mu: float = 0.01,
    fedbn: bool = False,
    seed: int = 0,
    dp_clip: float = 0.0,
    dp_noise: float = 0.0,
    dp_delta: float = 1e-5,
    overwrite: bool = False,
) -> tuple[Any, list[str], dict[str, Any]]:
    """Check the arguments and the sites, plan and preprocess them, write
    ``federation.json`` (the settings, with the DP ``epsilon`` when ``dp_clip > 0``);
    returns the plan, the sites' results folders and the settings."""
    require_flwr()
    if strategy not in STRATEGIES or rounds < 1 or local_steps < 1 or mu < 0:
        raise ConfigError(
            f"strategy must be one of {STRATEGIES}, rounds and local_steps >= 1, mu >= 0 "
            f"(got {strategy!r}, {rounds}, {local_steps}, {mu})"
        )
    if not (dp_clip >= 0 and dp_noise >= 0 and 0 < dp_delta < 1) or (dp_noise and not dp_clip):
        raise ConfigError(
            f"dp clip and noise must be >= 0 (noise needs a clip), delta in (0, 1) "
            f"(got {dp_clip}, {dp_noise}, {dp_delta})"
        )
    sites_dir, out = Path(sites_dir), Path(out)
    check_writable(out / "federation.json", overwrite=overwrite)
    (out / "rounds.jsonl").unlink(missing_ok=True)
    plan, site_dirs, _ = prepare_sites(sites_dir, out, config)
    settings = {
        "configuration": config,
        "rounds": rounds,
        "local_steps": local_steps,
        "strategy": strategy,
        "mu": mu if strategy == "fedprox" else 0.0,
        "fedbn": fedbn,
        "seed": seed,
        "sites": len(site_dirs),
        "dp_clip": float(dp_clip),
        "dp_noise": float(dp_noise),
    }
    if dp_clip > 0:
        settings.update(dp_delta=dp_delta, dp_epsilon=dp_epsilon(dp_noise, rounds, dp_delta))
    write_json_atomic(out / "federation.json", settings)
    return plan, site_dirs, settings


def run_federated(
    sites_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    cpus: int | None = None,
    on_round: Callable[[int, dict[str, Any]], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train one global model over the sites in ``sites_dir`` (module docstring).

    Args:
        sites_dir: the output of ``split_sites`` (``site_*`` dataset folders).
        out: the results folder (``plans.json``, ``<config>/fold_0/``, ``rounds.jsonl``).
        cpus: CPUs for Flower's Ray backend (default: all available); one per site at a time.
        on_round: called with ``(round, row)`` after each round (progress, tests).
        options: those of :func:`prepare_run`: ``config``, ``rounds``, ``local_steps``
            (optimiser steps per site and round), ``strategy`` (``"fedavg"`` or
            ``"fedprox"`` with proximal ``mu``), ``fedbn`` (normalisation layers stay
            local), ``seed``, ``dp_clip``/``dp_noise``/``dp_delta`` (client-side DP,
            :mod:`~.privacy`), ``overwrite``.

    Returns:
        ``{"rounds": [per-round metrics, seconds, bytes], "seconds"}``.

    Raises:
        FederatedError: a site is refused, or the run failed (its cause chained).
        ConfigError: bad arguments, or ``flwr`` missing or of another version.
        OverwriteError: ``out`` holds a trained federation and ``overwrite`` is False.
    """
    out = Path(out)
    plan, site_dirs, settings = prepare_run(sites_dir, out, **options)
    from flwr.simulation import run_simulation

    from medseg.federated import flower  # Flower is imported only here

    status: dict[str, Any] = {}
    cpus = max(1, min(cpus or available_cpus(), len(site_dirs)))
    started = time.perf_counter()
    run_simulation(
        server_app=flower.server_app(plan, out, settings, status, on_round),
        client_app=flower.client_app(site_dirs, {k: settings[k] for k in flower.CLIENT_KEYS}),
        num_supernodes=len(site_dirs),
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0},
            "init_args": {"num_cpus": cpus, "num_gpus": 0, "logging_level": logging.WARNING},
        },
    )
    if "error" in status:
        raise FederatedError(f"{out}: federated run failed: {status['error']}") from status["error"]
    if "result" not in status:
        raise FederatedError(f"{out}: the Flower simulation ended without a result (see its log)")
    result = {**status["result"], "seconds": time.perf_counter() - started}
    write_json_atomic(out / "federation.json", {**settings, "rounds_log": result["rounds"]})
    return result
