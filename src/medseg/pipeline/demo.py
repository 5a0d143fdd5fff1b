"""``medseg demo``: the whole chain on generated phantoms (or any dataset) in a few CPU minutes.

phantoms -> check -> fingerprint -> plan -> preprocess -> train (fold 0, a fixed number of
steps) -> validate -> predict a held-out test set -> evaluate -> Otsu and multi-atlas
baselines -> report.

The demo trains a fixed number of steps (:data:`DEMO_EPOCHS` x :data:`DEMO_STEPS_PER_EPOCH`),
not for a time budget, so its Dice does not depend on how busy the machine is (a 4-minute
budget gave Dice 0.91 on a quiet 2-core CPU and 0.77 while another process shared it). The
time is an estimate instead: a few steps are timed first and logged as "about N min".

Writes ``OUT/report.html`` and ``OUT/summary.json`` (``mean_dice``, per-label means, the Otsu
and multi-atlas baselines on the same cases, steps, timings) and returns the summary.

The multi-atlas baseline registers :data:`DEMO_ATLASES` training cases to each evaluated case
(affine, SimpleITK) and fuses their labels by majority vote (``medseg.classic.multi_atlas``);
unlike Otsu it segments every label, so it has per-label Dice like the network.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.dataset import load_dataset
from medseg.data.phantoms import generate_dataset
from medseg.device import resolve_device
from medseg.errors import ConfigError, OverwriteError
from medseg.evaluation import evaluate_folders
from medseg.fileutil import write_json_atomic
from medseg.inference.predict import predict
from medseg.pipeline.demo_baselines import DEMO_ATLASES as DEMO_ATLASES  # noqa: F401
from medseg.pipeline.demo_baselines import (
    _multi_atlas_unseen,
    _otsu_baseline,
    _validation_ids,
)
from medseg.pipeline.steps import evaluate_cross_validation, train
from medseg.planning.calibrate import OVERHEAD, measure_step_seconds
from medseg.planning.plan import Plan
from medseg.planning.preprocessing import preprocess
from medseg.planning.steps import plan
from medseg.report import build_report as report
from medseg.transforms.preview import preview_dataset

log = logging.getLogger(__name__)

#: The demo's training length: 1,500 steps, about what its former 4-minute budget trained on a
#: quiet 2-core CPU (29 epochs of 50 steps at 0.16 s/step). Short epochs give the curves points.
DEMO_EPOCHS = 30
DEMO_STEPS_PER_EPOCH = 50


def _mean(summary: dict[str, Any], label: str) -> float:
    return float(summary["per_label"][label]["dice"]["mean"])


def run_demo(
    out: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    configuration: str = "2d",
    epochs: int = DEMO_EPOCHS,
    steps_per_epoch: int = DEMO_STEPS_PER_EPOCH,
    time_budget_s: float | None = None,
    num_cases: int = 24,
    device: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the demo into ``out`` (refuses a non-empty folder without ``overwrite``).

    Args:
        data: a dataset in the MSD/nnU-Net layout; None generates 3D phantoms (train set
            seed 0, a separate test set seed 1).
        configuration: which planned configuration to train.
        epochs, steps_per_epoch: the training length (the same on any machine).
        time_budget_s: optional cap in seconds; training then stops early on a slow or busy
            machine, and the Dice depends on it. None (default): no cap.
        num_cases: phantom training cases (the test set has a quarter, at least 4).

    Returns:
        The summary also written to ``OUT/summary.json``: ``mean_dice``, ``per_label_dice``,
        ``foreground_dice``, ``otsu_foreground_dice``, ``multi_atlas_mean_dice``,
        ``multi_atlas_per_label_dice``, ``multi_atlas_foreground_dice``, ``epochs``, ``steps``,
        ``seconds_per_step`` (measured before training), ``estimated_train_s``,
        ``timings_s``, ``total_s``, ``report``.

    Raises:
        ConfigError: ``epochs`` or ``steps_per_epoch`` below 1.
        OverwriteError: ``out`` is not empty and ``overwrite`` is False.
    """
    _check_training_length(epochs, steps_per_epoch)
    out = Path(out)
    _clear_previous_demo(out, overwrite=overwrite)
    start = time.perf_counter()
    data, test_root = _demo_data(out, data, num_cases)
    timings = {"data": time.perf_counter() - start}

    # what the network will see: a few cases, each with augmented versions and the label
    preview = preview_dataset(data, out / "augmentation_preview.png", overwrite=True)
    results = out / "results"
    configuration, plan_ = _plan_and_preprocess(data, results, configuration, progress, timings)

    # a fixed number of steps, so the result does not depend on the machine's load
    step_s, estimate_s = _estimate_training(plan_, epochs, steps_per_epoch, device)
    with _timed(timings, "train_validate"):
        trained = train(
            results,
            configuration,
            0,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            time_budget_s=time_budget_s,
            device=device,
            progress=progress,
        )
    # the phantoms' small lesions (several per case) are also scored lesion by lesion
    lesions = [name for name in ("lesion",) if name in load_dataset(data).foreground_labels]
    evaluate_cross_validation(results, configuration, lesion_labels=lesions or None)

    # Dice on cases the network has not seen, against the Otsu and multi-atlas baselines on
    # the same cases
    dice, evaluated_on = _evaluate_unseen(data, test_root, out, configuration, device, timings)
    summary = {
        **dice,
        "configuration": configuration,
        "evaluated_on": evaluated_on,
        **_training_summary(trained["fit"], step_s, estimate_s),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "total_s": round(time.perf_counter() - start, 1),
        "augmentation_preview": str(preview),
    }
    summary["report"] = _write_report(results, out, summary, preview)
    write_json_atomic(out / "summary.json", summary)
    return summary


