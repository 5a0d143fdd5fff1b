"""Temporal context on cine phantoms (issue 23 part G; a table, not a test).

Generates beating-LV phantoms (``medseg.data.phantoms_cine``), converts the training series
into per-frame datasets with ``--contexts`` (k = 0: frame by frame; k = 2: frames t-2..t+2
as five input channels; ``medseg.data.temporal.cine_to_frames``), plans, preprocesses and
trains each for ``--steps`` optimiser steps (the same for every context; ``--minutes`` caps
it; fold ``all``, the planner's defaults otherwise, fp32), predicts every
frame of held-out phantoms and reports, per context:

* ED and ES LV volume error (mean absolute, mL and % of the true volume), at the true ED/ES
  frames;
* EF error (mean absolute, and mean signed = bias, percentage points; EF from the predicted
  curve's own ED/ES);
* ED/ES frame hits (predicted curve's argmax/argmin equal to the true frames);
* the volume-curve smoothness (``medseg.metrics.temporal``) of prediction and truth;
* LV Dice over all frames.

    .venv/bin/python benchmarks/cine.py --steps 300 --train-cases 6 --test-cases 4
    .venv/bin/python benchmarks/cine.py --dims 3 --steps 300          # 3D+t

ACDC in ../shared/data holds only the ED and ES frames of each patient (no full cine
series), so this benchmark runs on phantoms only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from medseg.data.phantoms_cine import LV, cine_phantom, write_cine_dataset
from medseg.data.temporal import cine_to_frames, stack_frame_predictions, write_frame_inputs
from medseg.metrics.temporal import cycle_metrics, volume_curve
from medseg.pipeline import plan, predict, preprocess, train


def run_context(args, work: Path, context: int, tests: list) -> dict:
    frames_ds = cine_to_frames(
        work / "cine", work / f"frames_k{context}", context=context, overwrite=True
    )
    results = work / f"results_k{context}"
    plan(frames_ds, results, jobs=1, progress=False, overwrite=True)
    config = "2d" if args.dims == 2 else "3d_fullres"
    preprocess(results, configurations=[config], jobs=1, progress=False)
    start = time.perf_counter()
    out = train(
        results,
        config,
        "all",
        epochs=1,
        steps_per_epoch=args.steps,  # equal steps for every context; the budget is a cap
        time_budget_s=args.minutes * 60,
        num_workers=0,
        seed=0,
        validate=False,
        precision=args.precision,
        progress=False,
    )
    train_s = time.perf_counter() - start
    inputs, preds = work / f"test_in_k{context}", work / f"test_pred_k{context}"
    for i, phantom in enumerate(tests):
        write_frame_inputs(phantom.image, inputs, f"test_{i:03d}", context=context, overwrite=True)
    predict(
        inputs,
        preds,
        results,
        configurations=[config],
        folds=["all"],
        mirror=False,
        overwrite=True,
        progress=False,
    )
    rows = []
    for i, phantom in enumerate(tests):
        series = stack_frame_predictions(
            preds, f"test_{i:03d}", phantom.image.num_frames, phantom.image.time_interval
        )
        rows.append(case_row(phantom, series.array))
    return {"context": context, "steps": int(out["fit"]["steps"]), "train_s": train_s, "rows": rows}


def case_row(phantom, predicted: np.ndarray) -> dict:
    spacing = phantom.image.spacing
    curve = volume_curve(predicted, spacing, LV)
    true = phantom.volumes
    ed, es = phantom.ed_index, phantom.es_index
    got = cycle_metrics(curve)
    truth = cycle_metrics(true)
    pred_lv, true_lv = predicted == LV, phantom.label.array == LV
    dice = 2 * np.sum(pred_lv & true_lv) / max(np.sum(pred_lv) + np.sum(true_lv), 1)
    return {
        "ed_ml": abs(curve[ed] - true[ed]),
        "ed_pct": abs(curve[ed] - true[ed]) / true[ed] * 100,
        "es_ml": abs(curve[es] - true[es]),
        "es_pct": abs(curve[es] - true[es]) / true[es] * 100,
        "ef_pp": abs(got["ef"] - truth["ef"]),
        "ef_bias": got["ef"] - truth["ef"],
        "ed_hit": got["ed_index"] == ed,
        "es_hit": got["es_index"] == es,
        "smooth": got["smoothness"],
        "smooth_true": truth["smoothness"],
        "dice": float(dice),
    }


def table(runs: list[dict]) -> str:
    head = (
        "| context k | channels | steps | ED err mL (%) | ES err mL (%) | EF err (bias) pp | "
        "ED/ES frame hits | smoothness pred (true) | LV Dice |"
    )
    lines = [head, "|" + "---|" * 9]
    for run in runs:
        r = run["rows"]

        def m(key: str, r: list = r) -> float:
            return statistics.fmean(float(x[key]) for x in r)

        hits = f"{sum(x['ed_hit'] for x in r)}/{len(r)}, {sum(x['es_hit'] for x in r)}/{len(r)}"
        lines.append(
            f"| {run['context']} | {2 * run['context'] + 1} | {run['steps']} | "
            f"{m('ed_ml'):.2f} ({m('ed_pct'):.1f}) | {m('es_ml'):.2f} ({m('es_pct'):.1f}) | "
            f"{m('ef_pp'):.2f} ({m('ef_bias'):+.2f}) | {hits} | "
            f"{m('smooth'):.4f} ({m('smooth_true'):.4f}) | "
            f"{m('dice'):.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/medseg_cine_bench"))
    parser.add_argument("--dims", type=int, choices=(2, 3), default=2)
    parser.add_argument("--minutes", type=float, default=10.0, help="cap per context")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per context")
    parser.add_argument("--size", type=int, default=48, help="2D+t: pixels per side (3 mm)")
    parser.add_argument("--train-cases", type=int, default=6)
    parser.add_argument("--test-cases", type=int, default=4)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--contexts", default="0,2")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    if args.dims == 2:
        shape, spacing = (args.size, args.size), (3.0, 3.0)
    else:
        shape, spacing = (8, 40, 40), (8.0, 2.5, 2.5)
    args.work.mkdir(parents=True, exist_ok=True)
    write_cine_dataset(
        args.work / "cine",
        num_cases=args.train_cases,
        frames=args.frames,
        shape=shape,
        spacing=spacing,
        noise_std=args.noise,
        seed=1,
        overwrite=True,
    )
    tests = [
        cine_phantom(args.frames, shape, spacing, seed=900_000 + i, noise_std=args.noise)
        for i in range(args.test_cases)
    ]
    runs = [run_context(args, args.work, int(k), tests) for k in args.contexts.split(",")]
    print(
        f"{args.dims}D+t cine phantoms, {args.frames} frames, noise {args.noise}, "
        f"{args.train_cases} training series (all frames labelled), {args.test_cases} held-out, "
        f"{args.steps} steps (cap {args.minutes} min) per context ({args.precision}, CPU), "
        f"fold all, shape {shape}, spacing {spacing} mm"
    )
    print(table(runs))
    (args.work / "cine_benchmark.json").write_text(json.dumps(runs, indent=2, default=float))


if __name__ == "__main__":
    sys.exit(main())
