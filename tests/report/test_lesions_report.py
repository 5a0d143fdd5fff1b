"""The lesion-wise report section: one table per label, the missed lesions, a definition
note, and nothing at all without lesion-wise results."""

from __future__ import annotations

import math

import numpy as np

from medseg.evaluation.lesions import lesion_rows, summarize_lesions
from medseg.metrics.lesions import lesion_wise
from medseg.report.lesions import lesions_html


def _results():
    a = np.zeros((8, 12), bool)
    a[1:4, 1:4] = True
    b = np.zeros_like(a)
    b[1:4, 8:11] = True
    options = {"dilation_mm": 1.0, "min_volume_mm3": 0.0}
    found = lesion_wise(a | b, a | b, (1.0, 1.0), **options)
    missed = lesion_wise(a, a | b, (1.0, 1.0), **options)  # Dice 0.5, HD95 187
    per_case = {"c1": {"<lesion>": found}, "c2": {"<lesion>": missed}}
    rows = lesion_rows("c1", "<lesion>", found) + lesion_rows("c2", "<lesion>", missed)
    summary = {
        "lesion_wise": summarize_lesions(per_case, options={**options, "hd95_penalty_mm": 374.0})
    }
    return summary, rows


def test_lesions_html_tabulates_counts_and_means_per_label():
    summary, rows = _results()
    text = lesions_html(summary, rows)
    assert "&lt;lesion&gt;" in text and "<lesion>" not in text  # label names are escaped
    # 4 reference lesions, TP 3, FP 0, FN 1; detection F1 = 6 / 7; Dice (1 + 0.5) / 2;
    # HD95 (0 + 187) / 2
    cells = ["4", "3", "0", "1", f"{6 / 7:.3f}", "0.750", "93.50"]
    assert '<td class="num">' + '</td><td class="num">'.join(["2", *cells]) + "</td>" in text
    assert "Largest missed lesions" in text and "c2" in text and "9.0" in text
    assert "1.0 mm" in text and "374.0 mm" in text  # the options in the definition note


def test_lesions_html_shows_nan_as_not_available():
    summary, rows = _results()
    summary["lesion_wise"]["per_label"]["<lesion>"]["f1"] = math.nan
    assert "n/a" in lesions_html(summary, [])


def test_lesions_html_is_empty_without_lesion_results():
    assert lesions_html({}, []) == ""
    assert lesions_html({"lesion_wise": {"per_label": {}, "options": {}}}, []) == ""
