"""Cohort scale on one machine: driver memory over cohort size, Ray against local (issue 17).

Prints three tables (markdown), each measurement in a fresh Python process so that its peak
RSS (``ru_maxrss`` of the driver alone: pool workers, Ray's raylet and workers are other
processes) is its own:

1. **Driver memory**: ``preprocess`` of ``--small`` small phantom cohorts (16^3 voxels, the
   ``small`` preset) with ``--executor local`` (2 processes) and ``ray`` (2 CPUs): peak RSS of
   the driver, and its growth from the first to the last cohort size.
2. **Throughput**: ``preprocess`` and ``predict`` of ``--hippo`` Hippocampus-sized phantoms
   (36 x 50 x 35 voxels; an untrained 2-stage U-Net of 4/8 features), local vs Ray, in cases
   per minute; Ray's start-up (``ray.init`` and its workers importing medseg, once per
   worker process) is reported apart.
3. **Scaling**: ``preprocess`` of the Hippocampus-sized cohort on a Ray cluster of one node
   with 1 CPU against a cluster of two nodes with 1 CPU each (``ray.cluster_utils.Cluster``:
   two raylets on this machine, as ``ray start --head`` plus a worker would make them), and
   one local process.

    .venv/bin/python benchmarks/scale.py                       # 200, 2000 small; 200 hippo
    .venv/bin/python benchmarks/scale.py --small 100,1000 --hippo 60   # quicker
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORK = Path("/tmp/medseg_scale_bench")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def make_cohort(root: Path, n: int, size: str) -> Path:
    """A planned phantom cohort of ``n`` cases (``size`` preset) with an untrained tiny
    3d_fullres checkpoint; returns the results folder (cached by folder name)."""
    import torch

    from medseg.data.phantom_config import PhantomConfig
    from medseg.data.phantoms import generate_dataset
    from medseg.pipeline import plan
    from medseg.training.checkpoint import build_model, save_checkpoint

    results = root / f"{size}_{n}" / "results"
    if (results / "3d_fullres" / "fold_0" / "checkpoint_best.pt").exists():
        return results
    shutil.rmtree(results.parent, ignore_errors=True)
    config = PhantomConfig().sized(size, spatial_dims=3)
    dataset = generate_dataset(results.parent / "dataset", num_cases=n, seed=0, config=config)
    plans = plan(dataset, results, jobs=2, progress=False)
    net = {"features": [4, 8], "strides": [[1, 1, 1], [1, 2, 2]], "norm": "instance",
           "deep_supervision": True}  # fmt: skip
    tiny = dataclasses.replace(plans["3d_fullres"], network_config=net)
    torch.manual_seed(0)
    save_checkpoint(
        results / "3d_fullres" / "fold_0" / "checkpoint_best.pt",
        network_state=build_model(tiny).eval().state_dict(),
        plan=tiny.to_dict(),
        epoch=0,
        step=0,
        fold=0,
        configuration="3d_fullres",
    )
    images = results.parent / "images"
    images.mkdir(exist_ok=True)
    for path in sorted((dataset / "imagesTr").iterdir()):
        shutil.copyfile(path, images / path.name)
    return results


def _warm_worker() -> None:
    import medseg.inference.predict  # noqa: F401
    import medseg.planning.preprocessing  # noqa: F401

    time.sleep(0.5)  # hold this worker so that the next warm-up task starts another


def child(args: argparse.Namespace) -> dict[str, float]:
    """One measurement in this process: ``step`` with ``executor`` on a prepared cohort."""
    from medseg.inference.predict import predict
    from medseg.planning.preprocessing import preprocess

    results = Path(args.results)
    start = time.perf_counter()
    if args.executor == "ray":
        import ray

        if args.nodes > 1:
            from ray.cluster_utils import Cluster

            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
            for _ in range(args.nodes):
                cluster.add_node(num_cpus=args.cpus)
            ray.init(address=cluster.address, log_to_driver=False)
        else:
            ray.init(
                address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False
            )
        warm = ray.remote(num_cpus=1)(_warm_worker)  # start the workers and import medseg
        ray.get([warm.remote() for _ in range(args.cpus * args.nodes)])
    startup = time.perf_counter() - start
    before = _rss_mb()
    start = time.perf_counter()
    if args.step == "preprocess":
        shutil.rmtree(results / "preprocessed", ignore_errors=True)
        preprocess(
            results, configurations=["3d_fullres"], jobs=args.cpus, progress=False,
            executor=args.executor,
        )  # fmt: skip
    else:
        out = results.parent / f"pred_{args.executor}"
        shutil.rmtree(out, ignore_errors=True)
        predict(
            results.parent / "images", out, results, configurations=["3d_fullres"], folds=[0],
            mirror=False, device="cpu", executor=args.executor, jobs=args.cpus,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    if args.executor == "ray" and args.nodes > 1:
        ray.shutdown()
        cluster.shutdown()
    return {"startup_s": startup, "seconds": seconds, "rss_before_mb": before,
            "peak_rss_mb": _rss_mb()}  # fmt: skip


def measure(results: Path, step: str, executor: str, cpus: int = 2, nodes: int = 1) -> dict:
    """Run ``child`` in a fresh interpreter; its JSON result."""
    command = [sys.executable, __file__, "--child", "--results", str(results), "--step", step,
               "--executor", executor, "--cpus", str(cpus), "--nodes", str(nodes)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_table(sizes: list[int]) -> list[str]:
    lines = ["| executor | cases | driver RSS before (MB) | driver peak RSS (MB) | seconds |",
             "|---|---|---|---|---|"]  # fmt: skip
    for executor in ("local", "ray"):
        peaks = []
        for n in sizes:
            r = measure(make_cohort(WORK, n, "small"), "preprocess", executor)
            peaks.append(r["peak_rss_mb"])
            lines.append(f"| {executor} | {n} | {r['rss_before_mb']:.0f} | "
                         f"{r['peak_rss_mb']:.0f} | {r['seconds']:.1f} |")  # fmt: skip
            print(lines[-1], flush=True)
        growth = 100 * (peaks[-1] / peaks[0] - 1)
        lines.append(f"| {executor} | growth {sizes[0]} -> {sizes[-1]} | | {growth:+.1f} % | |")
    return lines


def throughput_table(n: int) -> list[str]:
    results = make_cohort(WORK, n, "hippocampus")
    lines = ["| step | executor | cases/min | seconds | Ray start-up (s) | ray / local |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for step in ("preprocess", "predict"):
        local = measure(results, step, "local")
        ray = measure(results, step, "ray")
        for name, r in (("local", local), ("ray", ray)):
            lines.append(f"| {step} | {name} | {60 * n / r['seconds']:.0f} | {r['seconds']:.1f} "
                         f"| {r['startup_s']:.1f} | "
                         f"{local['seconds'] / r['seconds']:.2f} |")  # fmt: skip
            print(lines[-1], flush=True)
    return lines


def scaling_table(n: int) -> list[str]:
    results = make_cohort(WORK, n, "hippocampus")
    runs = [("local, 1 process", "local", 1, 1), ("Ray, 1 node x 1 CPU", "ray", 1, 1),
            ("Ray, 2 nodes x 1 CPU", "ray", 1, 2)]  # fmt: skip
    lines = ["| preprocess on | cases/min | seconds | start-up (s) |", "|---|---|---|---|"]
    for name, executor, cpus, nodes in runs:
        r = measure(results, "preprocess", executor, cpus=cpus, nodes=nodes)
        lines.append(f"| {name} | {60 * n / r['seconds']:.0f} | {r['seconds']:.1f} | "
                     f"{r['startup_s']:.1f} |")  # fmt: skip
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", default="200,2000", help="small cohort sizes (memory)")
    parser.add_argument("--hippo", type=int, default=200, help="Hippocampus-sized cases")
    parser.add_argument("--only", choices=("memory", "throughput", "scaling"), default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--executor", help=argparse.SUPPRESS)
    parser.add_argument("--cpus", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--nodes", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    import ray

    WORK.mkdir(parents=True, exist_ok=True)
    print(f"Ray {ray.__version__}, {WORK}", flush=True)
    tables = []
    if args.only in (None, "memory"):
        tables += ["", *memory_table([int(v) for v in args.small.split(",")])]
    if args.only in (None, "throughput"):
        tables += ["", *throughput_table(args.hippo)]
    if args.only in (None, "scaling"):
        tables += ["", *scaling_table(args.hippo)]
    print("\n".join(tables))


if __name__ == "__main__":
    main()