def _check_training_length(epochs: int, steps_per_epoch: int) -> None:
    """Raise ConfigError for ``epochs`` or ``steps_per_epoch`` below 1."""
    if epochs < 1 or steps_per_epoch < 1:
        raise ConfigError(
            f"epochs and steps_per_epoch must be >= 1, got {epochs} and {steps_per_epoch}"
        )


def _clear_previous_demo(out: Path, *, overwrite: bool) -> None:
    """Make ``out``; a non-empty one only with ``overwrite``, which removes a previous demo's
    folders (and nothing else)."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OverwriteError(
                f"{out}: folder is not empty; pass --overwrite to replace the demo in it"
            )
        for name in (
            "phantoms",
            "phantoms_test",
            "results",
            "baseline",
            "baseline_multi_atlas",
            "test_predictions",
            "test_evaluation",
        ):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _demo_data(
    out: Path, data: str | os.PathLike[str] | None, num_cases: int
) -> tuple[Path, Path | None]:
    """The training dataset and the held-out test set: ``data`` and None, or for None 3D
    phantoms (``num_cases`` with seed 0, a quarter of them, at least 4, with seed 1)."""
    if data is not None:
        return Path(data), None
    train_root = generate_dataset(
        out / "phantoms", spatial_dims=3, num_cases=num_cases, seed=0, overwrite=True
    )
    test_root = generate_dataset(
        out / "phantoms_test",
        spatial_dims=3,
        num_cases=max(4, num_cases // 4),
        seed=1,
        overwrite=True,
    )
    return Path(train_root), test_root


def _plan_and_preprocess(
    data: Path, results: Path, configuration: str, progress: bool, timings: dict[str, float]
) -> tuple[str, Plan]:
    """Plan ``data`` into ``results`` and preprocess ``configuration`` (``2d`` where it was not
    planned), timed into ``timings``; the configuration and its plan."""
    plans = plan(data, results, overwrite=True, progress=progress)
    if configuration not in plans.configurations:
        configuration = "2d"
    with _timed(timings, "plan_preprocess"):
        preprocess(results, configurations=[configuration], progress=progress)
    return configuration, plans.configurations[configuration]


def _estimate_training(
    plan_: Plan, epochs: int, steps_per_epoch: int, device: str | None
) -> tuple[float, float]:
    """Seconds per step, timed on a few steps, and the estimated training time in seconds
    (plus validation and checkpoints, as the planner estimates them), which is logged."""
    step_s = measure_step_seconds(plan_, device=str(resolve_device(device)))
    estimate_s = epochs * steps_per_epoch * step_s / OVERHEAD
    log.info(
        "training %d epochs x %d steps at %.2f s/step: about %s",
        epochs,
        steps_per_epoch,
        step_s,
        _minutes(estimate_s),
    )
    return step_s, estimate_s


def _evaluate_unseen(
    data: Path,
    test_root: Path | None,
    out: Path,
    configuration: str,
    device: str | None,
    timings: dict[str, float],
) -> tuple[dict[str, Any], str]:
    """Dice per label and of the whole foreground, the Otsu baseline's foreground Dice and the
    multi-atlas baseline's Dice, on the held-out test set, else (a user's dataset) on the
    fold-0 validation cases (atlases: training cases of fold 0); and which cases those were.
    Predicting the test set and the multi-atlas baseline are timed into ``timings``."""
    dataset = load_dataset(data)
    labels = dict(sorted(dataset.foreground_labels.items(), key=lambda kv: kv[1]))
    regions = {
        **{name: (value,) for name, value in labels.items()},
        "foreground": tuple(labels.values()),
    }
    if test_root is not None:  # a held-out test set: predict it like a user would
        with _timed(timings, "predict_test"):
            evaluation, baseline = _evaluate_test_set(
                test_root, out, configuration, regions, device=device
            )
        evaluated_on = f"{evaluation['n_cases']} held-out test phantoms"
    else:  # a user's dataset: the fold-0 validation cases are the unseen ones
        evaluation, baseline = _evaluate_validation(data, out, configuration, regions)
        evaluated_on = f"{evaluation['n_cases']} fold-0 validation cases"
    with _timed(timings, "multi_atlas"):
        atlas, n_atlases = _multi_atlas_unseen(data, test_root, out, configuration, regions)
    per_label = {name: _mean(evaluation, name) for name in labels}
    atlas_per_label = {name: _mean(atlas, name) for name in labels}
    return {
        "mean_dice": float(np.nanmean(list(per_label.values()))),
        "per_label_dice": per_label,
        "foreground_dice": _mean(evaluation, "foreground"),
        "otsu_foreground_dice": _mean(baseline, "foreground"),
        "multi_atlas_mean_dice": float(np.nanmean(list(atlas_per_label.values()))),
        "multi_atlas_per_label_dice": atlas_per_label,
        "multi_atlas_foreground_dice": _mean(atlas, "foreground"),
        "multi_atlas_atlases": n_atlases,
    }, evaluated_on


def _evaluate_test_set(
    test_root: Path,
    out: Path,
    configuration: str,
    regions: dict[str, tuple[int, ...]],
    *,
    device: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Predict the held-out test set with the trained model and evaluate it, and the Otsu
    baseline on it."""
    predict(
        test_root / "imagesTr",
        out / "test_predictions",
        out / "results",
        configurations=[configuration],
        mirror=False,
        overwrite=True,
        device=device,
    )
    evaluation = evaluate_folders(
        out / "test_predictions",
        test_root / "labelsTr",
        out / "test_evaluation",
        labels=regions,
        overwrite=True,
        jobs=1,
    )
    case_ids = [c.case_id for c in load_dataset(test_root).cases]
    return evaluation, _otsu_baseline(test_root, case_ids, out / "baseline", regions)


