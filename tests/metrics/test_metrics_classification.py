"""Classification metrics against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.metrics import classification_metrics, confusion_matrix, roc_auc

skm = pytest.importorskip("sklearn.metrics")
RNG = np.random.default_rng(0)
Y_TRUE = RNG.integers(0, 4, 300)
Y_PRED = np.where(RNG.random(300) < 0.6, Y_TRUE, RNG.integers(0, 4, 300))
SCORES = RNG.dirichlet(np.ones(4), 300) + 0.5 * np.eye(4)[Y_TRUE]
SCORES /= SCORES.sum(axis=1, keepdims=True)


def test_confusion_matrix_matches_scikit_learn() -> None:
    np.testing.assert_array_equal(
        confusion_matrix(Y_TRUE, Y_PRED), skm.confusion_matrix(Y_TRUE, Y_PRED)
    )


def test_confusion_matrix_follows_the_given_label_order_for_strings() -> None:
    y_true, y_pred = ["cat", "dog", "dog"], ["dog", "dog", "cat"]
    ours = confusion_matrix(y_true, y_pred, labels=["dog", "cat"])
    np.testing.assert_array_equal(ours, skm.confusion_matrix(y_true, y_pred, labels=["dog", "cat"]))


def test_per_class_and_averaged_precision_recall_f1_match_scikit_learn() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED)
    for average in (None, "macro", "micro"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            Y_TRUE, Y_PRED, average=average, zero_division=np.nan
        )
        if average is None:
            ours = [
                [m["per_class"][str(k)][name] for k in range(4)]
                for name in ("precision", "recall", "f1")
            ]
            np.testing.assert_allclose(ours, [p, r, f], rtol=1e-12)
        else:
            ours = [m[average][name] for name in ("precision", "recall", "f1")]
            np.testing.assert_allclose(ours, [p, r, f], rtol=1e-12)


def test_specificity_and_npv_match_scikit_learns_one_vs_rest_matrices() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED)
    for k, ((tn, fp), (fn, _tp)) in enumerate(skm.multilabel_confusion_matrix(Y_TRUE, Y_PRED)):
        assert m["per_class"][str(k)]["specificity"] == pytest.approx(tn / (tn + fp))
        assert m["per_class"][str(k)]["npv"] == pytest.approx(tn / (tn + fn))


def test_accuracy_and_multiclass_mcc_match_scikit_learn() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(Y_TRUE, Y_PRED))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(Y_TRUE, Y_PRED))
    for k in range(4):
        binary = skm.matthews_corrcoef(Y_TRUE == k, Y_PRED == k)
        assert m["per_class"][str(k)]["mcc"] == pytest.approx(binary)


def test_one_vs_rest_macro_roc_auc_matches_scikit_learn() -> None:
    expected = skm.roc_auc_score(Y_TRUE, SCORES, multi_class="ovr", average="macro")
    assert roc_auc(Y_TRUE, SCORES) == pytest.approx(expected, rel=1e-12)
    assert classification_metrics(Y_TRUE, Y_PRED, y_score=SCORES)["roc_auc"] == pytest.approx(
        expected
    )


def test_binary_roc_auc_with_ties_matches_scikit_learn() -> None:
    y = RNG.integers(0, 2, 200)
    score = np.round(RNG.random(200) + 0.3 * y, 1)  # many ties
    assert roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score), rel=1e-12)
    assert roc_auc(y, np.stack([1 - score, score], axis=1)) == pytest.approx(
        skm.roc_auc_score(y, score)
    )


def test_roc_auc_is_nan_when_a_class_has_no_negative_sample() -> None:
    assert math.isnan(roc_auc([1, 1, 1], np.array([0.2, 0.5, 0.9]), labels=[0, 1]))


def test_a_class_never_predicted_has_nan_precision() -> None:
    m = classification_metrics([0, 1, 2], [0, 1, 1])
    assert math.isnan(m["per_class"]["2"]["precision"]) and m["per_class"]["2"]["recall"] == 0.0


def test_inputs_of_different_lengths_are_refused() -> None:
    with pytest.raises(ConfigError, match="equal length"):
        classification_metrics([0, 1], [0])
