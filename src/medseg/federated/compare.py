"""Centralised vs federated vs local-only on the same sites, with equal total steps.

:func:`compare_training` trains, from the same initial weights and the same plan:

* **federated**: :func:`~.run.run_federated` (``rounds x local_steps`` steps per site);
* **centralised**: one model on the pooled training cases of every site (a simulation of
  what sharing the data would give), ``sites x rounds x local_steps`` steps;
* **local-only**: one model per site on its own cases, ``rounds x local_steps`` steps each;

then scores every model on every site's validation cases (the pseudo Dice of the engine's
validation: fixed patches) and reports per site, mean and worst site. Equal total steps:
every approach spends ``sites x rounds x local_steps`` optimiser steps.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.data.case_store import list_cases
from medseg.federated.local import SiteTrainer
from medseg.fileutil import write_json_atomic
from medseg.training.checkpoint import build_model, load_checkpoint
from medseg.training.splits import load_or_make_splits


def pool_sites(site_dirs: list[str], out: Path, configuration: str) -> Path:
    """A results folder whose store holds every site's preprocessed cases and whose fold 0
    trains on the union of the sites' training cases (validating on their validation)."""
    store = out / "preprocessed" / configuration
    store.mkdir(parents=True, exist_ok=True)
    train, val = [], []
    for site in site_dirs:
        site_store = Path(site) / "preprocessed" / configuration
        splits = load_or_make_splits(site, list_cases(site_store))
        train += splits[0]["train"]
        val += splits[0]["val"]
        for f in site_store.iterdir():
            if f.name != "manifest.json":
                shutil.copyfile(f, store / f.name)
    shutil.copyfile(Path(site_dirs[0]) / "plans.json", out / "plans.json")
    folds = [
        {"train": sorted(train), "val": sorted(val)},
        {"train": sorted(val), "val": sorted(train)},
    ]
    write_json_atomic(out / "splits.json", folds)
    return out


def compare_training(
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
    cpus: int | None = None,
    val_batches: int = 8,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train the three ways and score them (module docstring).

    Returns:
        ``{"steps": total, "rows": {model: {"sites": {site: dice}, "mean", "worst"}},
        "seconds": {...}}``, also written to ``out/compare.json``.
    """
    from medseg.federated.run import run_federated

    out = Path(out)
    seconds = {}
    started = time.perf_counter()
    run_federated(
        sites_dir,
        out / "federated",
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
    seconds["federated"] = time.perf_counter() - started
    site_dirs = sorted(str(p) for p in (out / "federated" / "sites").iterdir() if p.is_dir())
    names = [Path(d).name for d in site_dirs]
    steps = rounds * local_steps
    judges = {
        n: SiteTrainer(d, config, local_steps=1, rounds=1, seed=seed, val_batches=val_batches)
        for n, d in zip(names, site_dirs, strict=True)
    }
    plan = next(iter(judges.values())).plan
    torch.manual_seed(seed)
    initial = {k: v.numpy() for k, v in build_model(plan).state_dict().items()}
    fold = out / "federated" / config / "fold_0" / "checkpoint_latest.pt"
    models = {
        "federated": {k: v.numpy() for k, v in load_checkpoint(fold)["network_state"].items()}
    }
    started = time.perf_counter()
    pooled = pool_sites(site_dirs, out / "centralised", config)
    central = SiteTrainer(pooled, config, local_steps=steps * len(names), rounds=1, seed=seed)
    models["centralised"] = central.train(initial, 1)[0]
    seconds["centralised"] = time.perf_counter() - started
    started = time.perf_counter()
    for name, site in zip(names, site_dirs, strict=True):
        trainer = SiteTrainer(site, config, local_steps=steps, rounds=1, seed=seed)
        models[f"local {name}"] = trainer.train(initial, 1)[0]
    seconds["local-only"] = time.perf_counter() - started
    rows = score_models(models, judges)
    result = {"steps": steps * len(names), "rows": rows, "seconds": seconds}
    write_json_atomic(out / "compare.json", result)
    return result


def score_models(
    models: dict[str, dict[str, np.ndarray]], judges: dict[str, SiteTrainer]
) -> dict[str, dict[str, Any]]:
    """Every model's validation Dice on every site; mean and worst site; the local models'
    row averaged (``local-only (mean of models)``)."""
    names = list(judges)
    rows = {}
    for model, state in models.items():
        dice = {n: judges[n].evaluate(state)["val_dice"] for n in names}
        values = np.array(list(dice.values()))
        rows[model] = {
            "sites": dice,
            "mean": float(np.nanmean(values)),
            "worst": float(np.nanmin(values)),
        }
    local = [rows[f"local {n}"] for n in names]
    rows["local-only (mean of models)"] = {
        "sites": {n: float(np.mean([r["sites"][n] for r in local])) for n in names},
        "mean": float(np.mean([r["mean"] for r in local])),
        "worst": float(np.mean([r["worst"] for r in local])),
    }
    return rows
