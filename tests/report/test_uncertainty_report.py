"""Report sections: does uncertainty flag the failures (Spearman with Dice), and robustness."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from medseg.evaluation.folders import json_safe
from medseg.evaluation.robustness_summary import summarize_robustness
from medseg.metrics.uncertainty import uncertainty_csv
from medseg.report.uncertainty import (
    robustness_html,
    uncertainty_correlation,
    uncertainty_html,
)

CONFIG = "3d_fullres"


def _write_uncertainty(results: Path, entropies: dict[str, float]) -> None:
    rows = [
        {"case": c, "mean_entropy": e, "foreground_entropy": 2 * e, "foreground_voxels": 10}
        for c, e in entropies.items()
    ]
    path = results / CONFIG / "fold_0" / "validation" / "uncertainty.csv"
    path.write_text(uncertainty_csv(rows), encoding="utf-8")


def test_no_uncertainty_file_gives_no_section(results: Path) -> None:
    assert uncertainty_html(results) == ""


def test_entropy_that_ranks_the_failures_gives_rho_minus_one(results: Path) -> None:
    # the fixture's predictions: case_000 perfect, case_001 loses the lesion, case_002 worst
    _write_uncertainty(results, {"case_000": 0.1, "case_001": 0.2, "case_002": 0.5})
    text = uncertainty_html(results)
    assert "Spearman rho with Dice" in text
    assert text.count(">-1.000<") == 2  # whole image and foreground band
    assert ">3<" in text  # n
    most = text.index("case_002"), text.index("case_001"), text.index("case_000")
    assert most[0] < most[1] < most[2]  # most uncertain first
    assert "1 of 3" in text  # ... and it is the worst case
    assert "data:image/png;base64," in text


def test_spearman_matches_a_hand_ranking() -> None:
    # ranks of x: 1 2 3 4, of y: 2 1 4 3 -> d^2 = 4, rho = 1 - 6 * 4 / (4 * 15) = 0.6
    out = uncertainty_correlation(
        {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}, {"a": 0.5, "b": 0.2, "c": 0.9, "d": 0.7}
    )
    assert out["rho"] == pytest.approx(0.6) and out["n"] == 4
    too_few = uncertainty_correlation({"a": 0.1, "b": 0.2}, {"a": 0.5, "b": 0.2})
    assert math.isnan(too_few["rho"]) and too_few["n"] == 2


def test_robustness_section_shows_the_plot_and_the_table(tmp_path: Path) -> None:
    assert robustness_html(tmp_path) == ""
    rows = [
        {"perturbation": "noise", "level": level, "parameter": 0.1 * level, "case": case,
         "label": "1", "dice": dice, "hd95": 1.0}
        for level, case, dice in [(0, "a", 0.9), (0, "b", 0.7), (1, "a", 0.5), (1, "b", 0.3)]
    ]  # fmt: skip
    summary = {"n_cases": 2, "perturbations": summarize_robustness(rows)}
    (tmp_path / "robustness.json").write_text(json.dumps(json_safe(summary)), encoding="utf-8")
    text = robustness_html(tmp_path)
    assert "data:image/png;base64," in text
    assert "0.800 ± 0.100 [0]" in text and "0.400 ± 0.100 [0.1]" in text
    assert ">0.400<" in text  # the drop from level 0


def test_an_unreadable_robustness_file_gives_a_note(tmp_path: Path) -> None:
    (tmp_path / "robustness.json").write_text("{not json", encoding="utf-8")
    assert "could not be read" in robustness_html(tmp_path)
