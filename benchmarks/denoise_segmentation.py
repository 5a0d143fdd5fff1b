"""Dice of a fixed segmentation model on clean, noisy and denoised Hippocampus volumes.

The split of ``benchmarks/denoise.py`` (sorted case ids: the last ``--test-volumes`` are the
test set, the ``--train-volumes`` before them the training set). A ``3d_fullres`` medseg model
(``medseg.pipeline``: plan, preprocess, train fold ``all`` for ``--seg-budget`` seconds, fp32,
no loader workers) learns from the **clean** training volumes and their labels; it is then
fixed and predicts each test volume in four versions:

* ``clean``: the original volume;
* ``noisy``: Rician noise of sigma = 5 % of the volume's ``max - min``, the same fixed draw as
  ``benchmarks/denoise.py --dims 3`` (``noisy_copy(clean, (10_000 + i, 0))``);
* ``nlm``: 3D scikit-image non-local means of the noisy volume (``patch_size=5``,
  ``patch_distance=6``, ``fast_mode``, ``h = k sigma_est``; ``k`` from ``--nlm-h``, the best
  mean PSNR among them when several are given: default 0.5, the oracle choice of the 3D
  denoising benchmark);
* ``medseg``: the denoiser of ``--denoiser`` (a run folder of ``medseg enhance train`` or
  ``benchmarks/denoise.py --dims 3 --out``), whole-volume inference (``--flips``: 8 flips).

Each version is written as NIfTI with the original geometry, predicted with
``medseg.inference.predict`` (no mirroring, the default postprocessing) and scored per label
(Dice of labels 1 = anterior and 2 = posterior against the reference labels, mean and standard
deviation over the test volumes). PSNR/SSIM of each version (data range: each clean volume's
``max - min``) are printed too.

    .venv/bin/python benchmarks/denoise_segmentation.py --denoiser /tmp/dn3d/supervised \
        --seg-budget 420          # trains the segmentation model into --work first
    .venv/bin/python benchmarks/denoise_segmentation.py --denoiser RUN --results RESULTS

One torch thread by default (the machine is shared). Skips (exit 0) without the data.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from denoise import DATA, noisy_copy, scores  # benchmarks/denoise.py, same folder

VERSIONS = ("clean", "noisy", "nlm", "medseg")
LABELS = {1: "anterior", 2: "posterior"}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def split(train_volumes: int, test_volumes: int) -> tuple[list, list]:
    from medseg.data.dataset import load_dataset

    cases = load_dataset(DATA).cases
    first = len(cases) - test_volumes
    return cases[first - train_volumes : first], cases[first:]


def training_folder(cases: list, work: Path) -> Path:
    """A dataset folder of symlinks to the training cases (images and labels)."""
    data = work / "train_data"
    if (data / "dataset.json").is_file():
        return data
    shutil.rmtree(data, ignore_errors=True)
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir(parents=True)
    for case in cases:
        for path in case.image_paths:
            (data / "imagesTr" / path.name).symlink_to(path)
        (data / "labelsTr" / case.label_path.name).symlink_to(case.label_path)
    meta = json.loads((DATA / "dataset.json").read_text(encoding="utf-8"))
    for key in ("training", "test", "numTest"):
        meta.pop(key, None)
    meta["numTraining"] = len(cases)
    (data / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return data


def train_segmentation(data: Path, results: Path, budget: float) -> str:
    """Plan, preprocess and train ``3d_fullres`` fold ``all`` (reused when trained)."""
    from medseg.pipeline import plan, preprocess, train

    fold = results / "3d_fullres" / "fold_all"
    if (fold / "checkpoint_best.pt").is_file():
        say(f"reusing the segmentation model in {results}")
        with open(fold / "log.csv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        seconds = sum(float(r["epoch_seconds"]) for r in rows)
        return f"reused: {rows[-1]['step']} steps in {seconds:.0f} s"
    say(f"plan + preprocess {data}")
    plan(data, results, progress=False, jobs=1)
    preprocess(results, configurations=["3d_fullres"], jobs=1, progress=False)
    say(f"train 3d_fullres fold all for {budget:.0f} s")
    out = train(
        results,
        "3d_fullres",
        "all",
        time_budget_s=budget,
        epochs=1000,
        num_workers=0,
        validate=False,
        progress=False,
        precision="fp32",
    )
    fit = out["fit"]
    note = f"{budget:.0f} s budget, {fit['steps']} steps in {fit['seconds']:.0f} s"
    say(f"trained: {note}")
    return note


def nlm_volumes(noisy: list[np.ndarray], clean: list[np.ndarray], ks: list[float]) -> tuple:
    """3D NLM of every noisy volume with the best ``k`` of ``ks`` (mean PSNR)."""
    from skimage.restoration import denoise_nl_means, estimate_sigma

    best: tuple = ()
    for k in ks:
        outputs = []
        for image in noisy:
            sigma = float(estimate_sigma(image))
            outputs.append(
                denoise_nl_means(
                    image, h=k * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6
                ).astype(np.float32)
            )
        p = scores(clean, outputs)[0]
        say(f"NLM h = {k} sigma_est: PSNR {p:.2f}")
        if not best or p > best[1]:
            best = (outputs, p, k)
    return best[0], best[2]


def medseg_volumes(run: Path, noisy: list[np.ndarray], flips: bool) -> list[np.ndarray]:
    from medseg.enhance import denoise_array, load_denoiser

    model, config = load_denoiser(run)
    return [denoise_array(model, config, v[None], mirror=flips)[0] for v in noisy]


def write_versions(cases: list, arrays: dict[str, list[np.ndarray]], work: Path) -> None:
    """``work/inputs/<version>/<image file name>`` with the original geometry."""
    from medseg.data.dataset import read_case
    from medseg.io import write_image

    for i, case in enumerate(cases):
        image, _ = read_case(case)
        for version, volumes in arrays.items():
            array = volumes[i][None].astype(np.float32)
            target = work / "inputs" / version / case.image_paths[0].name
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(dataclasses.replace(image, array=array), target, overwrite=True)


def dice_table(cases: list, work: Path) -> dict[str, dict[int, list[float]]]:
    """Dice per label per version (one value per test case)."""
    from medseg.io import read_image

    table: dict[str, dict[int, list[float]]] = {}
    for version in VERSIONS:
        table[version] = {label: [] for label in LABELS}
        for case in cases:
            reference = np.asarray(read_image(case.label_path).array)
            name = case.label_path.name
            predicted = np.asarray(read_image(work / "predictions" / version / name).array)
            for label in LABELS:
                a, b = predicted == label, reference == label
                total = int(a.sum() + b.sum())
                table[version][label].append(2 * float((a & b).sum()) / total if total else 1.0)
    return table


def table_lines(
    clean: list[np.ndarray],
    arrays: dict[str, list[np.ndarray]],
    table: dict[str, dict[int, list[float]]],
) -> list[str]:
    """The Markdown table: PSNR/SSIM, Dice per label (mean ± std over cases), and the paired
    change of each case's mean Dice against the noisy input (mean ± std, cases better,
    Wilcoxon signed-rank p)."""
    from scipy.stats import wilcoxon

    lines = [
        "| input | PSNR (dB) | SSIM | Dice anterior | Dice posterior | mean Dice | "
        "paired change vs noisy (cases better, Wilcoxon p) |",
        "|---|---|---|---|---|---|---|",
    ]
    case_mean = {v: np.mean([table[v][label] for label in LABELS], axis=0) for v in VERSIONS}
    for version in VERSIONS:
        p, s = scores(clean, arrays[version]) if version != "clean" else (float("inf"), 1.0)
        per = [np.array(table[version][label]) for label in LABELS]
        cells = " | ".join(f"{d.mean():.4f} ± {d.std():.4f}" for d in per)
        change = "-"
        delta = case_mean[version] - case_mean["noisy"]
        if version != "noisy" and np.any(delta):
            change = (
                f"{delta.mean():+.4f} ± {delta.std(ddof=1):.4f} ({int((delta > 0).sum())}/"
                f"{len(delta)}, p = {wilcoxon(delta).pvalue:.3f})"
            )
        lines.append(
            f"| {version} | {p:.2f} | {s:.4f} | {cells} | {case_mean[version].mean():.4f} | "
            f"{change} |"
        )
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--denoiser", type=Path, required=True, help="a 3D denoiser run folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medseg_denoise_segmentation"))
    parser.add_argument("--results", type=Path, default=None, help="reuse a segmentation model")
    parser.add_argument("--seg-budget", type=float, default=420.0, help="training seconds")
    parser.add_argument("--train-volumes", type=int, default=100)
    parser.add_argument("--test-volumes", type=int, default=12)
    parser.add_argument("--nlm-h", type=float, nargs="+", default=[0.5])
    parser.add_argument("--flips", action="store_true", help="denoiser: average 8 flips")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-only", action="store_true", help="train the model and stop")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if not (DATA / "dataset.json").is_file():
        print(f"skipped: {DATA} not found")
        return 0
    torch.set_num_threads(args.threads)
    from medseg.inference import predict

    train_cases, test_cases = split(args.train_volumes, args.test_volumes)
    results = args.results or args.work / "results"
    note = train_segmentation(training_folder(train_cases, args.work), results, args.seg_budget)
    if args.train_only:
        return 0
    from medseg.data.dataset import read_case

    clean = [read_case(c)[0].array[0].astype(np.float32) for c in test_cases]
    noisy = [noisy_copy(c, (10_000 + i, 0)) for i, c in enumerate(clean)]
    start = time.perf_counter()
    nlm, k = nlm_volumes(noisy, clean, args.nlm_h)
    say(f"NLM: {(time.perf_counter() - start) / len(clean) / len(args.nlm_h):.1f} s / volume")
    arrays = {
        "clean": clean,
        "noisy": noisy,
        "nlm": nlm,
        "medseg": medseg_volumes(args.denoiser, noisy, args.flips),
    }
    write_versions(test_cases, arrays, args.work)
    for version in VERSIONS:
        say(f"predict {version}")
        predict(
            args.work / "inputs" / version,
            args.work / "predictions" / version,
            results,
            mirror=False,
            device="cpu",
            overwrite=True,
        )
    table = dice_table(test_cases, args.work)
    print(
        f"\nHippocampus 3D, {len(test_cases)} test volumes; segmentation model 3d_fullres on "
        f"{len(train_cases)} clean training volumes ({note}); NLM h = {k} sigma_est; "
        f"denoiser {args.denoiser}{' + 8 flips' if args.flips else ''}\n"
    )
    print("\n".join(table_lines(clean, arrays, table)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
