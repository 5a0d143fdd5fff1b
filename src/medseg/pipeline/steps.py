"""Pipeline steps over a results folder (see ARCHITECTURE: the results folder layout).

``train`` is training plus the full-case validation of the fold: the best checkpoint predicts
every validation case in its original geometry (``<config>/fold_<k>/validation/``) and those
predictions are evaluated against the dataset's labels (``<config>/fold_<k>/evaluation/``);
``evaluate_cross_validation`` pools the folds into ``evaluation/<config>/``.

``prepare_cascade`` (``medseg.pipeline.cascade``, re-exported here) is the step between the two
cascade stages.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.data.cascade import check_previous_stage, load_previous
from medseg.data.dataset import load_dataset, read_case
from medseg.data.loader import list_cases
from medseg.device import resolve_device
from medseg.errors import ConfigError
from medseg.evaluation import evaluate_folders
from medseg.inference.postprocess import POSTPROCESSING_FILE, choose_postprocessing
from medseg.inference.predict import predict_case
from medseg.io import write_image
from medseg.pipeline.crf_choice import choose_crf_from_folds, save_validation_probabilities
from medseg.planning.plan import Plans
from medseg.training import (
    fit,
    fold_cases,
    fold_dir,
    load_or_make_splits,
    model_from_checkpoint,
)


def train(
    results: str | os.PathLike[str],
    configuration: str,
    fold: int | str = 0,
    *,
    precision: str | None = None,
    device: str | None = None,
    validate: bool = True,
    mirror: bool = False,
    progress: bool = True,
    save_probabilities: bool = False,
    **fit_options: Any,
) -> dict[str, Any]:
    """Train one fold (:func:`medseg.training.fit`), then predict and evaluate its validation
    cases.

    Args:
        precision: ``"bf16"`` or ``"fp32"`` autocast; None: the plan's decision
            (``medseg.planning.calibrate.decide_bf16``).
        device: ``cpu``, ``cuda`` or None (auto), for training and validation.
        validate: predict and evaluate the fold's validation cases after training.
        mirror: test-time mirroring in that validation.
        save_probabilities: also keep the validation softmax (``validation/probabilities/``),
            which :func:`evaluate_cross_validation` needs to decide a dense CRF.
        **fit_options: the rest of :func:`medseg.training.fit`'s options (``epochs``,
            ``steps_per_epoch``, ``time_budget_s``, ``resume``, ``num_workers``, ``seed``).

    Returns:
        ``{"fit": RunResult fields (``fold_dir`` for its ``run_dir``), "validation": summary dict
        or None}``.
    """
    results = Path(results)
    amp = None if precision is None else precision == "bf16"
    result = fit(
        results, configuration, fold, amp=amp, device=device, progress=progress, **fit_options
    )
    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 validates
    summary = None
    if validate and is_main:
        summary = validate_fold(
            results,
            configuration,
            fold,
            device=device,
            mirror=mirror,
            progress=progress,
            save_probabilities=save_probabilities,
        )
    fit_summary = {("fold_dir" if k == "run_dir" else k): v for k, v in result.__dict__.items()}
    return {"fit": fit_summary, "validation": summary}


def validate_fold(
    results: str | os.PathLike[str],
    configuration: str,
    fold: int | str,
    *,
    checkpoint: str = "best",
    device: str | None = None,
    mirror: bool = False,
    progress: bool = True,
    save_probabilities: bool = False,
) -> dict[str, Any]:
    """Predict the fold's validation cases in original geometry and evaluate them.

    A cascade stage is given each case's stored previous-stage prediction (``prepare_cascade``:
    made by the previous stage's model that held the case out, when that fold was trained).
    ``validation/uncertainty.csv`` holds each case's mean predictive entropy
    (``medseg.metrics.uncertainty.summarize_entropy``; the maps themselves are not written, so
    the folder holds label maps only). ``save_probabilities``: the softmax of each case as
    ``validation/probabilities/CASE.npz`` too (for :func:`evaluate_cross_validation`'s CRF).
    """
    # local: the rest of the module does not need them
    from medseg.fileutil import write_text_atomic
    from medseg.metrics.uncertainty import case_uncertainty, uncertainty_csv

    results = Path(results)
    plans = Plans.from_json(results / "plans.json")
    dataset = load_dataset(plans.dataset_path)
    store = results / "preprocessed" / plans[configuration].store_configuration
    _, val_ids = fold_cases(load_or_make_splits(results, list_cases(store)), fold)
    out = fold_dir(results, configuration, fold)
    model, plan_ = model_from_checkpoint(out / f"checkpoint_{checkpoint}.pt")
    previous = (
        check_previous_stage(results, configuration, plan_.previous_stage, val_ids)
        if plan_.previous_stage
        else None
    )
    dev = resolve_device(device)
    model.to(dev)
    pred_dir = out / "validation"
    pred_dir.mkdir(exist_ok=True)
    uncertainty_rows = []
    for case_id in val_ids:
        case = dataset.case(case_id)
        image, _ = read_case(case, num_channels=dataset.num_channels)
        segmentation = (
            load_previous(previous, case_id, mmap=False)[0] if previous is not None else None
        )
        probs, label = predict_case(
            [(model, plan_)], image, mirror=mirror, device=dev, previous_segmentation=segmentation
        )
        write_image(label, pred_dir / f"{case_id}{dataset.file_ending}", overwrite=True)
        if save_probabilities:
            save_validation_probabilities(pred_dir, case_id, probs, plan_, image)
        uncertainty_rows.append({"case": case_id, **case_uncertainty(probs, label.array)})
    write_text_atomic(pred_dir / "uncertainty.csv", uncertainty_csv(uncertainty_rows))
    return evaluate_folders(
        pred_dir,
        dataset.root / "labelsTr",
        out / "evaluation",
        cases=val_ids,
        labels=sorted(dataset.foreground_labels.values()),
        ignore_label=dataset.ignore_label,
        overwrite=True,
        jobs=1,
    )


def evaluate_cross_validation(
    results: str | os.PathLike[str],
    configuration: str,
    *,
    lesion_labels: Sequence[str] | None = None,
    crf: bool | dict[str, Any] = False,
) -> dict[str, Any]:
    """Pool the validation predictions of every trained fold into ``evaluation/<config>/``, and
    decide the post-processing (largest component per label where it does not lower the
    cross-validation Dice) into ``RESULTS/postprocessing.json``, which ``predict`` applies.

    ``lesion_labels``: dataset label names to also score lesion by lesion (``lesions.csv``;
    see ``evaluate_folders``), e.g. ``["lesion"]``; default none. ``crf``: also decide a dense
    CRF (True: ``dense_crf``'s defaults; a dict: its settings) on the folds' saved softmax
    (``train(..., save_probabilities=True)``); ``predict`` applies it when chosen."""
    results = Path(results)
    plans = Plans.from_json(results / "plans.json")
    dataset = load_dataset(plans.dataset_path)
    folds = sorted(p for p in (results / configuration).glob("fold_*/validation") if p.is_dir())
    with tempfile.TemporaryDirectory(dir=results) as tmp:
        cases = []
        for folder in folds:
            for path in folder.iterdir():
                if path.name.endswith(dataset.file_ending) and not path.name.startswith("."):
                    shutil.copyfile(path, Path(tmp) / path.name)
                    cases.append(path.name[: -len(dataset.file_ending)])
        labels = sorted(dataset.foreground_labels.values())
        lesion_values = None
        if lesion_labels:
            unknown = sorted(set(lesion_labels) - set(dataset.foreground_labels))
            if unknown:
                raise ConfigError(
                    f"lesion labels {', '.join(unknown)} are not in the dataset's labels "
                    f"({', '.join(dataset.foreground_labels)})"
                )
            lesion_values = [str(dataset.foreground_labels[name]) for name in lesion_labels]
        summary = evaluate_folders(
            tmp,
            dataset.root / "labelsTr",
            results / "evaluation" / configuration,
            cases=sorted(set(cases)),
            labels=labels,
            overwrite=True,
            jobs=1,
            lesion_wise=lesion_values is not None,
            lesion_options={"labels": lesion_values},
        )
        choose_postprocessing(
            tmp,
            dataset.root / "labelsTr",
            labels,
            out_path=results / POSTPROCESSING_FILE,
            ignore_label=dataset.ignore_label,
        )
    if crf:
        choose_crf_from_folds(results, configuration, dataset, crf)
    return summary
