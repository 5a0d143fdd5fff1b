"""Dense CRF post-processing: Dice and HD95 with and without it (issue 23; a table, not a test).

For DRIVE (vessels) and Montgomery (lungs), a short medseg 2D model is trained through the
Python API (``plan``, ``preprocess``, ``train`` with a time budget, fold 0 of an evenly spaced
subset of cases), its validation cases are predicted with ``save_probabilities=True``
(no mirroring, no post-processing), and each softmax map is refined by
``medseg.inference.crf.dense_crf`` with the image. A second, classical probability map
(``--sources forest``): a 30-tree ``medseg.classic`` random forest fitted on (at most 8 of)
the fold's training cases, ``predict_proba`` on the same validation cases. Dice and HD95
(pixels: the files carry no spacing, 1 mm nominal) of the argmax are compared per case, mean
over the validation cases. DRIVE is scored inside its field of view (``fovTr``) as usual for
that set. Two CRF settings: dense_crf's defaults (with ``max_radius=4``) and a light one.

    .venv/bin/python benchmarks/crf.py --minutes 4 --cases 20
    .venv/bin/python benchmarks/crf.py --datasets montgomery --sources forest

Missing data folders are skipped with a message.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from choices import SHARED, say, subset_dataset  # noqa: E402

from medseg.data import load_dataset  # noqa: E402
from medseg.data.loader import list_cases  # noqa: E402
from medseg.inference.crf import dense_crf  # noqa: E402
from medseg.inference.predict import predict  # noqa: E402
from medseg.io import read_image  # noqa: E402
from medseg.metrics import hausdorff_distance  # noqa: E402
from medseg.pipeline import plan, preprocess, train  # noqa: E402
from medseg.planning.plan import Plans  # noqa: E402
from medseg.training import fold_cases, load_or_make_splits  # noqa: E402

DATASETS = {"drive": "drive", "montgomery": "montgomery_cxr"}
DEFAULTS = {"max_radius": 4}  # dense_crf's defaults: w 3 / 5, theta 3 / 10 px, beta 0.5
LIGHT = {"w_gaussian": 1.0, "theta_gamma_mm": 1.0, "w_bilateral": 2.0, "theta_alpha_mm": 3.0,
         "theta_beta": 0.5, "max_radius": 3}  # fmt: skip
SETTINGS = {"CRF defaults": DEFAULTS, "CRF light": LIGHT}  # 1 mm nominal pixels


def trained_results(name: str, work: Path, cases: int, minutes: float) -> tuple[Path, list[str]]:
    """Train fold 0 for ``minutes`` (once; reused when its checkpoint exists); returns the
    results folder and the validation case ids."""
    data = work / f"{name}_{cases}cases"
    subset_dataset(SHARED / DATASETS[name], data, cases)
    results = work / f"results_{name}"
    if not (results / "plans.json").is_file():
        plan(data, results, progress=False, jobs=1)
    preprocess(results, configurations=["2d"], jobs=1, progress=False)
    if not (results / "2d" / "fold_0" / "checkpoint_best.pt").is_file():
        say(f"{name}: training 2d fold 0 for {minutes:g} min")
        train(
            results,
            "2d",
            0,
            epochs=10_000,
            time_budget_s=minutes * 60,
            seed=0,
            validate=False,
            progress=False,
            num_workers=0,
        )
    store = (
        results / "preprocessed" / Plans.from_json(results / "plans.json")["2d"].store_configuration
    )
    _, val_ids = fold_cases(load_or_make_splits(results, list_cases(store)), 0)
    return results, sorted(val_ids)


def validation_probabilities(results: Path, val_ids: list[str], work: Path, name: str) -> Path:
    """Predict the validation cases with softmax maps saved (``CASE.npz``)."""
    ds = load_dataset(Plans.from_json(results / "plans.json").dataset_path)
    inputs = work / f"{name}_val_images"
    inputs.mkdir(exist_ok=True)
    for case in ds.cases:
        if case.case_id in val_ids:
            for path in case.image_paths:
                if not (inputs / path.name).exists():
                    (inputs / path.name).symlink_to(path.resolve())
    out = work / f"{name}_val_pred"
    if not out.is_dir() or len(list(out.glob("*.npz"))) < len(val_ids):
        predict(
            inputs,
            out,
            results,
            configurations=["2d"],
            folds=[0],
            mirror=False,
            save_probabilities=True,
            postprocess=False,
            device="cpu",
            overwrite=True,
        )
    return out


def scores(pred: np.ndarray, ref: np.ndarray, inside: np.ndarray) -> tuple[float, float]:
    p, r = (pred == 1) & inside, (ref == 1) & inside
    dice = 2 * (p & r).sum() / max(p.sum() + r.sum(), 1)
    return float(dice), hausdorff_distance(p, r, (1.0, 1.0), percentile=95.0)


def forest_probabilities(ds, val_ids: list[str], args: argparse.Namespace):
    """A classical probability map: a random forest (medseg.classic) fitted on the fold's
    training cases (at most ``args.forest_cases``), ``predict_proba`` per validation case."""
    from medseg.classic.forest import RandomForestSegmenter

    train_cases = [c for c in ds.cases if c.case_id not in val_ids][: args.forest_cases]
    images = [read_image(c.image_paths[0]) for c in train_cases]
    labels = [read_image(c.label_path) for c in train_cases]
    model = RandomForestSegmenter(30, max_voxels=60_000, max_depth=16, seed=0)
    model.fit(images, labels)
    return lambda case: model.predict_proba(read_image(case.image_paths[0]))


def evaluate_dataset(name: str, source: str, args: argparse.Namespace) -> list[str]:
    results, val_ids = trained_results(name, args.work, args.cases, args.minutes)
    ds = load_dataset(Plans.from_json(results / "plans.json").dataset_path)
    if source == "unet":
        pred_dir = validation_probabilities(results, val_ids, args.work, name)

        def probabilities_of(case):  # noqa: ANN001, ANN202
            path = pred_dir / f"{case.case_id}.npz"
            return np.load(path, allow_pickle=False)["probabilities"]

    else:
        probabilities_of = forest_probabilities(ds, val_ids, args)
    rows: dict[str, list[tuple[float, float, float]]] = {"without CRF": []}
    rows.update({label: [] for label in SETTINGS})
    for case in [c for c in ds.cases if c.case_id in val_ids]:
        probs = probabilities_of(case).astype(np.float32)
        image = read_image(case.image_paths[0]).channels_first().astype(np.float32)
        ref = read_image(case.label_path).array
        fov = SHARED / "drive" / "fovTr" / case.label_path.name
        inside = read_image(fov).array > 0 if name == "drive" and fov.is_file() else ref >= 0
        rows["without CRF"].append((*scores(probs.argmax(0), ref, inside), 0.0))
        for label, settings in SETTINGS.items():
            t0 = time.perf_counter()
            refined = dense_crf(
                probs, image, spacing=(1.0, 1.0), iterations=args.iterations, **settings
            )
            seconds = time.perf_counter() - t0
            rows[label].append((*scores(refined.argmax(0), ref, inside), seconds))
        say(
            f"{name} {source} {case.case_id}: "
            + ", ".join(f"{k} {v[-1][0]:.4f}" for k, v in rows.items())
        )
    lines = []
    for label, values in rows.items():
        dice = statistics.fmean(v[0] for v in values)
        hd = statistics.fmean(v[1] for v in values if np.isfinite(v[1]))
        secs = statistics.fmean(v[2] for v in values)
        lines.append(
            f"| {name} | {source} | {label} | {len(values)} | {dice:.4f} | {hd:.2f} | {secs:.1f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="drive,montgomery")
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per dataset")
    parser.add_argument("--cases", type=int, default=20, help="subset of cases (fold 0 of 5)")
    parser.add_argument("--iterations", type=int, default=5, help="mean-field iterations")
    parser.add_argument("--sources", default="unet,forest", help="unet and/or forest")
    parser.add_argument("--forest-cases", type=int, default=8, help="forest training cases")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medseg_crf_benchmark"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    lines = [
        "| dataset | probabilities | post-processing | cases | Dice | HD95 (px) | CRF s/case |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.datasets.split(","):
        if not (SHARED / DATASETS[name] / "dataset.json").is_file():
            say(f"{name}: {SHARED / DATASETS[name]} is absent; skipped")
            continue
        for source in args.sources.split(","):
            lines += evaluate_dataset(name, source, args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
