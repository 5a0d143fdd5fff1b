"""Classifier inference: ensemble the folds of a run, write and read prediction tables.

A run folder holds ``fold_<k>/checkpoint_best.pt`` (cross-validation) or
``checkpoint_best.pt`` (one model). Class probabilities are averaged over the models
(softmax averaging, as segmentation ensembles), optionally with mirrored copies of each image.
The predictions CSV has one row per image: ``id``, ``label`` (the reference, when known),
``predicted`` and ``prob_<class>`` per class (``pred_<k>`` per target for regression).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.device import bf16_supported, resolve_device
from medseg.errors import ConfigError
from medseg.fileutil import atomic_path, check_writable, csv_restore, csv_safe
from medseg.planning.classifier import ClassifierConfig, score_images
from medseg.training.checkpoint import load_classifier


@dataclass(frozen=True)
class ClassificationPrediction:
    """Scores of ``N`` images: probabilities ``(N, K)`` or regression values ``(N, T)``."""

    ids: list[str]
    scores: np.ndarray
    task: str
    class_names: list[str]
    labels: np.ndarray | None = None  # the reference, when the data had it

    @property
    def predicted(self) -> np.ndarray:
        """Class index per image (classification) or the values (regression)."""
        return self.scores.argmax(1) if self.task == "classification" else self.scores


@torch.no_grad()
def predict_scores(
    model: nn.Module,
    images: np.ndarray,
    config: ClassifierConfig,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    amp: bool | None = None,
) -> np.ndarray:
    """Probabilities ``(N, K)`` (or regression values ``(N, T)``) for ``(N, C, *spatial)`` images.

    ``amp``: bf16 autocast (None: where the device supports it natively).
    """
    dev = torch.device(device)
    use_amp = bf16_supported(dev) if amp is None else amp
    return score_images(
        model, images, config, device=dev, use_bf16=use_amp, batch_size=batch_size
    ).numpy()


def find_classifier_checkpoints(run: str | os.PathLike[str], *, which: str = "best") -> list[Path]:
    """The checkpoints of a run folder (every fold), or the file itself.

    Raises:
        ConfigError: nothing found, saying what was looked for.
    """
    run = Path(run)
    if run.is_file():
        return [run]
    name = f"checkpoint_{which}.pt"
    found = sorted(run.glob(f"fold_*/{name}")) or ([run / name] if (run / name).is_file() else [])
    if not found:
        raise ConfigError(
            f"{run}: no {name} (in fold_*/ or the folder itself); train first with "
            f"`medseg classify train DATA -o {run}`"
        )
    return found


def predict_classification(
    run: str | os.PathLike[str] | list[Path],
    data: Any,
    *,
    device: str | None = None,
    mirror: bool = False,
    batch_size: int = 64,
) -> ClassificationPrediction:
    """Predict ``data`` (a ``ClassificationSet``) with every model of ``run``, averaged.

    Args:
        run: run folder, checkpoint file, or a list of checkpoint files.
        mirror: also predict mirrored copies along every spatial axis and average (off by
            default: left and right matter in anatomy).

    Raises:
        ConfigError: models of different tasks/classes in one ensemble, or images that do not
            match the models (channels, or the size a ViT was built for).
    """
    paths = list(run) if isinstance(run, list) else find_classifier_checkpoints(run)
    dev = resolve_device(device)
    total: np.ndarray | None = None
    first: ClassifierConfig | None = None
    for path in paths:
        model, config, _ = load_classifier(path)
        if first is None:
            first = config
            check_images(data.images, config, source=str(path))
        elif (config.task, config.num_outputs, config.class_names) != (
            first.task,
            first.num_outputs,
            first.class_names,
        ):
            raise ConfigError(
                f"{path}: a model of another task or class list than {paths[0]}; cannot ensemble"
            )
        model.to(dev)
        views = [data.images]
        if mirror:
            views += [np.flip(data.images, axis=a).copy() for a in range(2, data.images.ndim)]
        for images in views:
            scores = predict_scores(model, images, config, device=dev, batch_size=batch_size)
            total = scores if total is None else total + scores
    assert total is not None and first is not None
    scores = total / (len(paths) * (1 + (data.images.ndim - 2 if mirror else 0)))
    labels = None if data.labels is None else np.asarray(data.labels)
    return ClassificationPrediction(
        list(data.ids), scores, first.task, list(first.class_names), labels
    )


def check_images(images: np.ndarray, config: ClassifierConfig, *, source: str) -> None:
    """Raise a ConfigError when ``(N, C, *spatial)`` images do not fit the model of ``source``."""
    if images.ndim != 2 + config.spatial_dims:
        raise ConfigError(
            f"{source}: the model is {config.spatial_dims}D, "
            f"the images have shape {images.shape[1:]}"
        )
    if images.shape[1] != config.in_channels:
        raise ConfigError(
            f"{source}: the model takes {config.in_channels} channel(s), the images have "
            f"{images.shape[1]}"
        )
    if config.network == "vit" and tuple(images.shape[2:]) != tuple(config.image_shape):
        raise ConfigError(
            f"{source}: the ViT was built for images of {tuple(config.image_shape)}, these are "
            f"{tuple(images.shape[2:])}; resample them first"
        )


def write_predictions(
    prediction: ClassificationPrediction, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write the predictions CSV atomically (refusing to replace a file without ``overwrite``)."""
    target = check_writable(path, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    regression = prediction.task == "regression"
    columns = (
        [f"pred_{k}" for k in range(prediction.scores.shape[1])]
        if regression
        else [f"prob_{name}" for name in prediction.class_names]
    )
    with atomic_path(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "predicted", *columns])
        for i, case in enumerate(prediction.ids):
            label = (
                "" if prediction.labels is None else _label_text(prediction.labels[i], prediction)
            )
            predicted = "" if regression else prediction.class_names[int(prediction.predicted[i])]
            # ids and class names are the user's: never a formula when a spreadsheet opens the file
            writer.writerow(
                [
                    csv_safe(case),
                    csv_safe(label),
                    csv_safe(predicted),
                    *(f"{v:.6g}" for v in prediction.scores[i]),
                ]
            )
    return target


