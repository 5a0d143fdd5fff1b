"""Report sections on uncertainty ("does it flag the failures?") and on robustness.

``uncertainty_html(results)``: for each evaluation whose predictions come with an
``uncertainty.csv`` (``medseg predict --save-uncertainty``, or ``validation/uncertainty.csv``
of the cross-validation folds), the per-case mean entropy is joined with the case's mean Dice
over labels (``per_case.csv``) and their Spearman rank correlation is reported with a scatter
plot and the three most uncertain cases. Uncertainty that flags failures correlates
*negatively* with Dice (rho near -1), and the most uncertain cases are among the worst.

``robustness_html(folder)``: the ``medseg robustness`` plot and table of ``folder``
(``RESULTS/robustness`` by default).

Both return ``""`` when there is nothing to show, so a report can always call them.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from medseg.fileutil import csv_restore
from medseg.report.figures import to_data_uri
from medseg.report.html import escape, format_number, note, table
from medseg.report.results import (
    Evaluation,
    Results,
    load_results,
    rank_cases,
    resolve_path,
)

UNCERTAINTY_CSV = "uncertainty.csv"
ROBUSTNESS_JSON = "robustness.json"


def _uncertainty_files(results: Results, evaluation: Evaluation) -> list[Path]:
    """The ``uncertainty.csv`` files of an evaluation's predictions: its ``pred_dir``, else
    the ``validation`` folders of the folds of the configuration it is named after."""
    pred_dir = evaluation.summary.get("pred_dir")
    folders = [resolve_path(pred_dir, results.root)] if isinstance(pred_dir, str) else []
    folders += [f.path / "validation" for f in results.folds if f.configuration == evaluation.name]
    return [folder / UNCERTAINTY_CSV for folder in folders if (folder / UNCERTAINTY_CSV).is_file()]


def read_uncertainty_csv(path: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """``{case: {"mean_entropy", "foreground_entropy", "foreground_voxels"}}`` of one file
    (unreadable values as NaN). Raises ``OSError``/``csv.Error`` for an unreadable file."""
    rows: dict[str, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            values = {}
            for key in ("mean_entropy", "foreground_entropy", "foreground_voxels"):
                try:
                    values[key] = float(row.get(key, "nan"))
                except ValueError:
                    values[key] = math.nan
            rows[csv_restore(str(row.get("case", "")))] = values
    return rows


def uncertainty_correlation(
    entropy: dict[str, float], dice: dict[str, float]
) -> dict[str, float | int]:
    """Spearman rank correlation between case entropy and case Dice over the shared cases
    with finite values: ``{"rho", "p", "n"}`` (NaN rho and p below 3 cases or for constant
    values).

    Example:
        >>> entropy, dice = {"a": 0.1, "b": 0.2, "c": 0.3}, {"a": 0.9, "b": 0.8, "c": 0.1}
        >>> out = uncertainty_correlation(entropy, dice)
        >>> out["rho"], out["n"]
        (-1.0, 3)
    """
    from scipy.stats import spearmanr

    cases = [
        c for c in entropy if c in dice and math.isfinite(entropy[c]) and math.isfinite(dice[c])
    ]
    if len(cases) < 3:
        return {"rho": math.nan, "p": math.nan, "n": len(cases)}
    x = np.array([entropy[c] for c in cases])
    y = np.array([dice[c] for c in cases])
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": math.nan, "p": math.nan, "n": len(cases)}
    result = spearmanr(x, y)
    return {"rho": float(result.statistic), "p": float(result.pvalue), "n": len(cases)}


def _scatter(entropy: dict[str, float], dice: dict[str, float], title: str) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cases = [c for c in entropy if c in dice]
    figure = Figure(figsize=(4.2, 3.2))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.scatter([entropy[c] for c in cases], [dice[c] for c in cases], s=14, color="#1e90ff")
    ax.set_xlabel("case mean entropy (0 certain, 1 uniform)")
    ax.set_ylabel("case mean Dice")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return figure


def _evaluation_section(results: Results, evaluation: Evaluation) -> str:
    files = _uncertainty_files(results, evaluation)
    if not files:
        return ""
    uncertainty: dict[str, dict[str, float]] = {}
    problems = []
    for path in files:
        try:
            for case, values in read_uncertainty_csv(path).items():
                uncertainty.setdefault(case, values)
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            problems.append(f"{path}: could not be read ({err})")
    dice = dict(rank_cases(evaluation.rows))
    shared = [c for c in uncertainty if c in dice]
    parts = [f"<h3>{escape(evaluation.name)}</h3>"] + [note(p) for p in problems]
    if not shared:
        return "".join(parts + [note("no case of uncertainty.csv is in per_case.csv")])
    rows = []
    for key, what in (
        ("mean_entropy", "whole image"),
        ("foreground_entropy", "predicted foreground + 1-voxel band"),
    ):
        stats = uncertainty_correlation({c: uncertainty[c][key] for c in shared}, dice)
        rows.append(
            [
                escape(what),
                format_number(stats["rho"]),
                format_number(stats["p"], ".3g"),
                format_number(stats["n"], ".0f"),
            ]
        )
    parts.append(
        table(
            rows,
            ["mean entropy over", "Spearman rho with Dice", "p", "n"],
            caption="rho near -1: the more uncertain a case, the lower its Dice (uncertainty "
            "flags the failures); near 0: it does not.",
        )
    )
    by_rank = sorted(dice, key=lambda c: (dice[c], c))  # worst first
    top = sorted(shared, key=lambda c: (-uncertainty[c]["mean_entropy"], c))[:3]
    parts.append(
        table(
            [
                [
                    escape(c),
                    format_number(uncertainty[c]["mean_entropy"]),
                    format_number(uncertainty[c]["foreground_entropy"]),
                    format_number(dice[c]),
                    escape(f"{by_rank.index(c) + 1} of {len(by_rank)}"),
                ]
                for c in top
            ],
            ["case", "mean entropy", "foreground entropy", "mean Dice", "Dice rank (1 = worst)"],
            caption="The three most uncertain cases: are they among the worst?",
        )
    )
    entropy = {c: uncertainty[c]["mean_entropy"] for c in shared}
    figure = _scatter(entropy, dice, f"{evaluation.name}: entropy vs Dice")
    parts.append(
        f'<figure><img src="{to_data_uri(figure)}" alt="entropy vs Dice">'
        "<figcaption>One dot per case.</figcaption></figure>"
    )
    return "".join(parts)


def uncertainty_html(results: Results | str | os.PathLike[str]) -> str:
    """The uncertainty section of a results report (module docstring); ``""`` when no
    evaluation has an ``uncertainty.csv``.

    Args:
        results: a loaded ``Results`` or the results folder.
    """
    if not isinstance(results, Results):
        results = load_results(results)
    sections = [_evaluation_section(results, e) for e in results.evaluations]
    sections = [s for s in sections if s]
    if not sections:
        return ""
    intro = (
        "<p>Per-voxel uncertainty is the entropy of the ensemble's mean softmax over "
        "test-time mirrors and folds, divided by log K (0: every member certain of one "
        "class; 1: uniform). Each case is summarised by its mean over the image and over the "
        "predicted foreground plus a 1-voxel band.</p>"
    )
    return intro + "".join(sections)


def robustness_html(folder: str | os.PathLike[str]) -> str:
    """The ``medseg robustness`` results of ``folder``: plot and Dice table; ``""`` when
    ``folder/robustness.json`` does not exist (a note when it cannot be read)."""
    from medseg.errors import ConfigError
    from medseg.evaluation.robustness_summary import load_robustness, robustness_figure

    path = Path(folder) / ROBUSTNESS_JSON
    if not path.is_file():
        return ""
    try:
        summary = load_robustness(path)
        perturbations = summary["perturbations"]
        figure = robustness_figure(perturbations)
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        return note(f"{path}: could not be read ({err})")
    levels = max((len(e["levels"]) for e in perturbations.values()), default=0)
    rows = []
    for name, entry in perturbations.items():
        cells = [escape(f"{name} ({entry.get('parameter_name', '')})")]
        for level in entry["levels"]:
            stats = level["labels"]["all"]["dice"]
            text = (
                f"{format_number(stats['mean'])[1:]} ± {format_number(stats['std'])[1:]}"
                f" [{level['parameter']:.3g}]"
            )
            cells.append("\x00" + escape(text))  # a numeric (right-aligned) cell
        cells += [""] * (levels + 1 - len(cells))
        cells.append(format_number(entry["levels"][-1]["labels"]["all"]["dice_drop"]))
        rows.append(cells)
    header = ["perturbation (parameter)", *(f"level {k}" for k in range(levels)), "Dice drop"]
    n = summary.get("n_cases", "?")
    return (
        f"<p>Accuracy of the trained ensemble on {escape(n)} case(s) degraded by image noise "
        "and artefacts at increasing levels (level 0 = unchanged; see docs/robustness.md).</p>"
        f'<figure><img class="wide" src="{to_data_uri(figure)}" alt="robustness"></figure>'
        + table(
            rows,
            header,
            caption="Dice mean ± std over cases (mean over labels per case); the physical "
            "parameter in brackets; drop = level 0 minus the last level.",
        )
    )


__all__ = [
    "read_uncertainty_csv",
    "robustness_html",
    "uncertainty_correlation",
    "uncertainty_html",
]
