"""Report section on sizes: volumes, Bland-Altman agreement, pooled Dice and size strata.

``measures_html(results)`` reads what ``medseg evaluate`` wrote (the ``vol_*``/``area_*``
columns of ``per_case.csv`` and the ``bland_altman``, ``pooled`` and ``stratified`` parts of
``summary.json``) and returns one HTML block per evaluation, or ``""`` when no evaluation has
size data (folders written before sizes existed). ``bland_altman_figure`` draws the plot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medseg.metrics.aggregate import SIZE_KEYS, bland_altman
from medseg.report.figures import new_figure, to_data_uri
from medseg.report.html import escape, format_number, note, table
from medseg.report.results import Evaluation, Results

_UNIT_TEXT = {"mL": "mL", "mm2": "mm\u00b2"}
_STRATUM_METRICS = ("dice", "iou", "hd95", "nsd")


def bland_altman_figure(
    pred_values: Sequence[float],
    ref_values: Sequence[float],
    *,
    title: str,
    unit: str = "mL",
) -> Any:
    """Bland-Altman plot: per case the difference ``pred - ref`` against the mean of both.

    Draws the bias (solid) and the 95 % limits of agreement ``bias -/+ 1.96 sd`` (dashed)
    of ``medseg.metrics.bland_altman``; pairs with a NaN are left out.

    Args:
        pred_values: predicted sizes, one per case.
        ref_values: reference sizes, same cases and order.
        title: the axes title.
        unit: unit of the sizes for the axis labels (``"mL"`` or ``"mm2"``).

    Returns:
        The matplotlib ``Figure`` (Agg canvas, no pyplot state); an empty axes with a note
        when there is no pair.
    """
    pred, ref = np.asarray(pred_values, dtype=float), np.asarray(ref_values, dtype=float)
    kept = ~(np.isnan(pred) | np.isnan(ref))
    pred, ref = pred[kept], ref[kept]
    stats = bland_altman(pred, ref)
    figure = new_figure(4.2, 3.2)
    ax = figure.add_subplot()
    text = _UNIT_TEXT.get(unit, unit)
    if pred.size:
        ax.scatter((pred + ref) / 2, pred - ref, s=12, alpha=0.7, color="#1e90ff")
        ax.axhline(stats["bias"], color="#333", linewidth=1, label=f"bias {stats['bias']:.3g}")
        if not math.isnan(stats["sd"]):
            for key in ("loa_lower", "loa_upper"):
                ax.axhline(stats[key], color="#d62728", linewidth=1, linestyle="--")
            ax.plot([], [], color="#d62728", linestyle="--", label="bias \u00b1 1.96 sd")
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no case", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(0.0, color="#999", linewidth=0.6)
    ax.set_xlabel(f"mean of prediction and reference ({text})")
    ax.set_ylabel(f"prediction \u2212 reference ({text})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def measures_html(results: Results) -> str:
    """The sizes section of the results report, one block per evaluation with size data.

    Per label: mean reference and predicted size, Bland-Altman bias, sd and limits of
    agreement with the plot, the per-case mean against the pooled Dice and IoU, then the
    metrics per reference-size stratum.

    Returns:
        HTML (escaped), or ``""`` when no evaluation has size data.
    """
    parts = [_evaluation_block(results, e) for e in results.evaluations if _has_sizes(e)]
    return "".join(parts)


def _has_sizes(evaluation: Evaluation) -> bool:
    return bool(evaluation.summary.get("bland_altman")) and bool(
        evaluation.summary.get("size_unit")
    )


def _evaluation_block(results: Results, evaluation: Evaluation) -> str:
    summary = evaluation.summary
    unit = str(summary["size_unit"])
    text = _UNIT_TEXT.get(unit, unit)
    name = "volume" if unit == "mL" else "area"
    pred_key, ref_key = SIZE_KEYS.get(unit, ("", ""))
    per_label: Mapping[str, Any] = summary.get("per_label") or {}
    pooled: Mapping[str, Any] = (summary.get("pooled") or {}).get("per_label") or {}
    agreement: Mapping[str, Any] = summary.get("bland_altman") or {}
    rows = []
    for label in evaluation.labels:
        stats = per_label.get(label) or {}
        ba = agreement.get(label) or {}
        pool = pooled.get(label) or {}
        rows.append(
            [
                escape(results.label_name(label)),
                format_number(ba.get("n"), ".0f"),
                format_number((stats.get(ref_key) or {}).get("mean")),
                format_number((stats.get(pred_key) or {}).get("mean")),
                format_number(ba.get("bias")),
                format_number(ba.get("sd")),
                _interval(ba.get("loa_lower"), ba.get("loa_upper")),
                format_number((stats.get("dice") or {}).get("mean")),
                format_number(pool.get("dice")),
                format_number((stats.get("iou") or {}).get("mean")),
                format_number(pool.get("iou")),
            ]
        )
    header = [
        "label",
        "cases",
        f"mean reference {name} ({text})",
        f"mean predicted {name} ({text})",
        f"bias ({text})",
        f"sd ({text})",
        f"95 % limits of agreement ({text})",
        "Dice, mean per case",
        "Dice, pooled",
        "IoU, mean per case",
        "IoU, pooled",
    ]
    caption = escape(
        f"Bias: mean of prediction \u2212 reference {name}; sd: sample standard deviation of "
        "the differences; limits: bias \u00b1 1.96 sd (Bland & Altman 1986). Pooled Dice/IoU "
        "from TP, FP, FN summed over cases (large structures weigh more); the per-case mean "
        "weighs every case the same and skips NaN."
    )
    return (
        f"<h3>{escape(evaluation.name)}: {name}s</h3>"
        + table(rows, [escape(h) for h in header], caption=caption)
        + _per_image(summary)
        + _plots(results, evaluation, pred_key, ref_key, unit)
        + _strata(results, evaluation, text)
    )


def _interval(low: Any, high: Any) -> str:
    lo, hi = format_number(low), format_number(high)
    return lo if lo.endswith("n/a") else f"{lo} \u2013 {hi[1:]}"


def _per_image(summary: Mapping[str, Any]) -> str:
    per_image = summary.get("per_image") or {}
    values = {m: (per_image.get(m) or {}).get("mean") for m in ("dice", "iou")}
    if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in values.values()):
        return ""
    return (
        "<p>Per image (mean over the labels of each case, then over cases): Dice "
        f"{format_number(values['dice'])[1:]}, IoU {format_number(values['iou'])[1:]}.</p>"
    )


def _plots(results: Results, evaluation: Evaluation, pred_key: str, ref_key: str, unit: str) -> str:
    if not evaluation.rows:
        return note(f"{evaluation.name}: no per_case.csv in {evaluation.path}, so no plot.")
    parts = []
    for label in evaluation.labels:
        rows = [r for r in evaluation.rows if r.get("label") == label]
        figure = bland_altman_figure(
            [float(r.get(pred_key, math.nan)) for r in rows],
            [float(r.get(ref_key, math.nan)) for r in rows],
            title=results.label_name(label),
            unit=unit,
        )
        parts.append(
            f'<figure><img src="{to_data_uri(figure)}" '
            f'alt="Bland-Altman plot, {escape(results.label_name(label))}">'
            "<figcaption>One dot per case; solid: bias; dashed: 95 % limits of agreement."
            "</figcaption></figure>"
        )
    return '<div class="figures">' + "".join(parts) + "</div>"


def _strata(results: Results, evaluation: Evaluation, unit_text: str) -> str:
    stratified = evaluation.summary.get("stratified") or {}
    per_label = stratified.get("per_label") or {}
    if not per_label:
        return ""
    rows = []
    for label in evaluation.labels:
        for stratum in per_label.get(label) or []:
            low, high = (stratum.get("range") or [math.nan, math.nan])[:2]
            means = stratum.get("mean") or {}
            rows.append(
                [
                    escape(results.label_name(label)),
                    escape(stratum.get("name", "")),
                    _interval(low, high),
                    format_number(stratum.get("n"), ".0f"),
                    *(format_number(means.get(m)) for m in _STRATUM_METRICS),
                ]
            )
    bins = stratified.get("bins")
    how = "tertiles of the reference sizes" if bins == "tertiles" else f"edges {bins}"
    caption = escape(
        f"Strata of reference size ({how}, {unit_text}; the range of tertiles is the smallest "
        "and largest size in them). Means skip NaN. Small structures score lower on overlap "
        "metrics for the same boundary error."
    )
    header = ["label", "stratum", f"size ({unit_text})", "rows", "Dice", "IoU", "HD95 (mm)", "NSD"]
    return table(rows, [escape(h) for h in header], caption=caption)
