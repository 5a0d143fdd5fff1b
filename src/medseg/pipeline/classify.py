"""Classification steps, one function per ``medseg classify`` command.

``classify_train`` trains one model (validated on the data's ``val`` split, or on a stratified
fifth held out of ``train``) or ``folds`` cross-validation models, then predicts and evaluates
the ``test`` split when the data has one (an ensemble of the folds) and writes the report.
The run folder::

    RUN/run.json  report.html  test_predictions.csv
    RUN/fold_<k>/{config.json, checkpoint_latest.pt, checkpoint_best.pt, log.csv, curves.png}
    RUN/evaluation/<test|validation|cross_validation>/{metrics.json, confusion.png, roc.png}
    RUN/explain/*.png

``classify_explain`` lives in ``medseg.pipeline.explain`` and is re-exported here.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.classification import (
    ClassificationSet,
    available_splits,
    load_classification,
    stratified_folds,
)
from medseg.data.phantoms_classification import (
    classification_phantom_arrays,
    make_classification_phantoms,
)
from medseg.device import resolve_device
from medseg.errors import ConfigError, OverwriteError
from medseg.evaluation.classification import evaluate_classification
from medseg.fileutil import check_writable, write_json_atomic
from medseg.inference.classify import (
    ClassificationPrediction,
    find_classifier_checkpoints,
    predict_classification,
    write_predictions,
)
from medseg.pipeline.explain import classify_explain, gradcam_localisation
from medseg.planning.classifier import config_for
from medseg.report.classification import build_classification_report
from medseg.training import RunResult, fit_classifier, load_classifier
from medseg.training.checkpoint import load_checkpoint
from medseg.training.transfer import read_state_dict

log = logging.getLogger(__name__)

#: Segmentation-plan options that the ``unet_encoder`` classifier shares with the U-Net.
_ENCODER_OPTIONS = (
    "features",
    "kernel_sizes",
    "strides",
    "blocks_per_stage",
    "residual",
    "downsample",
    "norm",
    "act",
)


def _fold_assignment(data: ClassificationSet, folds: int, seed: int) -> np.ndarray:
    if data.folds is not None and len(np.unique(data.folds)) == folds:
        return data.folds
    if data.task == "classification":
        return stratified_folds(data.labels, folds, seed=seed)
    return np.random.default_rng(seed).permutation(len(data)) % folds


def _encoder_config_from(pretrained: str) -> dict[str, Any]:
    """The U-Net options of a medseg segmentation checkpoint, for ``unet_encoder``."""
    plan = load_checkpoint(pretrained, kind="weights", what="pretrained weights").get("plan")
    if not plan:
        return {}
    config = plan.get("network_config", {})
    return {k: v for k, v in config.items() if k in _ENCODER_OPTIONS}


def classify_train(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    network: str = "resnet18",
    network_config: dict[str, Any] | None = None,
    task: str | None = None,
    pretrained: str | None = None,
    freeze: str = "none",
    backbone_lr_factor: float | None = None,
    folds: int = 1,
    epochs: int = 30,
    time_budget_s: float | None = None,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    augmentation: str = "light",
    class_weighting: str = "sampler",
    loss: str = "auto",
    resume: bool = False,
    device: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, then predict and evaluate the test split if there is one; returns a summary.

    Args:
        data: a class-folder dataset, a CSV or a MedMNIST ``.npz`` (``medseg.data.classification``).
        out: the run folder.
        network: a classifier from ``medseg nets list``.
        pretrained: weights to start from (medseg checkpoint or state dict; see
            ``medseg.training.transfer``).
        freeze: ``"backbone"`` trains the head only.
        backbone_lr_factor: the backbone's learning rate relative to the head's; default 0.1
            when fine-tuning pretrained weights, else 1.
        folds: 1 = one model; k > 1 = k-fold cross-validation on the train split.
        epochs: per model; an upper bound with ``time_budget_s``.
        time_budget_s: total training time, shared equally by the folds.
        loss: ``auto`` (cross-entropy; MSE for regression; the margin loss for ``capsnet``),
            ``ce``, ``mse``, ``l1`` or ``margin``.
    """
    started = time.perf_counter()
    out = Path(out)
    train_all = load_classification(data, "train", task=task)  # type: ignore[arg-type]
    splits = available_splits(data)
    if folds < 1:
        raise ConfigError(f"folds must be >= 1, got {folds}")
    options = {  # the config fields shared by every fold (each adds its seed)
        **_transfer_options(network, network_config, pretrained, freeze, backbone_lr_factor),
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "augmentation": augmentation,
        "class_weighting": class_weighting,
        "loss": loss,
    }
    plans, validation_kind = _fold_plans(data, train_all, splits, folds, seed)

    # train each fold and predict its validation images
    budget = None if time_budget_s is None else time_budget_s / len(plans)
    fit_options = dict(time_budget_s=budget, resume=resume, device=device, progress=progress)
    results, predictions = [], []
    for k, train_set, val_set in plans:
        config = config_for(train_set, network, seed=seed + k, **options)
        fit = fit_classifier(train_set, val_set, out / f"fold_{k}", config, **fit_options)
        results.append(_fold_summary(k, fit, train_set, val_set))
        predictions.append(predict_classification(out / f"fold_{k}", val_set, device=device))

    # evaluate the pooled validation predictions and the test split, then report
    summary = _run_summary(data, network, train_all, results, time_budget_s, epochs, device)
    merged = _concatenate(predictions)
    summary[validation_kind] = _evaluate(merged, out / "evaluation" / validation_kind)
    if "test" in splits:
        summary["test"] = _evaluate_test(data, out, train_all.task, device)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(out / "run.json", summary)
    summary["report"] = str(build_classification_report(out, overwrite=True))
    return summary