def _label_text(label: Any, prediction: ClassificationPrediction) -> str:
    if prediction.task == "regression":
        return " ".join(f"{v:.6g}" for v in np.atleast_1d(label))
    return prediction.class_names[int(label)]


def read_predictions(path: str | os.PathLike[str]) -> ClassificationPrediction:
    """Read a predictions CSV written by :func:`write_predictions`.

    Raises:
        ConfigError: missing file, or not a medseg predictions table (says which column is missing).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: predictions file not found")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [
            {k: csv_restore(v) if k in ("id", "label", "predicted") else v for k, v in row.items()}
            for row in csv.DictReader(handle)
        ]
    if not rows:
        raise ConfigError(f"{path}: no predictions in the file")
    columns = list(rows[0])
    for needed in ("id", "label", "predicted"):
        if needed not in columns:
            raise ConfigError(f"{path}: not a medseg predictions table (no '{needed}' column)")
    probs = [c for c in columns if c.startswith("prob_")]
    preds = [c for c in columns if c.startswith("pred_")]
    if not probs and not preds:
        raise ConfigError(f"{path}: no prob_<class> or pred_<k> columns")
    task = "classification" if probs else "regression"
    names = [c[len("prob_") :] for c in probs]
    scores = np.array([[float(r[c]) for c in probs or preds] for r in rows], dtype=np.float64)
    labels: np.ndarray | None = None
    if all(r["label"] != "" for r in rows):
        if task == "classification":
            index = {n: k for k, n in enumerate(names)}
            unknown = sorted({r["label"] for r in rows} - set(index))
            if unknown:
                raise ConfigError(f"{path}: labels {unknown} are not among the classes {names}")
            labels = np.array([index[r["label"]] for r in rows])
        else:
            labels = np.array([[float(v) for v in r["label"].split()] for r in rows])
    return ClassificationPrediction([r["id"] for r in rows], scores, task, names, labels)
