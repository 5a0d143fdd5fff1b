"""The sizes section of the report: Bland-Altman numbers and plot, pooled Dice, strata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.evaluation import evaluate_folders
from medseg.io import Image, write_image
from medseg.report.measures import bland_altman_figure, measures_html
from medseg.report.results import load_results


def _evaluated(root: Path) -> Path:
    """``root/evaluation/cfg`` of three cases with 1 mm^3 voxels (volumes 0.02-0.05 mL)."""
    for i, (n_ref, n_pred) in enumerate([(20, 25), (40, 30), (50, 50)]):
        ref, pred = np.zeros(200, np.uint8), np.zeros(200, np.uint8)
        ref[:n_ref], pred[:n_pred] = 1, 1
        for folder, array in (("ref", ref), ("pred", pred)):
            image = Image(array.reshape(5, 5, 8), (1.0, 1.0, 1.0))
            write_image(image, root / folder / f"c{i}.nii.gz")
    evaluate_folders(root / "pred", root / "ref", root / "results" / "evaluation" / "cfg", jobs=1)
    return root / "results"


def test_section_shows_volumes_bland_altman_pooled_dice_and_strata(tmp_path) -> None:
    results = load_results(_evaluated(tmp_path))
    html = measures_html(results)
    summary = results.evaluations[0].summary
    ba = summary["bland_altman"]["1"]
    assert ba["bias"] == pytest.approx((0.005 - 0.010 + 0) / 3)
    assert f"{ba['bias']:.3f}" in html and f"{ba['sd']:.3f}" in html
    assert f"{summary['pooled']['per_label']['1']['dice']:.3f}" in html
    assert "mean reference volume (mL)" in html and "0.037" in html  # (0.02+0.04+0.05)/3
    assert html.count("data:image/png;base64,") == 1  # one Bland-Altman plot (one label)
    assert "tertile 1" in html and "Per image" in html


def test_section_is_empty_for_evaluations_without_sizes(tmp_path) -> None:
    results_dir = _evaluated(tmp_path)
    path = results_dir / "evaluation" / "cfg" / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    for key in ("bland_altman", "size_unit", "pooled", "stratified", "per_image"):
        del summary[key]  # as written before sizes existed
    path.write_text(json.dumps(summary), encoding="utf-8")
    assert measures_html(load_results(results_dir)) == ""
    assert measures_html(load_results(tmp_path)) == ""  # no evaluation at all


def test_bland_altman_figure_draws_bias_and_limits() -> None:
    figure = bland_altman_figure([10.0, 12.0, 7.0, np.nan], [9.0, 12.0, 8.0, 1.0], title="t")
    ax = figure.axes[0]
    levels = sorted(
        {round(float(line.get_ydata()[0]), 6) for line in ax.get_lines() if len(line.get_ydata())}
    )
    # differences 1, 0, -1: bias 0, sd 1, limits -/+1.96 (and the zero line)
    assert levels == [-1.96, 0.0, 1.96]
    points = ax.collections[0].get_offsets()
    assert len(points) == 3  # the NaN pair is left out
    assert "mL" in ax.get_xlabel()
