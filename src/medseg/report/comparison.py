"""The report's comparison of every trained plan: base configurations and variants side by side.

One row per plan with a trained fold (``RESULTS/<plan>/fold_<k>/``): its choices from
``plans.json`` (network, loss, sampling, augmentation, mirror axes, elastic), its folds, and
the mean Dice of each fold's validation cases (``fold_<k>/evaluation/summary.json``, written by
``validate_fold``: ``overall.dice.mean``, and ``per_label.<label>.dice.mean`` per class)
summarised over the folds: mean +- sample std, and min-max. The best row is marked, and a
sentence per other row says whether its difference to the best exceeds the spread across folds
(the larger of the two fold stds): a variant that wins by less than that is not distinguishable
from the best on these folds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medseg.report.html import escape, note
from medseg.report.results import Fold, Results


@dataclass(frozen=True)
class PlanScores:
    """One trained plan's folds and their validation Dice.

    Attributes:
        name: the plan's name (``2d``, ``2d-attn``), its folder in the results.
        plan: its ``plans.json`` entry (empty if the plan is not there).
        folds: the trained fold names (``"0"``, ``"all"``).
        dice: fold name -> mean Dice over the fold's validation cases and foreground labels,
            for the folds with an evaluation.
        per_label: label -> fold name -> that label's mean Dice.
    """

    name: str
    plan: Mapping[str, Any]
    folds: list[str]
    dice: dict[str, float]
    per_label: dict[str, dict[str, float]]

    @property
    def mean(self) -> float:
        """Mean over the evaluated folds of their mean Dice (NaN without any)."""
        return _mean(list(self.dice.values()))

    @property
    def std(self) -> float:
        """Sample std (ddof 1) over the evaluated folds (NaN with fewer than two)."""
        return _std(list(self.dice.values()))


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _mean(values: Sequence[float]) -> float:
    kept = _finite(values)
    return float(np.mean(kept)) if kept else math.nan


def _std(values: Sequence[float]) -> float:
    kept = _finite(values)
    return float(np.std(kept, ddof=1)) if len(kept) > 1 else math.nan


def _dice(stats: Any) -> float:
    """``stats["dice"]["mean"]`` of a summary's ``overall`` or ``per_label`` entry, else NaN."""
    value = ((stats if isinstance(stats, dict) else {}).get("dice") or {}).get("mean")
    return float(value) if isinstance(value, (int, float)) else math.nan


def compare_plans(results: Results) -> list[PlanScores]:
    """The plans with a trained fold, in ``plans.json`` order (then any other plan folder by
    name), with each evaluated fold's mean Dice."""
    configs = (results.plans or {}).get("configurations")
    configs = configs if isinstance(configs, dict) else {}
    by_plan: dict[str, list[Fold]] = {}
    for fold in results.folds:
        if fold.trained:
            by_plan.setdefault(fold.configuration, []).append(fold)
    order = [name for name in configs if name in by_plan]
    order += sorted(set(by_plan) - set(order))
    rows = []
    for name in order:
        dice: dict[str, float] = {}
        per_label: dict[str, dict[str, float]] = {}
        for fold in by_plan[name]:
            key = fold.name.removeprefix("fold_")
            summary = fold.evaluation or {}
            value = _dice(summary.get("overall"))
            if math.isnan(value):
                continue
            dice[key] = value
            for label, stats in (summary.get("per_label") or {}).items():
                per_label.setdefault(str(label), {})[key] = _dice(stats)
        plan = configs.get(name)
        rows.append(
            PlanScores(
                name=name,
                plan=plan if isinstance(plan, dict) else {},
                folds=[f.name.removeprefix("fold_") for f in by_plan[name]],
                dice=dice,
                per_label=per_label,
            )
        )
    return rows


def _mean_std(values: Sequence[float]) -> str:
    """``0.812 \u00b1 0.020`` (the std left out with one value), ``n/a`` without any."""
    mean, std = _mean(values), _std(values)
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} \u00b1 {std:.3f}"


def _range(values: Sequence[float]) -> str:
    kept = _finite(values)
    return f"{min(kept):.3f}\u2013{max(kept):.3f}" if kept else "n/a"


