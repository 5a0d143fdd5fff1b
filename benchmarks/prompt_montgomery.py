"""Box prompts on Montgomery lungs (issue 16; a table, not a test).

MedSAM's protocol on a CPU: a medseg 2D U-Net is trained (``--unet-budget``) on the
fine-tuning cases only, its encoder becomes the frozen image encoder of a promptable model,
and the prompt encoder and mask decoder are fine-tuned (``--prompt-budget``) on boxes from
the same cases (one object per lung: connected components). Held-out cases (the fine-tuning
run's ``split.json``) are scored with their exact boxes (Dice) and with simulated clicks
(Dice per click, NoC@85/90 on IoU).

Rows: SAM's interactive training (click and box steps, correction clicks with the previous
mask fed back, the IoU head trained) and MedSAM's boxes-only recipe; and SAM's zero-shot
column: the same model trained on 2D phantoms only (no lung ever seen), scored on the same
held-out lungs.

    .venv/bin/python benchmarks/prompt_montgomery.py --unet-budget 480 --prompt-budget 600
    .venv/bin/python benchmarks/prompt_montgomery.py --quick      # smoke: seconds per stage
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch
from choices import subset_dataset  # benchmarks/choices.py, beside this script

from medseg.data import load_dataset
from medseg.data.phantoms import generate_dataset
from medseg.pipeline import plan, preprocess, train
from medseg.prompt.evaluate import evaluate_prompt_model, run_split
from medseg.prompt.finetune import finetune_prompt, split_cases
from medseg.prompt.finetune_config import PromptConfig
from medseg.prompt.finetune_model import load_prompt_run

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def unet_results(data: Path, results: Path, budget: float) -> Path:
    """Plan, preprocess and train the 2d U-Net on every case of ``data`` (fold ``all``)."""
    if not (results / "2d" / "fold_all" / "checkpoint_best.pt").is_file():
        t0 = time.perf_counter()
        plan(data, results, progress=False, jobs=1)
        preprocess(results, configurations=["2d"], jobs=1, progress=False)
        train(results, "2d", "all", time_budget_s=budget, validate=False, progress=False)
        say(f"U-Net on {data.name}: {time.perf_counter() - t0:.0f} s (budget {budget:.0f} s)")
    return results


#: Fine-tuning recipes: SAM's interactive training (clicks and boxes, the default) and
#: MedSAM's (jittered boxes only).
RECIPES = {"interactive": {}, "medsam boxes": {"point_fraction": 0.0, "clicks": 0}}


def prompt_run(dataset: Path, encoder: Path, run: Path, budget: float, args, recipe: dict) -> Path:
    """Fine-tune the decoder on ``dataset``'s objects with ``encoder``'s frozen U-Net encoder."""
    if not (run / "checkpoint_best.pt").is_file():
        config = PromptConfig(
            **recipe,
            dataset=str(dataset),
            source="encoder",
            encoder=str(encoder),
            encoder_configuration="2d",
            image_size=(args.size, args.size),
            objects="component",
            epochs=1000,
            steps_per_epoch=args.steps,
            val_fraction=args.val_fraction,
            seed=args.seed,
        )
        shutil.rmtree(run, ignore_errors=True)
        result = finetune_prompt(config, run, time_budget_s=budget, progress=False)
        say(
            f"prompt decoder {run.name}: {result.steps} steps in {result.seconds:.0f} s, "
            f"best val Dice {result.best_metric:.3f}"
        )
    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--unet-budget", type=float, default=480.0, help="seconds")
    parser.add_argument("--prompt-budget", type=float, default=600.0, help="seconds")
    parser.add_argument("--size", type=int, default=256, help="prompt model input")
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/medseg_bench_prompt")
    parser.add_argument("--quick", action="store_true", help="smoke: 20 s per stage")
    args = parser.parse_args()
    if args.quick:
        args.unet_budget = args.prompt_budget = 20.0
        args.clicks = 3
    torch.set_num_threads(args.threads)
    source = SHARED / "montgomery_cxr"
    if not source.is_dir():
        raise SystemExit(f"{source} is absent")
    work = Path(args.work)
    ids = [c.case_id for c in load_dataset(source).cases]
    train_ids, val_ids = split_cases(ids, args.val_fraction, args.seed)
    say(f"Montgomery: {len(train_ids)} fine-tuning cases, {len(val_ids)} held out")
    lungs = work / "montgomery_train"
    subset_dataset(source, lungs, 0, case_ids=train_ids)
    phantoms = work / "phantoms2d"
    if not (phantoms / "dataset.json").is_file():
        generate_dataset(phantoms, spatial_dims=2, num_cases=60, seed=args.seed)
    rows = []
    for name, data, recipe in (
        ("Montgomery, interactive", lungs, "interactive"),
        ("Montgomery, MedSAM boxes", lungs, "medsam boxes"),
        ("phantoms only, interactive", phantoms, "interactive"),
    ):
        results = unet_results(data, work / f"results_{data.name}", args.unet_budget)
        run = work / f"prompt_{data.name}_{recipe.replace(' ', '_')}"
        prompt_run(data, results, run, args.prompt_budget, args, RECIPES[recipe])
        model, config = load_prompt_run(run)
        config = PromptConfig.from_dict({**config.to_dict(), "labels": [1]})
        summary = evaluate_prompt_model(
            model, config, source, case_ids=val_ids, max_clicks=args.clicks
        )
        rows.append((name, summary))
        say(f"{name}: box Dice {summary['box_dice']:.3f}, NoC@90 {summary.get('noc90')}")
        assert not set(run_split(run)["train"]) & set(val_ids)  # held-out lungs never trained
    print(
        f"\n| trained on | objects | box Dice | Dice @1/3/5/{args.clicks} clicks "
        "| NoC@85 | NoC@90 |"
    )
    print("|---|---|---|---|---|---|")
    for name, s in rows:
        dice = s.get("mean_dice", [])
        picks = "/".join(f"{dice[k - 1]:.3f}" for k in (1, 3, 5, args.clicks) if k <= len(dice))
        print(
            f"| {name} | {s['objects']} | {s['box_dice']:.3f} | {picks} | "
            f"{s.get('noc85', float('nan')):.2f} | {s.get('noc90', float('nan')):.2f} |"
        )
    print(
        f"\nU-Net budget {args.unet_budget:.0f} s, decoder budget {args.prompt_budget:.0f} s, "
        f"{args.size}^2 inputs, {args.threads} threads, seed {args.seed}"
    )


if __name__ == "__main__":
    main()
