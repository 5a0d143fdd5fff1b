"""Pipeline steps over a results folder (see ARCHITECTURE: the results folder layout).

``train`` is training plus the full-case validation of the fold: the best checkpoint predicts
every validation case in its original geometry (``<config>/fold_<k>/validation/``) and those
predictions are evaluated against the dataset's labels (``<config>/fold_<k>/evaluation/``);
``evaluate_cross_validation`` pools the folds into ``evaluation/<config>/``.

``prepare_cascade`` is the step between the two cascade stages: after the ``3d_lowres`` folds
are trained it predicts every training case with the lowres model of the fold that held the
case out, resampled to the full-resolution grid, into
``preprocessed/3d_cascade_fullres/<case>_prev.npy`` (what ``3d_cascade_fullres`` trains on).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from medseg.data.cascade import (
    PREVIOUS_STAGE_FILE,
    check_previous_stage,
    load_previous,
    previous_stage_dir,
    write_previous,
)
from medseg.data.dataset import load_dataset, read_case
from medseg.data.loader import list_cases
from medseg.device import resolve_device
from medseg.errors import ConfigError
from medseg.evaluation import evaluate_folders
from medseg.fileutil import check_writable, write_json_atomic
from medseg.inference.checkpoints import trained_folds
from medseg.inference.postprocess import POSTPROCESSING_FILE, choose_postprocessing
from medseg.inference.predict import next_stage_segmentation, predict_case
from medseg.inference.predict import predict as _predict
from medseg.io import write_image
from medseg.planning.plan import Plans
from medseg.planning.preprocessing import preprocess, preprocess_arrays
from medseg.planning.steps import plan
from medseg.report import build_report
from medseg.training import (
    fit,
    fold_cases,
    fold_dir,
    load_or_make_splits,
    model_from_checkpoint,
)

log = logging.getLogger(__name__)

__all__ = [
    "evaluate",
    "evaluate_cross_validation",
    "plan",
    "predict",
    "prepare_cascade",
    "preprocess",
    "report",
    "train",
    "validate_fold",
]

predict = _predict
evaluate = evaluate_folders
report = build_report


def train(
    results: str | os.PathLike[str],
    configuration: str,
    fold: int | str = 0,
    *,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    time_budget_s: float | None = None,
    resume: bool = False,
    device: str | None = None,
    num_workers: int | None = None,
    precision: str | None = None,
    validate: bool = True,
    mirror: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one fold, then predict and evaluate its validation cases.

    ``precision``: ``"bf16"`` or ``"fp32"`` autocast; None: the plan's decision
    (``medseg.planning.calibrate.decide_bf16``).

    Returns:
        ``{"fit": RunResult fields (``fold_dir`` for its ``run_dir``), "validation": summary dict
        or None}``.
    """
    results = Path(results)
    result = fit(
        results,
        configuration,
        fold,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        time_budget_s=time_budget_s,
        resume=resume,
        device=device,
        num_workers=num_workers,
        amp=None if precision is None else precision == "bf16",
        seed=seed,
        progress=progress,
    )
    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 validates
    summary = None
    if validate and is_main:
        summary = validate_fold(
            results, configuration, fold, device=device, mirror=mirror, progress=progress
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
) -> dict[str, Any]:
    """Predict the fold's validation cases in original geometry and evaluate them.

    A cascade stage is given each case's stored previous-stage prediction (``prepare_cascade``:
    made by the previous stage's model that held the case out, when that fold was trained).
    """
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
    for case_id in val_ids:
        case = dataset.case(case_id)
        image, _ = read_case(case, num_channels=dataset.num_channels)
        segmentation = (
            load_previous(previous, case_id, mmap=False)[0] if previous is not None else None
        )
        _, label = predict_case(
            [(model, plan_)], image, mirror=mirror, device=dev, previous_segmentation=segmentation
        )
        write_image(label, pred_dir / f"{case_id}{dataset.file_ending}", overwrite=True)
    return evaluate_folders(
        pred_dir,
        dataset.root / "labelsTr",
        out / "evaluation",
        cases=val_ids,
        labels=sorted(dataset.foreground_labels.values()),
        overwrite=True,
        jobs=1,
    )


def evaluate_cross_validation(
    results: str | os.PathLike[str], configuration: str
) -> dict[str, Any]:
    """Pool the validation predictions of every trained fold into ``evaluation/<config>/``, and
    decide the post-processing (largest component per label where it does not lower the
    cross-validation Dice) into ``RESULTS/postprocessing.json``, which ``predict`` applies."""
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
        summary = evaluate_folders(
            tmp,
            dataset.root / "labelsTr",
            results / "evaluation" / configuration,
            cases=sorted(set(cases)),
            labels=labels,
            overwrite=True,
            jobs=1,
        )
        choose_postprocessing(
            tmp, dataset.root / "labelsTr", labels, out_path=results / POSTPROCESSING_FILE
        )
        return summary