def _transfer_options(
    network: str,
    network_config: dict[str, Any] | None,
    pretrained: str | None,
    freeze: str,
    backbone_lr_factor: float | None,
) -> dict[str, Any]:
    """The config fields of fine-tuning: a ``unet_encoder`` takes the U-Net options of its
    pretrained checkpoint (``network_config`` overrides them), the pretrained file is checked
    before any training, and by default the backbone learns 10 times slower than the head when
    pretrained weights are fine-tuned (``freeze="none"``)."""
    network_config = dict(network_config or {})
    if pretrained and network == "unet_encoder":
        network_config = {**_encoder_config_from(pretrained), **network_config}
    if pretrained:
        read_state_dict(pretrained)  # fail now, before any training, if the file is unusable
    if backbone_lr_factor is None:
        backbone_lr_factor = 0.1 if pretrained and freeze == "none" else 1.0
    return {
        "network_config": network_config,
        "pretrained": pretrained,
        "freeze": freeze,
        "backbone_lr_factor": backbone_lr_factor,
    }


def _fold_plans(
    data: str | os.PathLike[str],
    train_all: ClassificationSet,
    splits: list[str],
    folds: int,
    seed: int,
) -> tuple[list[tuple[int, ClassificationSet, ClassificationSet]], str]:
    """``(fold, train, validation)`` sets and the evaluation they make: one model validated
    on the ``val`` split (or a stratified fifth of ``train``), or ``folds`` cross-validation
    models."""
    if folds > 1:
        assignment = _fold_assignment(train_all, folds, seed)
        plans = [
            (k, train_all.subset(assignment != k), train_all.subset(assignment == k))
            for k in range(folds)
        ]
        return plans, "cross_validation"
    if "val" in splits:
        return [(0, train_all, load_classification(data, "val", task=train_all.task))], "validation"
    held = _fold_assignment(train_all, 5, seed) == 0
    return [(0, train_all.subset(~held), train_all.subset(held))], "validation"


def _fold_summary(
    k: int, fit: RunResult, train_set: ClassificationSet, val_set: ClassificationSet
) -> dict[str, Any]:
    """One fold's line in ``run.json``."""
    return {
        "fold": k,
        "epochs": fit.epochs,
        "steps": fit.steps,
        "seconds": round(fit.seconds, 1),
        "best_metric": fit.best_metric,
        "stopped_by": fit.stopped_by,
        "train_images": len(train_set),
        "val_images": len(val_set),
    }


def _run_summary(
    data: str | os.PathLike[str],
    network: str,
    train_all: ClassificationSet,
    folds: list[dict[str, Any]],
    time_budget_s: float | None,
    epochs: int,
    device: str | None,
) -> dict[str, Any]:
    """The head of ``run.json``: what was trained, how long, on which device."""
    return {
        "data": str(data),
        "network": network,
        "task": train_all.task,
        "folds": folds,
        "budget": f"{time_budget_s:.0f} s" if time_budget_s else f"{epochs} epochs",
        "device": str(resolve_device(device)),
        "class_names": train_all.class_names,
    }


