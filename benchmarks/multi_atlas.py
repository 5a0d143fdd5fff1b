"""Benchmark: multi-atlas segmentation, affine against B-spline, on Montgomery and Hippocampus.

Run: ``.venv/bin/python benchmarks/multi_atlas.py [--sets montgomery_cxr,hippocampus]
[--atlases 30] [--k 7] [--cases 10] [--transforms affine,bspline] [--validation]``.

The split is ``medseg classic benchmark``'s: the cases sorted by id, the first 80 % train, the
rest are held out. ``--atlases`` training cases, evenly spread, are the atlases; the held-out
cases (the first ``--cases``) are evaluated, so no evaluated case is an atlas. With
``--validation`` the evaluated cases are instead training cases that are not atlases (the
ones between them): use that to choose settings, then run once on the held-out cases.

Each row: data set, transform, atlases, k, mean Dice over the labels (mean over cases) of the
majority-vote fusion, the median single atlas's Dice (the median over the k fused atlases,
each propagated alone: the best-ranked ones, so a stricter bar than the median of all),
seconds per case (every registration, ranking, propagation and fusion; ``--jobs`` at once),
seconds of one registration (atlas 0 to each case, alone, all threads; the median) and the
load average when the row ended. The machine is shared: read the times with the load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median

import numpy as np

from medseg.classic.atlas import fuse_labels, propagate_atlases
from medseg.classic.registration import propagate, register
from medseg.data.dataset import Dataset, load_dataset, read_case
from medseg.device import available_cpus
from medseg.io import Image
from medseg.pipeline.classic import mean_label_dice, split_cases

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: per data set: (max_size, mesh_mm), chosen on training cases (not atlases, not evaluated)
SETTINGS = {
    "montgomery_cxr": (256, 32.0),
    "hippocampus": (None, 16.0),
}


def _read(data: Dataset, case_id: str) -> tuple[Image, Image]:
    """A case's first channel and its label map."""
    image, label = read_case(data.case(case_id))
    assert label is not None  # split_cases keeps labelled cases only
    return image.with_array(image.channels_first()[0]), label


def _spread(ids: list[str], count: int) -> list[str]:
    """``count`` of ``ids``, evenly spaced (all of them when fewer)."""
    if count >= len(ids):
        return list(ids)
    return [ids[round(i * (len(ids) - 1) / max(1, count - 1))] for i in range(count)]


def _split(name: str, atlases: int, cases: int, validation: bool) -> tuple[list[str], list[str]]:
    train, held_out = split_cases(load_dataset(SHARED / name))
    atlas_ids = _spread(train, atlases)
    if validation:
        held_out = [case for case in train if case not in atlas_ids]
        held_out = _spread(held_out, cases)
    return atlas_ids, held_out[:cases]


def _fused_and_singles(labels: list[Image], reference: Image) -> tuple[float, float]:
    """Dice of the majority vote of ``labels`` and the median Dice of the labels alone."""
    fused = reference.with_array(fuse_labels(np.stack([label.array for label in labels])))
    return mean_label_dice(fused, reference), median(mean_label_dice(x, reference) for x in labels)


