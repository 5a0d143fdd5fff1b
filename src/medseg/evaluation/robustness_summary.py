"""``medseg robustness``'s outputs: the summary, the CSV text, the figure, and reading them back.

``medseg.evaluation.robustness.robustness`` produces the rows (one per perturbation, level,
case and label: ``CSV_COLUMNS``); this module turns them into ``robustness.json``'s
``perturbations`` (``summarize_robustness``), ``robustness.csv`` (``format_robustness_csv``)
and ``robustness.png`` (``robustness_figure``), and reads ``robustness.json`` back for the
report (``load_robustness``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.fileutil import csv_safe
from medseg.transforms.degrade import PERTURBATIONS

CSV_COLUMNS = ("perturbation", "level", "parameter", "case", "label", "dice", "hd95")
ALL_LABELS = "all"


def _describe(values: Sequence[float]) -> dict[str, float | int]:
    """Mean and (population) std of the finite values, their count and the NaN/inf count."""
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    return {
        "mean": float(finite.mean()) if finite.size else math.nan,
        "std": float(finite.std()) if finite.size else math.nan,
        "n": int(finite.size),
        "nan_count": int(array.size - finite.size),
    }


def summarize_robustness(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``robustness.json``'s ``perturbations``: per perturbation, per level, per label.

    Args:
        rows: ``robustness.csv`` rows (``CSV_COLUMNS``).

    Returns:
        ``{perturbation: {"parameter_name", "levels": [{"level", "parameter", "labels":
        {label: {"dice", "hd95", "dice_drop", "hd95_increase"}}}]}}`` where ``"dice"`` and
        ``"hd95"`` are ``{"mean", "std", "n", "nan_count"}`` over cases (NaN and inf left out:
        an empty prediction has no HD95) and the drops are level 0's mean minus this level's
        (HD95: this level's minus level 0's). Label ``"all"`` averages each case's labels
        first.

    Example:
        >>> rows = [dict(perturbation="noise", level=lv, parameter=0.1 * lv, case="a",
        ...              label="1", dice=d, hd95=1.0) for lv, d in [(0, 0.9), (1, 0.6)]]
        >>> out = summarize_robustness(rows)["noise"]["levels"][1]["labels"]["1"]
        >>> round(out["dice_drop"], 6)
        0.3
    """
    summary: dict[str, Any] = {}
    for name in dict.fromkeys(row["perturbation"] for row in rows):
        mine = [row for row in rows if row["perturbation"] == name]
        levels = sorted({int(row["level"]) for row in mine})
        labels = list(dict.fromkeys(str(row["label"]) for row in mine))
        entries = []
        for level in levels:
            at_level = [row for row in mine if int(row["level"]) == level]
            per_label = {
                label: {
                    metric: _describe([r[metric] for r in at_level if str(r["label"]) == label])
                    for metric in ("dice", "hd95")
                }
                for label in labels
            }
            per_label[ALL_LABELS] = {
                metric: _describe(_case_means(at_level, metric)) for metric in ("dice", "hd95")
            }
            entries.append(
                {"level": level, "parameter": at_level[0]["parameter"], "labels": per_label}
            )
        for entry in entries:
            for label, stats in entry["labels"].items():
                base = entries[0]["labels"][label]
                stats["dice_drop"] = base["dice"]["mean"] - stats["dice"]["mean"]
                stats["hd95_increase"] = stats["hd95"]["mean"] - base["hd95"]["mean"]
        summary[name] = {
            "parameter_name": PERTURBATIONS.description(name) if name in PERTURBATIONS else "",
            "levels": entries,
        }
    return summary


def _case_means(rows: Sequence[dict[str, Any]], metric: str) -> list[float]:
    """Each case's mean over its labels (non-finite values left out; NaN if none is finite)."""
    per_case: dict[str, list[float]] = {}
    for row in rows:
        per_case.setdefault(str(row["case"]), []).append(float(row[metric]))
    means = []
    for values in per_case.values():
        finite = [v for v in values if math.isfinite(v)]
        means.append(float(np.mean(finite)) if finite else math.nan)
    return means


def format_robustness_csv(rows: Sequence[dict[str, Any]]) -> str:
    """``robustness.csv`` text (``CSV_COLUMNS``; NaN as ``nan``, names through ``csv_safe``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row["perturbation"],
                int(row["level"]),
                repr(float(row["parameter"])),
                csv_safe(str(row["case"])),
                csv_safe(str(row["label"])),
                repr(float(row["dice"])),
                repr(float(row["hd95"])),
            ]
        )
    return buffer.getvalue()


def robustness_figure(summary: dict[str, Any]) -> Any:
    """Mean Dice and HD95 over cases (label ``"all"``) against the level, one line per
    perturbation, error bars one standard deviation. Returns a matplotlib ``Figure``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.0, 3.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for metric, ax, ylabel in (
        ("dice", axes[0], "Dice (mean over labels)"),
        ("hd95", axes[1], "HD95 (mm)"),
    ):
        for index, (name, entry) in enumerate(summary.items()):
            levels = [e["level"] for e in entry["levels"]]
            stats = [e["labels"][ALL_LABELS][metric] for e in entry["levels"]]
            dodge = 0.06 * (index - (len(summary) - 1) / 2)  # error bars side by side
            ax.errorbar(
                [level + dodge for level in levels],
                [s["mean"] for s in stats],
                yerr=[s["std"] for s in stats],
                marker="o",
                capsize=3,
                label=name,
            )
        ax.set_xticks(sorted({e["level"] for v in summary.values() for e in v["levels"]}))
        ax.set_xlabel("severity level (0 = unchanged)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    figure.suptitle("Robustness: accuracy under image degradation")
    figure.tight_layout()
    return figure


def load_robustness(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``robustness.json`` (``null`` back to NaN).

    Raises:
        ConfigError: the file is missing or not a JSON object.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot be read as robustness.json ({err})") from err
    if not isinstance(data, dict) or "perturbations" not in data:
        raise ConfigError(f"{path}: not a robustness.json (no 'perturbations')")
    return _nan_for_null(data)


def _nan_for_null(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _nan_for_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_for_null(v) for v in obj]
    return math.nan if obj is None else obj


__all__ = [
    "ALL_LABELS",
    "CSV_COLUMNS",
    "format_robustness_csv",
    "load_robustness",
    "robustness_figure",
    "summarize_robustness",
]
