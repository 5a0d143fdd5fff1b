"""Benchmark: medseg ``sliding_window_inference`` against MONAI's, same network and window.

Run: ``.venv/bin/python benchmarks/inference.py`` (about 1.5 minutes on 2 idle cores, several
under load) or ``--quick`` (small sizes, about 30 s). Prints one table: per case and method the
best wall time of ``--repeats`` runs, throughput in voxels/s, the best process CPU time (less
sensitive to other jobs on a shared machine), the sliding window's own cost
(``window ms``: the same call with a predictor that costs nothing), peak resident memory, and
the largest absolute difference of the output from medseg's.

Setup, identical for every method: a medseg ``UNet`` (eval mode, seeded weights, 3 classes),
``torch.set_num_threads(2)`` (``--threads``), overlap 0.5, ``sw_batch_size`` 4, Gaussian blending,
outputs averaged as logits (MONAI's behaviour; ``medseg (probabilities)`` adds a softmax per tile),
no mirroring, everything under ``torch.inference_mode()``. Methods:

- ``medseg``: ``medseg.inference.sliding_window_inference(..., output="logits")``.
- ``medseg (probabilities)``: the same with ``output="probabilities"`` (medseg's default).
- ``monai``: ``monai.inferers.sliding_window_inference`` given medseg's Gaussian as
  ``roi_weight_map``, so the outputs must agree to float rounding (1e-5).
- ``monai (own gaussian)``: MONAI's ``mode="gaussian"`` importance map, which clamps
  weights below 1e-3 to 1e-3, so outputs differ near tile corners (about 1 logit here).

Time: one subprocess runs the methods in turn ``--repeats`` times after a warm-up and keeps
each one's best, so a change in machine load affects all methods alike; ``monai (own
gaussian)`` runs once, only for its difference (same code path as ``monai``). Memory: each
method runs once more in a fresh subprocess; ``peak`` is its ``ru_maxrss`` at the end, ``over
setup`` subtracts the ``ru_maxrss`` after imports, network and input were built (importing
MONAI alone adds about 130 MB to ``peak``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch

CASES = {
    "3d": {"shape": (1, 1, 128, 128, 128), "patch": (64, 64, 64), "features": (8, 16, 32, 64)},
    "2d": {"shape": (1, 1, 1024, 1024), "patch": (256, 256), "features": (16, 32, 64, 128)},
}
QUICK = {
    "3d": {"shape": (1, 1, 64, 64, 64), "patch": (32, 32, 32), "features": (8, 16, 32)},
    "2d": {"shape": (1, 1, 384, 384), "patch": (128, 128), "features": (8, 16, 32, 64)},
}
METHODS = ["medseg", "medseg (probabilities)", "monai", "monai (own gaussian)"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _setup(case: dict) -> tuple[torch.nn.Module, torch.Tensor]:
    from medseg.nets import UNet

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    net = UNet(len(case["patch"]), 1, 3, features=tuple(case["features"])).eval()
    return net, torch.randn(case["shape"], generator=torch.Generator().manual_seed(1))


def _runner(method: str, net, image: torch.Tensor, patch: tuple[int, ...]):
    """A function running ``method`` once and returning its ``(B, K, *spatial)`` output."""
    from medseg.inference import gaussian_importance, sliding_window_inference

    if method.startswith("monai"):
        from monai.inferers import sliding_window_inference as monai_swi

        weights = gaussian_importance(patch) if method == "monai" else None

        def run() -> torch.Tensor:
            with torch.inference_mode():
                out = monai_swi(
                    image, patch, 4, net, overlap=0.5, mode="gaussian", roi_weight_map=weights
                )
            return out.as_tensor() if hasattr(out, "as_tensor") else out

        return run
    output = "probabilities" if "probabilities" in method else "logits"
    return lambda: sliding_window_inference(
        image, net, patch, overlap=0.5, mode="gaussian", output=output, sw_batch_size=4
    )


def _memory_worker(method: str, case: dict) -> dict:
    """One run of one method in this fresh process: peak resident memory in MB."""
    net, image = _setup(case)
    run = _runner(method, net, image, tuple(case["patch"]))
    if method.startswith("monai"):
        import monai.inferers  # noqa: F401  (its import cost belongs to the setup)
    baseline = _rss_mb()
    run()
    return {"peak_mb": _rss_mb(), "over_setup_mb": _rss_mb() - baseline}


def _timing_worker(methods: list[str], case: dict, repeats: int) -> dict:
    """Best wall and CPU time per method (methods alternate, in reversed order every other
    round, so a change in machine load hits all alike) and each output's largest absolute
    difference from medseg's logits."""
    net, image = _setup(case)
    patch = tuple(case["patch"])
    with torch.inference_mode():  # warm-up: first-call allocations, oneDNN primitives
        net(image[(slice(None), slice(None), *(slice(0, p) for p in patch))])
    runs = {m: _runner(m, net, image, patch) for m in methods}
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    outputs: dict[str, torch.Tensor] = {}
    timed = [m for m in methods if m != "monai (own gaussian)"]
    for i in range(repeats):
        for method in timed if i % 2 == 0 else timed[::-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            outputs[method] = runs[method]()
            times[method].append(time.perf_counter() - start)
            cpu[method].append(time.process_time() - start_cpu)
    if "monai (own gaussian)" in runs:  # same code path as "monai": run once, for the difference
        outputs["monai (own gaussian)"] = runs["monai (own gaussian)"]()
    reference = outputs["medseg"]
    # the sliding window's own cost: the same calls with a predictor that costs nothing
    cheap = {
        m: _runner(m, _three_classes, image, patch) for m in methods if m != "monai (own gaussian)"
    }
    overhead: dict[str, list[float]] = {m: [] for m in cheap}
    for _ in range(5):
        for method, run in cheap.items():
            start = time.perf_counter()
            run()
            overhead[method].append(time.perf_counter() - start)
    return {
        m: {
            "seconds": min(times[m]) if times[m] else math.nan,
            "cpu_seconds": min(cpu[m]) if cpu[m] else math.nan,
            "overhead": min(overhead[m]) if m in overhead else math.nan,
            "diff": float((outputs[m] - reference).abs().max()),
        }
        for m in methods
    }


def _three_classes(tiles: torch.Tensor) -> torch.Tensor:
    """A predictor that costs (almost) nothing: the input repeated as 3 'logits'."""
    return tiles.expand(-1, 3, *tiles.shape[2:]).clone()


def _subprocess(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per method (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        if spec["kind"] == "memory":
            print(json.dumps(_memory_worker(spec["method"], spec["case"])))
        else:
            print(json.dumps(_timing_worker(spec["methods"], spec["case"], spec["repeats"])))
        return
    cases = {k: {**v, "threads": args.threads} for k, v in (QUICK if args.quick else CASES).items()}
    try:
        import monai  # noqa: F401

        methods = METHODS
    except ImportError:
        methods = METHODS[:2]
        print("MONAI is not installed: medseg only")
    header = (
        f"{'case':<26} {'method':<24} {'time s':>7} {'Mvox/s':>7} {'vs monai':>8} {'cpu s':>6} "
        f"{'window ms':>9} {'peak MB':>8} {'over setup MB':>13} {'max |diff|':>11}"
    )
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), overlap 0.5, sw_batch_size 4, "
        f"Gaussian, best of {args.repeats}; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs at start"
    )
    print(header)
    print("-" * len(header))
    for name, case in cases.items():
        timing = _subprocess(
            {"kind": "timing", "methods": methods, "case": case, "repeats": args.repeats}
        )
        voxels = math.prod(case["shape"][2:])
        label = (
            f"{name} {'x'.join(map(str, case['shape'][2:]))} / {'x'.join(map(str, case['patch']))}"
        )
        for method in methods:
            t = timing[method]["seconds"]
            ratio = timing["monai"]["seconds"] / t if "monai" in timing else math.nan
            memory = {"peak_mb": math.nan, "over_setup_mb": math.nan}
            if method != "monai (own gaussian)":
                memory = _subprocess({"kind": "memory", "method": method, "case": case})
            diff = "(softmax)" if "probabilities" in method else f"{timing[method]['diff']:.1e}"
            cells = [
                f"{t:.2f}",
                f"{voxels / t / 1e6:.2f}",
                f"{ratio:.2f}x",
                f"{timing[method]['cpu_seconds']:.2f}",
                f"{timing[method]['overhead'] * 1e3:.0f}",
                f"{memory['peak_mb']:.0f}",
                f"{memory['over_setup_mb']:.0f}",
            ]
            cells = ["-" if "nan" in c else c for c in cells]
            print(
                f"{label:<26} {method:<24} {cells[0]:>7} {cells[1]:>7} {cells[2]:>8} {cells[3]:>6} "
                f"{cells[4]:>9} {cells[5]:>8} {cells[6]:>13} {diff:>11}"
            )
    print(
        f"load average at the end: {os.getloadavg()[0]:.1f} "
        "(timings are only comparable on an idle machine)"
    )
    print(
        "'vs monai' = MONAI's wall time / this method's (above 1: faster than MONAI); "
        "'cpu s' = process CPU time of the best run (all threads); 'window ms' = the same call "
        "with a predictor that costs nothing (the sliding window's own cost)."
    )


if __name__ == "__main__":
    main()
