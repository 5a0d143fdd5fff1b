"""The report's table comparing every trained plan (configurations and variants) over folds."""

from __future__ import annotations

import json
import math
import re
from html import unescape
from pathlib import Path

import pytest

from medseg.report import load_results, render_report
from medseg.report.comparison import compare_plans, comparison_html

LABELS = {"background": 0, "organ": 1, "lesion": 2}


def _plan(network: str = "unet", **fields) -> dict:
    return {"network": network, "loss": "dice_ce", "sampling": "oversample", **fields}


def _fold(results: Path, plan: str, fold: str, dice: float | None, *, trained: bool = True):
    """A fold folder with a checkpoint (when ``trained``) and, unless ``dice`` is None, an
    evaluation summary whose organ/lesion Dice average to ``dice``."""
    folder = results / plan / f"fold_{fold}"
    folder.mkdir(parents=True)
    if trained:
        (folder / "checkpoint_best.pt").write_bytes(b"")
    if dice is not None:
        summary = {
            "n_cases": 2,
            "labels": ["1", "2"],
            "per_label": {
                "1": {"dice": {"mean": dice + 0.1}},
                "2": {"dice": {"mean": dice - 0.1}},
            },
            "overall": {"dice": {"mean": dice}},
        }
        (folder / "evaluation").mkdir()
        (folder / "evaluation" / "summary.json").write_text(json.dumps(summary), "utf-8")


def _results(root: Path, plans: dict[str, dict], folds: dict[str, list[float | None]]) -> Path:
    root.mkdir()
    meta = {"dataset_name": "tiny", "dataset_path": "ds", "configurations": plans}
    (root / "plans.json").write_text(json.dumps(meta), encoding="utf-8")
    (root / "dataset.json").write_text(json.dumps({"labels": LABELS}), encoding="utf-8")
    for name, values in folds.items():
        for k, dice in enumerate(values):
            _fold(root, name, str(k), dice)
    return root


def _rows(html: str) -> dict[str, str]:
    """Plan name -> its table row (the HTML of the comparison table's body)."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return {
        re.match(r"<tr[^>]*><td>([^<★&]+)", row).group(1).strip(): row
        for row in re.findall(r"<tr.*?</tr>", body)
    }


@pytest.fixture
def three_plans(tmp_path: Path) -> Path:
    return _results(
        tmp_path / "results",
        {
            "2d": _plan(),
            "2d-attn": _plan("attention_unet", mirror_axes=[1], elastic=0.2),
            "2d-dice": _plan(loss="dice"),
        },
        {
            "2d": [0.80, 0.82, 0.84],
            "2d-attn": [0.81, 0.83, 0.85],
            "2d-dice": [0.50, 0.52, 0.54],
        },
    )


def test_scores_are_the_fold_means_with_their_sample_std(three_plans: Path) -> None:
    scores = {row.name: row for row in compare_plans(load_results(three_plans))}
    assert list(scores) == ["2d", "2d-attn", "2d-dice"]  # plans.json order
    attn = scores["2d-attn"]
    assert attn.folds == ["0", "1", "2"]
    assert attn.mean == pytest.approx(0.83)
    assert attn.std == pytest.approx(0.02)  # ddof 1: sqrt((0.02^2 + 0 + 0.02^2) / 2)
    assert attn.per_label["1"] == pytest.approx({"0": 0.91, "1": 0.93, "2": 0.95})
    assert attn.plan["network"] == "attention_unet"


def test_table_shows_choices_spread_and_marks_the_best(three_plans: Path) -> None:
    html = comparison_html(load_results(three_plans))
    rows = _rows(html)
    assert set(rows) == {"2d", "2d-attn", "2d-dice"}
    attn = rows["2d-attn"]
    assert attn.startswith('<tr class="best">') and "\u2605 best" in attn
    assert "\u2605" not in rows["2d"] + rows["2d-dice"]
    for text in ("attention_unet", "dice_ce", "oversample", "<td>1</td>", "<td>0.2</td>"):
        assert text in attn
    assert "0.830 \u00b1 0.020" in attn and "0.810\u20130.850" in attn
    assert "0.930 \u00b1 0.020" in attn  # organ (label 1) column
    assert "<td>all</td>" in rows["2d"]  # mirror axes: every axis
    assert "Dice 1 (organ)" in html and "Dice 2 (lesion)" in html


def test_each_difference_is_weighed_against_the_fold_spread(three_plans: Path) -> None:
    html = comparison_html(load_results(three_plans))
    verdicts = [unescape(v) for v in re.findall(r"<li>(.*?)</li>", html)]
    assert "difference 0.310 &gt; fold std" in html  # escaped
    assert verdicts == [
        "2d-attn vs 2d: difference 0.010 \u2264 fold std 0.020: not distinguishable.",
        "2d-attn vs 2d-dice: difference 0.310 > fold std 0.020: larger than the spread across "
        "folds.",
    ]


def test_the_section_is_in_the_report(three_plans: Path) -> None:
    html = render_report(load_results(three_plans))
    assert 'id="comparison"' in html and "Trained plans compared" in html
    assert html.index('id="plans"') < html.index('id="comparison"') < html.index('id="metrics"')


def test_one_fold_gives_no_spread_and_untrained_folds_are_left_out(tmp_path: Path) -> None:
    results = _results(
        tmp_path / "results",
        {"2d": _plan(), "2d-attn": _plan("attention_unet")},
        {"2d": [0.7, None], "2d-attn": [0.6]},
    )
    _fold(results, "2d-attn", "1", 0.9, trained=False)  # no checkpoint: not a trained fold
    scores = {row.name: row for row in compare_plans(load_results(results))}
    assert scores["2d"].folds == ["0", "1"] and list(scores["2d"].dice) == ["0"]
    assert scores["2d-attn"].folds == ["0"] and math.isnan(scores["2d-attn"].std)
    html = comparison_html(load_results(results))
    assert "0, 1 (1 evaluated)" in _rows(html)["2d"]
    assert "2d vs 2d-attn: difference 0.100; fold spread unknown" in html


def test_plan_text_is_escaped(tmp_path: Path) -> None:
    results = _results(
        tmp_path / "results", {"2d": _plan("<script>x</script>")}, {"2d": [0.5, 0.6]}
    )
    html = comparison_html(load_results(results))
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


def test_no_trained_fold_is_stated(tmp_path: Path) -> None:
    results = _results(tmp_path / "results", {"2d": _plan()}, {})
    assert "No trained folds" in comparison_html(load_results(results))


def test_folds_without_evaluation_are_stated(tmp_path: Path) -> None:
    results = _results(tmp_path / "results", {"2d": _plan()}, {"2d": [None, None]})
    html = comparison_html(load_results(results))
    assert "0, 1 (0 evaluated)" in html and "No fold is evaluated yet" in html