def _case(
    image: Image, reference: Image, pairs: list[tuple[Image, Image]], args: argparse.Namespace
) -> dict[str, tuple[float, float, float]]:
    """One evaluated case: ``{transform: (Dice, median single atlas Dice, seconds)}``.

    The B-spline row reuses the affine row's registrations, as ``propagate_atlases(...,
    transform="bspline")`` does itself: every atlas affine, ranked, the top k refined. Its
    seconds are the affine run's plus the refinement's.
    """
    start = time.perf_counter()
    ranked = propagate_atlases(
        image, pairs, k=args.k, transform="affine", jobs=args.jobs, **_options(args)
    )
    seconds = time.perf_counter() - start
    rows = {"affine": (*_fused_and_singles([a.label for a in ranked], reference), seconds)}
    if "bspline" in args.transforms:
        start = time.perf_counter()
        refine = dict(_options(args), transform="bspline", mesh_mm=args.mesh_mm)
        refine["threads"] = max(1, available_cpus() // args.jobs)
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(
                pool.map(
                    lambda a: register(image, pairs[a.index][0], initial=a.registration, **refine),
                    ranked,
                )
            )
        labels = [
            propagate(pairs[a.index][1], r.transform, image)
            for a, r in zip(ranked, results, strict=True)
        ]
        seconds += time.perf_counter() - start
        rows["bspline"] = (*_fused_and_singles(labels, reference), seconds)
    return rows


def _options(args: argparse.Namespace) -> dict[str, object]:
    return {"metric": args.metric, "max_size": args.max_size, "seed": 0}


def _one_registration(
    image: Image, atlas: Image, transform: str, args: argparse.Namespace
) -> float:
    """Seconds of one registration of ``atlas`` to ``image`` (all threads)."""
    start = time.perf_counter()
    register(image, atlas, transform=transform, mesh_mm=args.mesh_mm, **_options(args))
    return time.perf_counter() - start


def _run_set(name: str, args: argparse.Namespace) -> None:
    data = load_dataset(SHARED / name)
    atlas_ids, case_ids = _split(name, args.atlases, args.cases, args.validation)
    pairs = [_read(data, case) for case in atlas_ids]
    results: dict[str, list[tuple[float, float, float]]] = {}
    one: dict[str, list[float]] = {}
    for number, case in enumerate(case_ids):
        image, reference = _read(data, case)
        for transform, scores in _case(image, reference, pairs, args).items():
            results.setdefault(transform, []).append(scores)
            print(
                f"  {name} {case} {transform}: Dice {scores[0]:.3f}, {scores[2]:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            if number < args.timed:
                one.setdefault(transform, []).append(
                    _one_registration(image, pairs[0][0], transform, args)
                )
    for transform, scores in results.items():
        dice, single, seconds = np.mean(np.array(scores), axis=0)
        s_reg = f"{median(one[transform]):.2f}" if one.get(transform) else ""
        options = f"{args.metric}, max_size={args.max_size}, mesh {args.mesh_mm:g} mm"
        print(
            f"| {name} | {transform} | {len(pairs)} | {args.k} | {len(case_ids)} | {dice:.3f} | "
            f"{single:.3f} | {seconds:.1f} | {s_reg} | {os.getloadavg()[0]:.1f} | "
            f"{options}, jobs {args.jobs} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="montgomery_cxr,hippocampus")
    parser.add_argument("--transforms", default="affine,bspline")
    parser.add_argument("--atlases", type=int, default=20, help="training cases as atlases")
    parser.add_argument("--k", type=int, default=5, help="atlases fused (most similar)")
    parser.add_argument("--cases", type=int, default=8, help="evaluated cases")
    parser.add_argument("--jobs", type=int, default=2, help="atlases registered at once")
    parser.add_argument("--metric", default="mattes_mi")
    parser.add_argument("--max-size", type=int, default=None, help="default: per set")
    parser.add_argument("--mesh-mm", type=float, default=None, help="default: per set")
    parser.add_argument("--timed", type=int, default=2, help="cases timing one registration")
    parser.add_argument("--validation", action="store_true", help="evaluate non-atlas train")
    args = parser.parse_args()
    print(
        "| set | transform | atlases | k | cases | Dice | median single atlas Dice | s/case "
        "| s/registration | load | options |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for name in args.sets.split(","):
        if not (SHARED / name).is_dir():
            print(f"{name}: {SHARED / name} is absent; skipped")
            continue
        max_size, mesh_mm = SETTINGS[name]
        set_args = argparse.Namespace(**vars(args))
        set_args.max_size = args.max_size or max_size
        set_args.mesh_mm = args.mesh_mm or mesh_mm
        _run_set(name, set_args)


if __name__ == "__main__":
    main()