def _evaluate_test(
    data: str | os.PathLike[str], out: Path, task: str, device: str | None
) -> dict[str, Any]:
    """Predict the ``test`` split with the ensemble of the run's folds and evaluate it."""
    test = load_classification(data, "test", task=task)  # type: ignore[arg-type]
    prediction = predict_classification(out, test, device=device)
    write_predictions(prediction, out / "test_predictions.csv", overwrite=True)
    return _evaluate(prediction, out / "evaluation" / "test")


def _concatenate(predictions: list[ClassificationPrediction]) -> ClassificationPrediction:
    first = predictions[0]
    labels = (
        None
        if any(p.labels is None for p in predictions)
        else np.concatenate([p.labels for p in predictions])
    )
    return ClassificationPrediction(
        [i for p in predictions for i in p.ids],
        np.concatenate([p.scores for p in predictions]),
        first.task,
        first.class_names,
        labels,
    )


def _evaluate(prediction: ClassificationPrediction, folder: Path) -> dict[str, Any]:
    """Evaluate into ``folder`` (the run's own output, so replaced on a rerun); the headline
    numbers."""
    summary = evaluate_classification(prediction, folder, overwrite=True)
    keys = (
        ("accuracy", "roc_auc", "mcc")
        if summary["task"] == "classification"
        else ("mae", "rmse", "r2")
    )
    headline = {k: summary.get(k) for k in keys}
    if summary["task"] == "classification":
        headline["macro_recall"] = summary["macro"]["recall"]
    headline["n"] = summary["n"]
    return headline


def classify_predict(
    run: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str = "test",
    mirror: bool = False,
    device: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Predict ``split`` of ``data`` with the run's models (an ensemble of its folds); writes a
    CSV."""
    target = check_writable(out, overwrite=overwrite)
    config = load_classifier(find_classifier_checkpoints(run)[0])[1]
    images = load_classification(data, split, task=config.task)  # type: ignore[arg-type]
    prediction = predict_classification(run, images, device=device, mirror=mirror)
    return write_predictions(prediction, target, overwrite=overwrite)


def classify_evaluate(
    predictions: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Metrics of a predictions CSV (written next to it, or into ``out``)."""
    return evaluate_classification(predictions, out, overwrite=overwrite)


def classify_report(run: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """(Re)write ``RUN/report.html``."""
    return build_classification_report(run, overwrite=overwrite)


def classify_demo(
    out: str | os.PathLike[str],
    *,
    network: str = "resnet18",
    spatial_dims: int = 2,
    n_per_class: int = 150,
    epochs: int = 8,
    time_budget_s: float | None = None,
    device: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Classification end to end on generated phantoms (lesion present / absent).

    Makes ``OUT/data`` (``make_classification_phantoms``), trains ``network`` into ``OUT/run``,
    evaluates the test split, writes Grad-CAM overlays and measures how much of the Grad-CAM
    mass of lesion images falls inside the lesion (dilated by 2 pixels; the phantoms know where
    it is) against the lesion's share of the image, then the report. Returns the run summary
    with ``localisation``.
    """
    out = Path(out)
    if (out / "run").exists() and not overwrite:
        raise OverwriteError(f"{out / 'run'}: already exists; pass --overwrite to replace the demo")
    if overwrite and (out / "run").exists():
        shutil.rmtree(out / "run")
    data = out / "data"
    make_classification_phantoms(
        data, n_per_class=n_per_class, spatial_dims=spatial_dims, seed=0, overwrite=overwrite
    )
    summary = classify_train(
        data,
        out / "run",
        network=network,
        epochs=epochs,
        time_budget_s=time_budget_s,
        device=device,
        progress=progress,
    )
    classify_explain(out / "run", data, out=out / "run" / "explain", count=8, device=device)
    test, masks = classification_phantom_arrays(
        n_per_class, spatial_dims=spatial_dims, seed=0, split="test", return_masks=True
    )
    lesion = np.flatnonzero(test.labels == 1)[:40]  # up to 40 images with a lesion
    summary["localisation"] = gradcam_localisation(
        out / "run", test.images[lesion], masks[lesion], device=device
    )
    write_json_atomic(out / "run" / "run.json", summary)
    summary["report"] = str(build_classification_report(out / "run", overwrite=True))
    write_json_atomic(out / "summary.json", summary)
    return summary