def prepare_cascade(
    results: str | os.PathLike[str],
    configuration: str = "3d_cascade_fullres",
    *,
    checkpoint: str = "best",
    mirror: bool = True,
    overlap: float = 0.5,
    device: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict every training case with the previous stage, for training a cascade stage.

    Each case is predicted by the previous stage's (``3d_lowres``) model of the fold where it
    was a validation case (``splits.json``), so the cascade trains on segmentations as
    imperfect as at test time (nnU-Net). A case whose fold is not trained falls back to fold
    ``all`` if trained, else to the lowest trained fold, with a warning (that model saw the
    case in training, so its segmentation is too good). The prediction is made on the
    previous stage's preprocessed case (``preprocessed/3d_lowres/``, else the dataset image
    preprocessed anew), its probabilities resampled linearly to the case's grid in the
    cascade's store (``preprocessed/3d_fullres/``), and the argmax written as
    ``preprocessed/<configuration>/<case>_prev.npy`` (int8 class indices, ``(1, *spatial)``),
    with ``previous_stage.json`` recording which fold and checkpoint made each case.

    Args:
        results: the results folder.
        configuration: the cascade stage (a plan with ``previous_stage``).
        checkpoint: ``"best"`` or ``"latest"`` previous-stage checkpoints.
        mirror, overlap, device: inference options (as ``predict``).
        overwrite: replace existing ``<case>_prev.npy`` files (checked before any work).

    Returns:
        ``{"folder", "cases", "folds" (fold -> number of cases), "fallback" (case ids)}``.

    Raises:
        ConfigError: the configuration is no cascade stage, or no previous-stage fold is trained.
        OverwriteError: a prediction exists and ``overwrite`` is False.
    """
    results = Path(results)
    plans = Plans.from_json(results / "plans.json")
    cascade = plans[configuration]
    if not cascade.previous_stage:
        raise ConfigError(f"{configuration} is not a cascade stage (no previous_stage in its plan)")
    stage = cascade.previous_stage
    low_plan = plans[stage]
    store = results / "preprocessed" / cascade.store_configuration
    low_store = results / "preprocessed" / low_plan.store_configuration
    case_ids = list_cases(store)
    splits = load_or_make_splits(results, case_ids)
    trained = trained_folds(results, stage, checkpoint)
    if not trained:
        raise ConfigError(
            f"{results / stage}: no fold has checkpoint_{checkpoint}.pt; "
            "train the previous stage first: "
            f"'medseg train {results} --config {stage} --fold K' for each fold (or --fold all)"
        )
    out = previous_stage_dir(results, cascade.configuration)
    for case_id in case_ids:
        check_writable(out / f"{case_id}_prev.npy", overwrite=overwrite)
    fallback_fold = "all" if "all" in trained else trained[0]
    assignment, fallback = {}, []
    for k, split in enumerate(splits):
        for case_id in split["val"]:
            assignment[case_id] = str(k) if str(k) in trained else fallback_fold
            if str(k) not in trained:
                fallback.append(case_id)
    if fallback:
        log.warning(
            "%s folds %s are not trained: %d case(s) are predicted by fold %s, which trained on "
            "them, so their segmentations are better than at test time: %s",
            stage,
            sorted({str(k) for k in range(len(splits))} - set(trained)),
            len(fallback),
            fallback_fold,
            ", ".join(fallback[:10]),
        )
    dataset = None
    dev = resolve_device(device)
    models: dict[str, Any] = {}
    checkpoints: dict[str, int] = {}
    out.mkdir(parents=True, exist_ok=True)
    for case_id in tqdm(case_ids, desc=f"prepare {configuration}", disable=not progress):
        fold = assignment[case_id]
        if fold not in models:
            path = fold_dir(results, stage, fold) / f"checkpoint_{checkpoint}.pt"
            model, plan_ = model_from_checkpoint(path)
            models[fold] = (model.to(dev), plan_)
            checkpoints[str(path.resolve())] = path.stat().st_mtime_ns
        props = json.loads((store / f"{case_id}.json").read_text(encoding="utf-8"))
        target = np.load(store / f"{case_id}.npy", mmap_mode="r").shape[1:]
        if (low_store / f"{case_id}.npy").is_file():
            array = np.load(low_store / f"{case_id}.npy")
            low_props = json.loads((low_store / f"{case_id}.json").read_text(encoding="utf-8"))
        else:  # the previous stage's store is gone: preprocess the case again
            dataset = dataset or load_dataset(plans.dataset_path)
            image, _ = read_case(dataset.case(case_id), num_channels=dataset.num_channels)
            array, _, low_props = preprocess_arrays(
                image.channels_first(), None, image.spacing, models[fold][1]
            )
        if (low_props.get("crop_start"), low_props.get("crop_stop")) != (
            props.get("crop_start"),
            props.get("crop_stop"),
        ):
            raise ConfigError(
                f"{case_id}: the {stage} and {cascade.store_configuration} stores cropped the case "
                "differently; preprocess both again"
            )
        segmentation = next_stage_segmentation(
            [models[fold]],
            array,
            target,
            separate_z=props.get("separate_z"),
            overlap=overlap,
            mirror=mirror,
            device=dev,
        )
        write_previous(out, case_id, segmentation, overwrite=True)
    counts = {
        fold: sum(1 for c in case_ids if assignment[c] == fold)
        for fold in sorted(set(assignment.values()))
    }
    write_json_atomic(
        out / PREVIOUS_STAGE_FILE,
        {
            "previous_stage": stage,
            "checkpoint": checkpoint,
            "mirror": mirror,
            "cases": assignment,
            "fallback": fallback,
            "checkpoints": checkpoints,
        },
    )
    return {"folder": str(out), "cases": len(case_ids), "folds": counts, "fallback": fallback}
