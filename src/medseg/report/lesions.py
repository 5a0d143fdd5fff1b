"""The lesion-wise section of the results report: counts, detection F1, BraTS scores.

``lesions_html(summary, lesion_rows)`` reads ``summary["lesion_wise"]`` (written by
``medseg.evaluation.lesions.summarize_lesions``) and the rows of ``lesions.csv``, and gives
one table per label plus the largest missed lesions; ``""`` when there are no lesion-wise
results, so the report can add the section unconditionally. ``lesion_sections(results)``
does it for every evaluation of a results folder that has them.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from typing import Any

from medseg.evaluation.lesions import LESIONS_FILE
from medseg.fileutil import csv_restore
from medseg.report.html import escape, format_number, note, table
from medseg.report.results import Results

MISSED_SHOWN = 10  # largest missed lesions listed per label

_DEFINITION = (
    "Lesion-wise metrics as in BraTS 2023: reference lesions closer than the dilation "
    "({dilation} mm) are one lesion; a predicted component overlapping a dilated lesion "
    "matches it; Dice and HD95 of a lesion are taken against all its matched components; "
    "a missed lesion (FN) or unmatched component (FP) scores Dice 0 and HD95 {penalty} mm; "
    "reference lesions of at most {volume} mm³ are left out. Lesion-wise Dice = sum of "
    "lesion Dice / (kept lesions + FP), likewise HD95; a case with neither scores Dice 1, "
    "HD95 0. Dice and HD95 are means over cases; TP/FP/FN and detection F1 are over all "
    "lesions of the dataset. See docs/lesions.md."
)


def lesions_html(summary: Mapping[str, Any], lesion_rows: Sequence[Mapping[str, Any]]) -> str:
    """HTML of the lesion-wise results, or ``""`` when ``summary`` has none.

    Args:
        summary: the ``summary.json`` dict; its ``"lesion_wise"`` entry is read
            (``{"per_label": {label: {...}}, "options": {...}}``).
        lesion_rows: ``lesions.csv`` rows (``medseg.evaluation.lesions.lesion_rows``);
            values may be strings as read back from the CSV.

    Returns:
        A summary table (one row per label: reference lesions, TP, FP, FN, detection F1,
        lesion-wise Dice and HD95 means), the largest missed lesions per label, and a note
        on the definition.
    """
    block = summary.get("lesion_wise") or {}
    per_label = block.get("per_label") or {}
    if not per_label:
        return ""
    options = block.get("options") or {}
    header = ["label", "cases", "ref lesions", "TP", "FP", "FN", "detection F1"]
    header += ["lesion Dice", "lesion HD95 (mm)"]
    rows = []
    for label, stats in per_label.items():
        rows.append(
            [
                escape(label),
                format_number(stats.get("n_cases"), ".0f"),
                format_number(stats.get("n_ref"), ".0f"),
                format_number(stats.get("tp"), ".0f"),
                format_number(stats.get("fp"), ".0f"),
                format_number(stats.get("fn"), ".0f"),
                format_number(stats.get("f1")),
                format_number((stats.get("lesion_dice") or {}).get("mean")),
                format_number((stats.get("lesion_hd95") or {}).get("mean"), ".2f"),
            ]
        )
    parts = [table(rows, header, caption="Lesion-wise detection and segmentation per label.")]
    parts.append(_missed_tables(per_label, lesion_rows))
    parts.append(
        note(
            _DEFINITION.format(
                dilation=options.get("dilation_mm", "the"),
                penalty=options.get("hd95_penalty_mm", 374),
                volume=options.get("min_volume_mm3", "the minimum"),
            )
        )
    )
    return "".join(parts)


def _missed_tables(per_label: Mapping[str, Any], lesion_rows: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for label in per_label:
        missed = [r for r in lesion_rows if str(r["label"]) == str(label) and r["kind"] == "fn"]
        if not missed:
            continue
        missed.sort(key=lambda r: float(r["ref_volume_mm3"]), reverse=True)
        rows = [
            [
                escape(r["case"]),
                format_number(r["lesion_id"], ".0f"),
                format_number(r["ref_volume_mm3"], ".1f"),
                escape(r["centroid"]),
            ]
            for r in missed[:MISSED_SHOWN]
        ]
        caption = f"Largest missed lesions of label {escape(label)} ({len(missed)} in all)."
        parts.append(
            table(rows, ["case", "lesion", "volume (mm³)", "centre (index)"], caption=caption)
        )
    return "".join(parts)


def lesion_sections(results: Results) -> str:
    """The lesion-wise tables of every evaluation that has them (``lesions.csv``)."""
    parts = []
    for evaluation in results.evaluations:
        if not evaluation.summary.get("lesion_wise"):
            continue
        path = evaluation.path / LESIONS_FILE
        rows: list[dict[str, Any]] = []
        if path.is_file():
            with open(path, encoding="utf-8", newline="") as handle:
                rows = [
                    {**row, "case": csv_restore(row["case"]), "label": csv_restore(row["label"])}
                    for row in csv.DictReader(handle)
                ]
        html = lesions_html(evaluation.summary, rows)
        if html:
            parts.append(f"<h3>{escape(evaluation.name)}</h3>{html}")
    return "".join(parts)
