"""Does MRI-artefact augmentation buy robustness to motion? (issue 23, part D; a table).

The seeds (lecture 003) define robustness as the drop in performance under imaging artefacts.
On MSD Hippocampus this trains the standard medseg ``3d_fullres`` pipeline twice with the same
time budget and seed on the same training cases: once with the plan's default augmentation
(``nnunet_default``) and once with ``mri_artefacts`` (the same plus k-space motion, ghosting
and spikes at low probability; a ``-mri`` plan variant sharing the preprocessed cases); both
at once by default, so that both see the same machine load (``--sequential``: one after the
other). Then,
on held-out cases neither run saw, ``medseg.evaluation.robustness`` scores Dice clean and
under the ``motion`` perturbation (``medseg.transforms.degrade``) at ``--levels - 1``
severities, and optionally other perturbations (``--perturb motion,ghosting``).

    .venv/bin/python benchmarks/motion_robustness.py --budget 360 --train-cases 60 --cases 12
    .venv/bin/python benchmarks/motion_robustness.py --quick      # smoke: 2 x 20 s, 3 cases

Skips (exit 0, with a message) when ``/work/shared/data/hippocampus`` is absent. One torch
thread and no loader workers by default (the machine is shared). One budget and one seed per
arm: differences of a few Dice points are within run-to-run noise at these budgets.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustness import DATA, say, split_cases  # noqa: E402

VARIANT = "mri"


def _make_preset_available() -> None:
    """Until ``mri_artefacts`` is in the transform registry and the plan's presets (lead's
    files), add it for this process only."""
    from medseg.planning import choices, recipe
    from medseg.transforms import TRANSFORMS
    from medseg.transforms.presets_mri import mri_artefacts

    if "mri_artefacts" not in TRANSFORMS.names():
        TRANSFORMS.register("mri_artefacts", description="Preset: nnU-Net + MRI artefacts")(
            mri_artefacts
        )
    for module in (recipe, choices):
        if "mri_artefacts" not in module.AUGMENTATION_PRESETS:
            module.AUGMENTATION_PRESETS = (*module.AUGMENTATION_PRESETS, "mri_artefacts")


def train_arm(results: Path, arm: str, config: str, budget: float) -> None:
    from medseg.pipeline import train

    say(f"train {config} ({arm}) for {budget:.0f} s")
    out = train(
        results,
        config,
        "all",
        time_budget_s=budget,
        epochs=1000,
        num_workers=0,
        validate=False,
        progress=False,
        precision="fp32",
    )
    say(f"{arm}: {out['fit']['steps']} steps in {out['fit']['seconds']:.0f} s")


def train_both(data: Path, results: Path, budget: float, parallel: bool) -> dict[str, str]:
    """Plan (default + ``-mri`` variant), preprocess, train both arms (at the same time with
    ``parallel``, so both see the same machine load); returns arm -> configuration."""
    import multiprocessing

    from medseg.pipeline import plan, preprocess
    from medseg.planning.choices import PlanChoices

    arms = {"nnunet_default": "3d_fullres", "mri_artefacts": f"3d_fullres-{VARIANT}"}
    if not (results / "plans.json").is_file():
        say(f"plan + preprocess {data}")
        plan(data, results, progress=False, jobs=1)
        plan(
            data,
            results,
            choices=PlanChoices(augmentation="mri_artefacts"),
            variant=VARIANT,
            progress=False,
            jobs=1,
        )
        preprocess(results, configurations=list(arms.values()), jobs=1, progress=False)
    todo = {}
    for arm, config in arms.items():
        if any((results / config / "fold_all").glob("checkpoint_best.pt")):
            say(f"reusing {config}")
        else:
            todo[arm] = config
    if parallel:  # fork: the children inherit the preset registration of this process
        context = multiprocessing.get_context("fork")
        workers = [
            context.Process(target=train_arm, args=(results, arm, config, budget))
            for arm, config in todo.items()
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    else:
        for arm, config in todo.items():
            train_arm(results, arm, config, budget)
    return arms


def table(summaries: dict[str, dict]) -> list[str]:
    """Markdown: per arm and perturbation, Dice (mean ± std) per level and the drop."""
    first = next(iter(summaries.values()))
    entry = next(iter(first["perturbations"].values()))
    levels = len(entry["levels"])
    lines = [
        f"Dice (mean over labels, then mean ± std over {first['n_cases']} held-out cases); "
        "parameter in brackets",
        "| augmentation | perturbation | "
        + " | ".join(f"level {k}" for k in range(levels))
        + " | drop at the last level |",
        "|---" * (levels + 3) + "|",
    ]
    for arm, summary in summaries.items():
        for name, entry in summary["perturbations"].items():
            cells = [
                f"{e['labels']['all']['dice']['mean']:.3f} ± "
                f"{e['labels']['all']['dice']['std']:.3f} [{e['parameter']:.3g}]"
                for e in entry["levels"]
            ]
            drop = entry["levels"][-1]["labels"]["all"]["dice_drop"]
            lines.append(f"| {arm} | {name} | " + " | ".join(cells) + f" | {drop:.3f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/medseg_bench_motion"))
    parser.add_argument("--budget", type=float, default=360.0, help="Training seconds per arm.")
    parser.add_argument("--train-cases", type=int, default=60)
    parser.add_argument("--cases", type=int, default=12, help="Held-out cases.")
    parser.add_argument("--levels", type=int, default=4, help="Levels incl. the clean one.")
    parser.add_argument("--perturb", default="motion", help="Comma-separated perturbations.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the perturbations.")
    parser.add_argument(
        "--sequential", action="store_true", help="Train the arms one after the other."
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not (DATA / "dataset.json").is_file():
        print(f"skipped: {DATA} not found")
        return 0
    if args.quick:
        args.budget, args.cases, args.train_cases, args.levels = 20.0, 3, 10, 3
    torch.set_num_threads(args.threads)
    _make_preset_available()
    from medseg.evaluation.robustness import robustness

    data, held = split_cases(DATA, args.work, args.train_cases, args.cases)
    results = args.work / "results"
    arms = train_both(data, results, args.budget, parallel=not args.sequential)
    summaries = {}
    for arm, config in arms.items():
        t0 = time.perf_counter()
        summaries[arm] = robustness(
            results,
            held / "images",
            held / "labels",
            args.work / f"robustness_{arm}",
            perturbations=[p.strip() for p in args.perturb.split(",") if p.strip()],
            levels=args.levels,
            configurations=[config],
            seed=args.seed,
            mirror=False,
            device="cpu",
            overwrite=True,
        )
        say(f"{arm}: robustness in {time.perf_counter() - t0:.0f} s")
    print(
        f"\nHippocampus 3d_fullres, {args.train_cases} training cases, {args.budget:.0f} s of "
        f"training per arm ({args.threads} CPU thread(s) each, "
        f"{'one after the other' if args.sequential else 'both at once'}), "
        "no test-time mirroring"
    )
    print("\n".join(table(summaries)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
