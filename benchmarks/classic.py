"""Benchmark: the classical baselines (``medseg classic benchmark``) on the shared data sets.

Run: ``.venv/bin/python benchmarks/classic.py [--out DIR] [--quick] [--only hippocampus,drive]``
(about 10 min on 2 quiet cores, most of it multi-atlas registration of the 512^2 Montgomery
images; ``--quick`` evaluates 2 cases per set). For each data set in ``../shared/data`` (a set
that is absent is skipped) and for 3D phantoms generated on the fly, runs
``classic_benchmark`` with the methods the issue names for it and prints its table: Dice,
HD95 (mm), seconds per case, and for multi-atlas the median single atlas's Dice.

- Hippocampus (3D MRI, 2 labels): multi-atlas (affine, top 5 of the atlases), forest, level
  set, region growing, graph cut, Otsu.
- Montgomery (2D CXR, lungs): multi-atlas, forest, graph cut, Otsu.
- DRIVE (2D fundus, vessels, green channel): Otsu, forest; plus the second observer against
  the first on the 20 test images (the human row).
- ISBI 2012 EM (2D, membranes): Otsu, forest.
- Phantoms (3D, organ / lesion / vessel): every method.

The split is the benchmark's: the first 80 % of the sorted cases train (atlases, forest;
``--train-cases`` of them, evenly spread), the following ``--cases`` are evaluated. Rows
marked * use oracle seeds / contours from the reference (an upper bound for a user's clicks).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from medseg.pipeline.classic import classic_benchmark, format_table

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: (folder, methods, channel, evaluated cases, training cases, method options)
SETS: list[tuple[str, list[str], int, int, int, dict[str, dict[str, Any]]]] = [
    (
        "hippocampus",
        ["otsu", "region_grow", "graph_cut", "level_set", "multi_atlas", "forest"],
        0,
        4,
        10,
        {},
    ),
    ("montgomery_cxr", ["otsu", "graph_cut", "multi_atlas", "forest"], 0, 2, 5, {}),
    ("drive", ["otsu", "forest"], 1, 3, 6, {}),
    ("isbi2012_em", ["otsu", "forest"], 0, 3, 6, {}),
]
FOREST = {"n_estimators": 30}


def _human_row_drive(root: Path, out: Path) -> dict[str, Any] | None:
    """DRIVE's second observer scored against the first on the test images (vessel Dice)."""
    from medseg.evaluation import evaluate_folders

    second = root / "labelsTs_2nd_observer"
    if not second.is_dir():
        return None
    summary = evaluate_folders(
        second, root / "labelsTs", out / "drive_second_observer", labels={"vessel": 1}, jobs=1
    )
    stats = summary["per_label"]["vessel"]
    return {
        "dice": stats["dice"]["mean"],
        "hd95_mm": stats["hd95"]["mean"],
        "n": summary["n_cases"],
    }


def _phantoms(out: Path, quick: bool) -> Path:
    from medseg.data.phantoms import generate_dataset

    return generate_dataset(
        out / "phantoms3d", spatial_dims=3, num_cases=8 if quick else 12, seed=0, overwrite=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: temp)")
    parser.add_argument("--quick", action="store_true", help="2 evaluated cases per set")
    parser.add_argument("--only", default=None, help="comma-separated set names to run")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="classic_benchmark_"))
    only = set(args.only.split(",")) if args.only else None
    sets = [(name, SHARED / name, *rest) for name, *rest in SETS]
    if only is None or "phantoms" in only:
        phantoms = _phantoms(out, args.quick)
        sets.append(
            (
                "phantoms",
                phantoms,
                ["otsu", "region_grow", "graph_cut", "level_set", "multi_atlas", "forest"],
                0,
                3,
                8,
                {},
            )
        )
    for name, root, methods, channel, cases, train_cases, options in sets:
        if only is not None and name not in only:
            continue
        if not root.is_dir():
            print(f"{name}: {root} is absent; skipped")
            continue
        start = time.perf_counter()
        table = classic_benchmark(
            root,
            out / name,
            methods=methods,
            cases=2 if args.quick else cases,
            train_cases=train_cases,
            channel=channel,
            method_options={"forest": FOREST, **options},
            overwrite=True,
        )
        print(format_table(table))
        if name == "drive":
            human = _human_row_drive(root, out)
            if human is not None:
                print(
                    f"human (2nd observer vs 1st, {human['n']} test images): vessel Dice "
                    f"{human['dice']:.4f}, HD95 {human['hd95_mm']:.2f} mm\n"
                )
        print(f"({name}: {time.perf_counter() - start:.0f} s; outputs in {out / name})\n")


if __name__ == "__main__":
    main()
