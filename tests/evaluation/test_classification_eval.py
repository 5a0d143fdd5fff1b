"""Evaluating classifier predictions: values equal scikit-learn's; tables and figures written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.errors import ConfigError, OverwriteError
from medseg.evaluation.classification import evaluate_classification, regression_metrics
from medseg.inference.classify import ClassificationPrediction, read_predictions, write_predictions
from medseg.metrics.classification import roc_curve

sklearn = pytest.importorskip("sklearn.metrics")


def three_class_prediction(seed: int = 0, n: int = 90) -> ClassificationPrediction:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), labels] += 1.2
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return ClassificationPrediction(
        [f"c{i}" for i in range(n)], scores, "classification", ["a", "b", "c"], labels
    )


def test_metrics_equal_scikit_learn(tmp_path: Path) -> None:
    p = three_class_prediction()
    summary = evaluate_classification(p, tmp_path)
    y, yhat = p.labels, p.scores.argmax(1)
    assert summary["accuracy"] == pytest.approx(sklearn.accuracy_score(y, yhat))
    assert summary["mcc"] == pytest.approx(sklearn.matthews_corrcoef(y, yhat))
    assert summary["roc_auc"] == pytest.approx(
        sklearn.roc_auc_score(y, p.scores, multi_class="ovr")
    )
    recall = sklearn.recall_score(y, yhat, average=None)
    precision = sklearn.precision_score(y, yhat, average=None)
    for k, name in enumerate(["a", "b", "c"]):
        assert summary["per_class"][name]["recall"] == pytest.approx(recall[k])
        assert summary["per_class"][name]["precision"] == pytest.approx(precision[k])
        assert summary["per_class_auc"][name] == pytest.approx(
            sklearn.roc_auc_score(y == k, p.scores[:, k])
        )
    assert summary["macro"]["f1"] == pytest.approx(sklearn.f1_score(y, yhat, average="macro"))
    assert summary["confusion_matrix"] == sklearn.confusion_matrix(y, yhat).tolist()
    for name in ("metrics.json", "confusion.png", "roc.png"):
        assert (tmp_path / name).stat().st_size > 100
    with pytest.raises(OverwriteError):
        evaluate_classification(p, tmp_path)


def test_roc_curve_equals_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    positive = rng.random(300) < 0.3
    score = np.round(rng.random(300) + positive * 0.3, 2)  # ties included
    ours = roc_curve(positive, score)
    theirs = sklearn.roc_curve(positive, score, drop_intermediate=False)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b)


def test_predictions_csv_round_trips_and_evaluates_from_file(tmp_path: Path) -> None:
    p = three_class_prediction(seed=1, n=20)
    path = write_predictions(p, tmp_path / "pred.csv")
    back = read_predictions(path)
    assert back.ids == p.ids and back.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(back.labels, p.labels)
    np.testing.assert_allclose(back.scores, p.scores, rtol=1e-5)
    assert evaluate_classification(path)["n"] == 20
    assert (tmp_path / "metrics.json").is_file()
    with pytest.raises(OverwriteError):
        write_predictions(p, tmp_path / "pred.csv")


def test_bad_prediction_tables_are_named(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("name,score\na,1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="x.csv: not a medseg predictions table"):
        read_predictions(tmp_path / "x.csv")
    (tmp_path / "y.csv").write_text(
        "id,label,predicted,prob_a,prob_b\n1,z,a,0.6,0.4\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"labels \['z'\] are not among the classes"):
        read_predictions(tmp_path / "y.csv")
    unlabelled = ClassificationPrediction(
        ["1"], np.array([[0.4, 0.6]]), "classification", ["a", "b"], None
    )
    with pytest.raises(ConfigError, match="no reference labels"):
        evaluate_classification(unlabelled, tmp_path / "out")


def test_regression_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(5, 2, (50, 2))
    p = y + rng.normal(0, 0.5, (50, 2))
    m = regression_metrics(y, p)
    assert m["mae"] == pytest.approx(sklearn.mean_absolute_error(y, p))
    assert m["r2"] == pytest.approx(sklearn.r2_score(y, p))
    assert m["per_target"][0]["pearson"] == pytest.approx(np.corrcoef(y[:, 0], p[:, 0])[0, 1])
