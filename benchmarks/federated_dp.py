"""Dice against client-side DP noise on small 2D phantom sites (issue 18; a table, not a test).

Three phantom sites, FedAvg in Flower's simulation runtime, ``--rounds`` rounds of
``--local-steps`` steps. The clip norm ``C`` is half the norm of one undisturbed first-round
update (measured on site 0), so clipping binds; each run adds Gaussian noise of std ``z * C``
to every site's clipped update (``medseg fed run --dp-clip C --dp-noise z``), and epsilon is
the RDP accountant's for ``--rounds`` releases at ``delta = 1e-5``.

    .venv/bin/python benchmarks/federated_dp.py /tmp/dp --rounds 4 --local-steps 5

Needs ``flwr`` (the ``federated`` extra). Prints one JSON row per noise level and writes
``WORK/dp_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from medseg.data.phantom_config import PhantomConfig
from medseg.data.phantoms import generate_dataset
from medseg.federated.local import SiteTrainer
from medseg.federated.privacy import dp_epsilon, update_norm
from medseg.federated.run import prepare_sites, run_federated
from medseg.federated.sites import split_sites

NOISE_LEVELS = (None, 0.0, 0.001, 0.01, 0.1, 1.0)  # None: no DP at all; 0.0: clipping only
DELTA = 1e-5


def first_update_norm(sites: Path, probe: Path, rounds: int, steps: int) -> float:
    """The norm of site 0's first-round update from the initial weights (no DP)."""
    _, dirs, _ = prepare_sites(sites, probe, "2d")
    site = SiteTrainer(dirs[0], "2d", local_steps=steps, rounds=rounds)
    start = {k: v.numpy().copy() for k, v in site.task.model.state_dict().items()}
    arrays, _ = site.train(start, 1)
    floats = [k for k in arrays if start[k].dtype.kind == "f"]
    return update_norm({k: arrays[k].astype(np.float64) - start[k] for k in floats})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--local-steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    small = PhantomConfig().sized("small", spatial_dims=2)
    data = generate_dataset(
        args.work / "ds", spatial_dims=2, num_cases=18, seed=5, config=small, overwrite=True
    )
    sites = args.work / "sites"
    if not sites.exists():
        split_sites(data, sites, sites=3, seed=0)
    norm = first_update_norm(sites, args.work / "probe", args.rounds, args.local_steps)
    clip = float(f"{norm / 2:.2g}")
    print(f"first-round update norm {norm:.4f}, clip {clip}", flush=True)
    rows = []
    for z in NOISE_LEVELS:
        start = time.perf_counter()
        dp = {} if z is None else {"dp_clip": clip, "dp_noise": z}
        result = run_federated(
            sites,
            args.work / f"run_{z}",
            rounds=args.rounds,
            local_steps=args.local_steps,
            cpus=2,
            overwrite=True,
            **dp,
        )
        last = result["rounds"][-1]
        row = {
            "z": z,
            "clip": None if z is None else clip,
            "epsilon": float("nan") if not z else dp_epsilon(z, args.rounds, DELTA),
            "mean_dice": last.get("val_dice"),
            "worst_site_dice": last.get("worst_site_dice"),
            "seconds": round(time.perf_counter() - start, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.work / "dp_bench.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
