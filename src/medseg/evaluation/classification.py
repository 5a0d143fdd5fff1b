"""Evaluate classifier predictions: the confusion matrix, per-class and macro metrics, ROC AUC.

Classification: accuracy, recall (sensitivity), precision (PPV), specificity, NPV, F1 and MCC
per class (one vs rest) and macro-averaged, the multi-class MCC, ROC AUC (one vs rest for
more than two classes) with the ROC curves drawn as a PNG, and the confusion matrix as a PNG.
Regression: MAE, RMSE, R^2 and Pearson's r per target.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.fileutil import atomic_path, check_writable, write_json_atomic
from medseg.inference.classify import ClassificationPrediction, read_predictions
from medseg.metrics.classification import classification_metrics, roc_auc, roc_curve


def classification_summary(prediction: ClassificationPrediction) -> dict[str, Any]:
    """The metrics of ``prediction`` (which must carry reference labels) as a JSON-ready dict."""
    if prediction.labels is None:
        raise ConfigError("the predictions have no reference labels to evaluate against")
    if prediction.task == "regression":
        return {
            "task": "regression",
            "n": len(prediction.ids),
            **regression_metrics(prediction.labels, prediction.scores),
        }
    k = len(prediction.class_names)
    result = classification_metrics(
        prediction.labels.tolist(),
        prediction.predicted.tolist(),
        labels=list(range(k)),
        y_score=prediction.scores,
    )
    names = dict(zip([str(i) for i in range(k)], prediction.class_names, strict=True))
    result["labels"] = prediction.class_names
    result["per_class"] = {names[key]: value for key, value in result["per_class"].items()}
    result["per_class_auc"] = {
        name: _auc(prediction.labels == i, prediction.scores[:, i])
        for i, name in enumerate(prediction.class_names)
    }
    return {"task": "classification", "n": len(prediction.ids), **result}


def regression_metrics(labels: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    """MAE, RMSE, R^2 and Pearson's r, per target column and averaged."""
    y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    p = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    if y.shape != p.shape:
        raise ConfigError(f"reference shape {y.shape} and prediction shape {p.shape} differ")
    err = p - y
    per = []
    for t in range(y.shape[1]):
        ss_tot = float(((y[:, t] - y[:, t].mean()) ** 2).sum())
        pearson = (
            float(np.corrcoef(y[:, t], p[:, t])[0, 1])
            if len(y) > 1 and y[:, t].std() and p[:, t].std()
            else math.nan
        )
        per.append(
            {
                "mae": float(np.abs(err[:, t]).mean()),
                "rmse": float(np.sqrt((err[:, t] ** 2).mean())),
                "r2": 1 - float((err[:, t] ** 2).sum()) / ss_tot if ss_tot else math.nan,
                "pearson": pearson,
            }
        )
    mean = {key: float(np.nanmean([row[key] for row in per])) for key in per[0]}
    return {**mean, "per_target": per}


def _auc(positive: np.ndarray, score: np.ndarray) -> float:
    if positive.all() or not positive.any():
        return math.nan
    return roc_auc(positive.astype(int), score, labels=[0, 1])


def evaluate_classification(
    predictions: str | os.PathLike[str] | ClassificationPrediction,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate a predictions table (CSV path or object) against its reference labels.

    Writes ``OUT/metrics.json`` and, for classification, ``OUT/confusion.png`` and
    ``OUT/roc.png`` (``OUT`` defaults to the CSV's folder).

    Raises:
        OverwriteError: ``metrics.json`` exists and ``overwrite`` is False.
        ConfigError: no reference labels in the table.
    """
    if isinstance(predictions, ClassificationPrediction):
        prediction, default_out = predictions, None
    else:
        prediction, default_out = read_predictions(predictions), Path(predictions).parent
    if out_dir is None and default_out is None:
        raise ConfigError("out_dir is needed when evaluating an in-memory prediction")
    out = Path(out_dir) if out_dir is not None else default_out
    assert out is not None
    target = check_writable(out / "metrics.json", overwrite=overwrite)
    summary = classification_summary(prediction)
    out.mkdir(parents=True, exist_ok=True)
    if prediction.task == "classification":
        plot_confusion(
            np.asarray(summary["confusion_matrix"]), prediction.class_names, out / "confusion.png"
        )
        plot_roc(prediction, out / "roc.png")
    write_json_atomic(target, _json_safe(summary))
    return summary


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(matrix: np.ndarray, names: list[str], path: Path) -> None:
    """The confusion matrix (rows: reference, columns: predicted) with counts, as a PNG."""
    plt = _pyplot()
    size = 1.2 + 0.55 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    top = matrix.max() if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            color="white" if value > top / 2 else "black",
        )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def plot_roc(prediction: ClassificationPrediction, path: Path) -> None:
    """ROC curves (one vs rest; the positive class only for two classes) with their AUC, as a
    PNG."""
    assert prediction.labels is not None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    classes = [1] if len(prediction.class_names) == 2 else range(len(prediction.class_names))
    for k in classes:
        positive = prediction.labels == k
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, prediction.scores[:, k])
        ax.plot(
            fpr,
            tpr,
            label=(
                f"{prediction.class_names[k]} (AUC {_auc(positive, prediction.scores[:, k]):.3f})"
            ),
        )
    ax.plot([0, 1], [0, 1], color="#999", linestyle=":")
    ax.set_xlabel("1 - specificity (FPR)")
    ax.set_ylabel("sensitivity (TPR)")
    ax.set_title("ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