def _choices(plan: Mapping[str, Any]) -> list[str]:
    """Network, loss, sampling, augmentation, mirror axes and elastic of a plan (as text)."""
    if not plan:
        return ["n/a (not in plans.json)"] + ["n/a"] * 5
    loss = str(plan.get("loss", "n/a"))
    options = plan.get("loss_config") or {}
    if isinstance(options, dict) and options:
        loss += " (" + ", ".join(f"{k}={v}" for k, v in sorted(options.items())) + ")"
    axes = plan.get("mirror_axes")
    mirror = "all" if axes is None else (", ".join(str(a) for a in axes) or "none")
    elastic = plan.get("elastic", 0.0)
    return [
        str(plan.get("network", "n/a")),
        loss,
        str(plan.get("sampling", "oversample")),
        str(plan.get("augmentation", "n/a")),
        mirror,
        f"{elastic:g}" if isinstance(elastic, (int, float)) else str(elastic),
    ]


def _verdict(best: PlanScores, other: PlanScores) -> str:
    """One sentence: is ``best``'s lead over ``other`` larger than the spread across folds?"""
    diff = best.mean - other.mean
    stds = (best.std, other.std)
    spread = math.nan if any(math.isnan(s) for s in stds) else max(stds)
    head = f"{best.name} vs {other.name}: difference {diff:.3f}"
    if math.isnan(spread):
        text = (
            f"{head}; fold spread unknown (fewer than 2 evaluated folds): train more folds "
            "to compare."
        )
    elif diff > spread:
        text = f"{head} > fold std {spread:.3f}: larger than the spread across folds."
    else:
        text = f"{head} \u2264 fold std {spread:.3f}: not distinguishable."
    if sorted(best.dice) != sorted(other.dice):
        text += (
            f" (Evaluated on different folds: {', '.join(sorted(best.dice))} vs "
            f"{', '.join(sorted(other.dice))}.)"
        )
    return text


def comparison_html(results: Results) -> str:
    """The comparison table of every trained plan and, under it, one verdict per plan
    against the best (see the module docstring); a note when nothing is trained."""
    rows = compare_plans(results)
    if not rows:
        return note(f"No trained folds: no {results.root}/<config>/fold_<k>/checkpoint_*.pt.")
    labels = list(dict.fromkeys(label for row in rows for label in row.per_label))
    scored = [row for row in rows if row.dice]
    best = max(scored, key=lambda row: row.mean) if scored else None
    head = (
        "<tr><th>plan</th><th>network</th><th>loss</th><th>sampling</th><th>augmentation</th>"
        "<th>mirror axes</th><th>elastic</th><th>folds trained</th>"
        "<th>mean Dice (mean \u00b1 std over folds)</th><th>min\u2013max over folds</th>"
        + "".join(f"<th>Dice {escape(results.label_name(label))}</th>" for label in labels)
        + "</tr>"
    )
    body = ""
    for row in rows:
        is_best = row is best
        name = escape(row.name) + (" \u2605 best" if is_best else "")
        folds = ", ".join(row.folds)
        if len(row.dice) != len(row.folds):
            folds += f" ({len(row.dice)} evaluated)"
        values = list(row.dice.values())
        cells = [f"<td>{name}</td>"]
        cells += [f"<td>{escape(text)}</td>" for text in _choices(row.plan)]
        cells.append(f"<td>{escape(folds)}</td>")
        cells += [
            f'<td class="num">{escape(text)}</td>'
            for text in (
                _mean_std(values),
                _range(values),
                *(_mean_std(list(row.per_label.get(label, {}).values())) for label in labels),
            )
        ]
        css = ' class="best"' if is_best else ""
        body += f"<tr{css}>{''.join(cells)}</tr>"
    caption = (
        "One row per trained plan (configurations and variants: medseg plan --variant). Dice: "
        "each fold's mean over its validation cases and foreground labels "
        "(fold_&lt;k&gt;/evaluation/summary.json), then mean \u00b1 sample std and min\u2013max "
        "over the evaluated folds. \u2605 best: the highest mean."
    )
    table = f"<table><caption>{caption}</caption><thead>{head}</thead><tbody>{body}</tbody></table>"
    if best is None:
        return table + note("No fold is evaluated yet: train with validation to compare plans.")
    verdicts = [_verdict(best, row) for row in scored if row is not best]
    if not verdicts:
        return table
    return table + "<ul>" + "".join(f"<li>{escape(v)}</li>" for v in verdicts) + "</ul>"


__all__ = ["PlanScores", "compare_plans", "comparison_html"]
