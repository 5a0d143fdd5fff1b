"""Classification metrics: confusion matrix, per-class and averaged scores, ROC AUC.

Values match scikit-learn (``confusion_matrix``, ``precision_recall_fscore_support`` with
``zero_division=np.nan``, ``accuracy_score``, ``matthews_corrcoef``, ``roc_auc_score``),
with one convention difference: 0/0 is NaN here (scikit-learn's default turns it into 0
with a warning; its multi-class MCC returns 0 where it is undefined). Macro averages skip
NaN classes, as scikit-learn does with ``zero_division=np.nan``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.metrics import confusion as cm
from medseg.metrics.confusion import ConfusionCounts

#: Per-class (one-vs-rest) metrics, also averaged (macro) and pooled (micro).
CLASS_METRICS = ("accuracy", "precision", "recall", "specificity", "npv", "f1", "mcc")


def confusion_matrix(
    y_true: Sequence[Any], y_pred: Sequence[Any], *, labels: Sequence[Any] | None = None
) -> np.ndarray:
    """``(K, K)`` counts: row = true class, column = predicted class (scikit-learn layout).

    Args:
        y_true: ``(N,)`` true classes (ints or strings).
        y_pred: ``(N,)`` predicted classes.
        labels: class order; default the sorted union of both.

    Example:
        >>> confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2])
        array([[1, 0, 0],
               [0, 1, 1],
               [0, 0, 1]])
    """
    y_true, y_pred = _check(y_true, y_pred)
    classes = _classes(y_true, y_pred, labels)
    index = {c: i for i, c in enumerate(classes)}
    keep = np.array(
        [t in index and p in index for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True)],
        bool,
    )
    rows = np.array([index[t] for t in y_true[keep].tolist()], dtype=np.int64)
    cols = np.array([index[p] for p in y_pred[keep].tolist()], dtype=np.int64)
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (rows, cols), 1)
    return matrix


def one_vs_rest_counts(matrix: np.ndarray) -> list[ConfusionCounts]:
    """TP/FP/FN/TN of each class against all others, from a confusion matrix."""
    total = int(matrix.sum())
    counts = []
    for k in range(matrix.shape[0]):
        tp = int(matrix[k, k])
        fp, fn = int(matrix[:, k].sum()) - tp, int(matrix[k, :].sum()) - tp
        counts.append(ConfusionCounts(tp, fp, fn, total - tp - fp - fn))
    return counts


def multiclass_mcc(matrix: np.ndarray) -> float:
    """Gorodkin's multi-class MCC (scikit-learn's ``matthews_corrcoef``); NaN when undefined."""
    m = matrix.astype(float)
    t, p, c, s = m.sum(axis=1), m.sum(axis=0), np.trace(m), m.sum()
    den = math.sqrt(s * s - p @ p) * math.sqrt(s * s - t @ t)
    return float((c * s - t @ p) / den) if den else math.nan


def roc_auc(
    y_true: Sequence[Any], y_score: np.ndarray, *, labels: Sequence[Any] | None = None
) -> float:
    """Area under the ROC curve: binary, or one-vs-rest macro average for K > 2 classes.

    Args:
        y_true: ``(N,)`` true classes.
        y_score: ``(N,)`` scores of the second (positive) class for two classes, or
            ``(N, K)`` per-class scores (probabilities) in ``labels`` order.
        labels: class order; default the sorted classes of ``y_true``.

    Returns:
        The AUC (ties count 1/2, the Mann-Whitney statistic); NaN when a class has no
        positive or no negative sample (macro: the mean over the defined classes).

    Example:
        >>> roc_auc([0, 0, 1, 1], np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    y_true = np.asarray(y_true)
    classes = list(labels) if labels is not None else sorted(set(y_true.tolist()))
    score = np.asarray(y_score, dtype=float)
    if score.ndim == 2 and len(classes) == 2:
        score = score[:, 1]
    if score.ndim == 1:
        if len(classes) != 2:
            raise ConfigError(f"1-D scores need exactly 2 classes, got {len(classes)}: {classes}")
        return _binary_auc(y_true == classes[1], score)
    if score.shape != (y_true.size, len(classes)):
        raise ConfigError(
            f"y_score shape {score.shape} does not match ({y_true.size}, {len(classes)})"
        )
    per_class = [_binary_auc(y_true == c, score[:, k]) for k, c in enumerate(classes)]
    return float(np.nanmean(per_class)) if not np.all(np.isnan(per_class)) else math.nan


def roc_curve(
    positive: Sequence[bool], score: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points of one class against the rest: ``(fpr, tpr, thresholds)``, from (0, 0) to (1, 1).

    One point per distinct score (ties move both rates at once), thresholds decreasing with
    ``inf`` first, as scikit-learn's ``roc_curve(drop_intermediate=False)``.

    Example:
        >>> fpr, tpr, _ = roc_curve([False, False, True, True], [0.1, 0.4, 0.35, 0.8])
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    order = np.argsort(-score, kind="mergesort")
    score, positive = score[order], positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    tp = np.cumsum(positive)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    n_pos, n_neg = max(int(positive.sum()), 1), max(int((~positive).sum()), 1)
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    return fpr, tpr, np.r_[np.inf, score[last_of_tie]]


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    from scipy.stats import rankdata  # imported here: scipy.stats takes 0.25 s to import

    ranks = rankdata(score)  # average ranks for ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    labels: Sequence[Any] | None = None,
    y_score: np.ndarray | None = None,
) -> dict[str, Any]:
    """Confusion matrix, per-class, macro and micro metrics of a classifier.

    Args:
        y_true: ``(N,)`` true classes (ints or strings).
        y_pred: ``(N,)`` predicted classes.
        labels: class order; default the sorted union of both.
        y_score: optional scores for ROC AUC (see ``roc_auc``).

    Returns:
        ``{"labels", "confusion_matrix", "accuracy", "mcc", "per_class": {label:
        {CLASS_METRICS..., "support"}}, "macro": {...}, "micro": {...}, "roc_auc"}``.
        ``accuracy`` and ``mcc`` are the multi-class values; per-class metrics are one vs
        rest; ``macro`` is the NaN-skipping mean over classes, ``micro`` the metric of the
        summed one-vs-rest counts (micro precision = recall = F1 = accuracy). Class keys
        are strings. ``roc_auc`` is None without ``y_score``.

    Example:
        >>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1])
        >>> m["accuracy"], m["per_class"]["1"]["precision"], m["macro"]["recall"]
        (0.75, 0.6666666666666666, 0.75)
    """
    y_true, y_pred = _check(y_true, y_pred)
    classes = _classes(y_true, y_pred, labels)
    matrix = confusion_matrix(y_true, y_pred, labels=classes)
    counts = one_vs_rest_counts(matrix)
    per_class = {
        str(c): {**_scores(k), "support": int(matrix[i].sum())}
        for i, (c, k) in enumerate(zip(classes, counts, strict=True))
    }
    pooled = ConfusionCounts(
        *(sum(getattr(k, f) for k in counts) for f in ("tp", "fp", "fn", "tn"))
    )
    macro = {name: _nanmean([per_class[str(c)][name] for c in classes]) for name in CLASS_METRICS}
    total = matrix.sum()
    return {
        "labels": [str(c) for c in classes],
        "confusion_matrix": matrix.tolist(),
        "accuracy": float(np.trace(matrix) / total) if total else math.nan,
        "mcc": multiclass_mcc(matrix),
        "per_class": per_class,
        "macro": macro,
        "micro": _scores(pooled),
        "roc_auc": None if y_score is None else roc_auc(y_true, y_score, labels=classes),
    }


def _scores(c: ConfusionCounts) -> dict[str, float]:
    functions = {"accuracy": cm.accuracy, "precision": cm.precision, "recall": cm.recall,
                 "specificity": cm.specificity, "npv": cm.npv, "f1": cm.f1,
                 "mcc": cm.mcc}  # fmt: skip
    return {name: functions[name](c) for name in CLASS_METRICS}


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def _check(y_true: Sequence[Any], y_pred: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ConfigError(
            f"y_true and y_pred must be 1-D of equal length, got {y_true.shape} and {y_pred.shape}"
        )
    return y_true, y_pred


def _classes(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[Any] | None) -> list[Any]:
    if labels is not None:
        classes = list(labels)
        if not classes or len(set(classes)) != len(classes):
            raise ConfigError(f"labels must be unique and non-empty, got {classes}")
        return classes
    return sorted(set(y_true.tolist()) | set(y_pred.tolist()))


def validation_metrics(
    scores: np.ndarray, labels: np.ndarray, *, task: str, num_outputs: int
) -> dict[str, float]:
    """The metrics a classifier is validated on each epoch, from its predicted scores.

    Args:
        scores: ``(N, K)`` class probabilities (classification) or ``(N, T)`` values (regression).
        labels: ``(N,)`` class indices, or ``(N, T)`` targets.
        task: ``"classification"`` or ``"regression"``.
        num_outputs: ``K`` classes (or ``T`` targets).

    Returns:
        ``accuracy`` and ROC ``auc`` (NaN with fewer than two classes present; one-vs-rest
        macro for more than two classes, only when every class is present), or ``mae`` and
        ``rmse`` for regression.

    Example:
        >>> validation_metrics(np.array([[0.8, 0.2], [0.3, 0.7]]), np.array([0, 1]),
        ...                    task="classification", num_outputs=2)
        {'accuracy': 1.0, 'auc': 1.0}
    """
    if task == "regression":
        err = scores.reshape(len(scores), -1) - np.asarray(labels, dtype=np.float64).reshape(
            len(labels), -1
        )
        return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}
    labels = np.asarray(labels).reshape(-1)
    present = sorted(set(labels.tolist()))
    auc = math.nan
    if len(present) >= 2:
        if len(present) == num_outputs:
            auc = roc_auc(labels, scores, labels=list(range(num_outputs)))
        elif num_outputs == 2:
            auc = roc_auc(labels, scores[:, 1], labels=[0, 1])
    return {"accuracy": float((scores.argmax(1) == labels).mean()), "auc": float(auc)}


def selection_metric(metrics: dict[str, float], *, task: str) -> float:
    """Higher is better: AUC (accuracy where AUC is undefined), or minus MAE for regression.

    Example:
        >>> selection_metric({"accuracy": 0.9, "auc": float("nan")}, task="classification")
        0.9
    """
    if task == "regression":
        return -metrics["mae"]
    return metrics["auc"] if np.isfinite(metrics["auc"]) else metrics["accuracy"]