def _evaluate_validation(
    data: Path, out: Path, configuration: str, regions: dict[str, tuple[int, ...]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate the fold-0 validation predictions of ``data``, and the Otsu baseline on the
    same cases."""
    case_ids = _validation_ids(data, out, configuration)
    evaluation = evaluate_folders(
        out / "results" / configuration / "fold_0" / "validation",
        data / "labelsTr",
        out / "test_evaluation",
        labels=regions,
        overwrite=True,
        jobs=1,
        cases=case_ids,
    )
    return evaluation, _otsu_baseline(data, case_ids, out / "baseline", regions)


def _training_summary(fit: dict[str, Any], step_s: float, estimate_s: float) -> dict[str, Any]:
    """How long the network trained (``fit``: ``train``'s summary) and the time estimate."""
    return {
        "epochs": fit["epochs"],
        "steps": fit["steps"],
        "stopped_by": fit["stopped_by"],
        "seconds_per_step": round(step_s, 4),
        "estimated_train_s": round(estimate_s, 1),
    }


def _write_report(results: Path, out: Path, summary: dict[str, Any], preview: Path) -> str:
    """``OUT/report.html``: the pipeline report with the comparison and the preview added."""
    extra = [
        ("Demo: network vs Otsu and multi-atlas baselines", _comparison_html(summary)),
        (
            "Augmentation preview",
            _png_html(preview, "training cases (left) and augmented versions, label overlaid"),
        ),
    ]
    report(results, out=out / "report.html", overwrite=True, extra_sections=extra)
    return str(out / "report.html")


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Record the seconds the block takes as ``timings[name]``."""
    t = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - t


def _minutes(seconds: float) -> str:
    """'about' wording for an estimate: '40 s' under a minute, else whole minutes."""
    return f"{seconds:.0f} s" if seconds < 60 else f"{max(1, round(seconds / 60))} min"


def _png_html(path: Path, caption: str) -> str:
    import base64
    from html import escape

    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _comparison_html(summary: dict[str, Any]) -> str:
    from html import escape

    atlas = summary["multi_atlas_per_label_dice"]
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{value:.4f}</td><td>-</td><td>{atlas[name]:.4f}</td></tr>"
        for name, value in summary["per_label_dice"].items()
    )
    rows += (
        f"<tr><td>foreground (all labels)</td><td>{summary['foreground_dice']:.4f}</td>"
        f"<td>{summary['otsu_foreground_dice']:.4f}</td>"
        f"<td>{summary['multi_atlas_foreground_dice']:.4f}</td></tr>"
        f"<tr><td>mean over labels</td><td>{summary['mean_dice']:.4f}</td><td>-</td>"
        f"<td>{summary['multi_atlas_mean_dice']:.4f}</td></tr>"
    )
    return (
        f"<p>Evaluated on {escape(summary['evaluated_on'])}; "
        f"configuration {escape(summary['configuration'])}, "
        f"{summary['epochs']} epochs / {summary['steps']} steps.</p>"
        "<table><tr><th>label</th><th>U-Net Dice</th><th>Otsu Dice</th>"
        f"<th>multi-atlas Dice</th></tr>{rows}</table>"
        f"<p>Multi-atlas: {summary['multi_atlas_atlases']} training cases as atlases, affine "
        "registration (SimpleITK), majority-vote fusion; Otsu segments the whole foreground.</p>"
    )
