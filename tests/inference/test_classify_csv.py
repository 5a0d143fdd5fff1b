"""The predictions CSV: user-controlled ids and class names never become spreadsheet formulas,
and medseg reads back exactly what it wrote."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medseg.inference.classify import ClassificationPrediction, read_predictions, write_predictions


def test_formula_like_ids_and_class_names_are_quoted_and_read_back(tmp_path: Path) -> None:
    names = ['=HYPERLINK("http://x")', "+benign"]
    prediction = ClassificationPrediction(
        ["@case", "-2"],
        np.array([[0.9, 0.1], [0.2, 0.8]]),
        "classification",
        names,
        np.array([0, 1]),
    )
    path = write_predictions(prediction, tmp_path / "p.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    cells = [cell for row in rows[1:] for cell in row[:3]]
    assert all(not cell.startswith(("=", "+", "@")) for cell in cells)
    assert rows[2][0] == "-2"  # a number stays a number
    back = read_predictions(path)
    assert back.ids == ["@case", "-2"] and back.class_names == names
    np.testing.assert_array_equal(back.labels, [0, 1])


def test_negative_regression_targets_survive_the_round_trip(tmp_path: Path) -> None:
    prediction = ClassificationPrediction(
        ["a"], np.array([[-1.5, 2.0]]), "regression", [], np.array([[-1.5, 2.0]])
    )
    back = read_predictions(write_predictions(prediction, tmp_path / "r.csv"))
    np.testing.assert_allclose(back.labels, [[-1.5, 2.0]])
    np.testing.assert_allclose(back.scores, [[-1.5, 2.0]])
