"""``build_report``: one self-contained HTML file summarising a results folder.

The file has inline CSS and every figure as a base64 PNG, so it opens offline, can be mailed
and archived, and refers to nothing outside itself. Sections: header (dataset, date, medseg
version, configurations trained, device if recorded), plans (with the reasons behind each
choice), a comparison of every trained plan (configurations and variants: Dice over folds,
``medseg.report.comparison``), metrics per evaluation, per-case Dice boxplots, training
curves per fold, and overlays of the best, median and worst case
(``medseg.report.overlays``); then, when the folder has them, volumes with Bland-Altman and
size strata (``medseg.report.measures``), lesion-wise results (``medseg.report.lesions``),
uncertainty against Dice and the robustness curves (``medseg.report.uncertainty``); then the
caller's ``extra_sections``. A piece of the main sections that is missing (no plans, no folds,
no evaluation yet) is stated in its section instead; the optional ones are left out.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg import __version__
from medseg.errors import ConfigError
from medseg.fileutil import check_writable
from medseg.report import figures
from medseg.report.comparison import comparison_html
from medseg.report.html import REPORT_FILE, escape, format_number, note, page, table, write_html
from medseg.report.lesions import lesion_sections
from medseg.report.measures import measures_html
from medseg.report.overlays import case_overlays
from medseg.report.results import Evaluation, Results, load_results
from medseg.report.uncertainty import robustness_html, uncertainty_html

TABLE_METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "assd", "nsd")
_METRIC_NAMES = {
    "dice": "Dice",
    "iou": "IoU",
    "hd95": "HD95 (mm)",
    "assd": "ASSD (mm)",
    "nsd": "NSD",
}
_DISTANCES = {"hd95", "assd"}


def build_report(
    results: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    title: str | None = None,
    extra_sections: Sequence[tuple[str, str]] | None = None,
) -> Path:
    """Write one self-contained HTML report of ``results`` (atomically).

    Args:
        results: the results folder (``plans.json``, ``<config>/fold_<k>/``,
            ``evaluation/<config>/``; see ``medseg.report.results``).
        out: the report file; default ``RESULTS/report.html``.
        overwrite: replace an existing report.
        title: the page title; default ``"medseg report: <dataset name>"``.
        extra_sections: ``(title, html_fragment)`` pairs appended as sections; the title is
            escaped, the fragment is inserted as is (the caller escapes its own text).

    Returns:
        The path written.

    Raises:
        OverwriteError: the report exists and ``overwrite`` is False (checked before any work).
        ConfigError: ``results`` is not a folder, or ``extra_sections`` is not a list of
            ``(str, str)`` pairs.

    Example:
        >>> build_report("results/Dataset001", overwrite=True)  # doctest: +SKIP
        PosixPath('results/Dataset001/report.html')
    """
    target = check_writable(
        Path(out) if out is not None else Path(results) / REPORT_FILE, overwrite=overwrite
    )
    extras = _check_extra_sections(extra_sections)
    write_html(target, render_report(load_results(results), title=title, extra_sections=extras))
    return target


def render_report(
    results: Results, *, title: str | None = None, extra_sections: Sequence[tuple[str, str]] = ()
) -> str:
    """The report of an already loaded results folder as an HTML string (see ``build_report``)."""
    title = title or f"medseg report: {results.dataset_name}"
    sections = [
        ("plans", "Plans", _plans(results)),
        ("comparison", "Trained plans compared", comparison_html(results)),
        ("metrics", "Metrics", _metrics(results)),
        ("dice", "Per-case Dice", _boxplots(results)),
        ("training", "Training", _training(results)),
        ("cases", "Best, median and worst case", _cases(results)),
    ]
    optional = [
        ("sizes", "Volumes and agreement", measures_html(results)),
        ("lesions", "Lesion-wise evaluation", lesion_sections(results)),
        ("uncertainty", "Uncertainty", uncertainty_html(results)),
        (
            "robustness",
            "Robustness to image degradation",
            robustness_html(results.root / "robustness"),
        ),
    ]
    sections += [section for section in optional if section[2]]
    sections += [
        (f"extra-{i}", name, fragment) for i, (name, fragment) in enumerate(extra_sections, 1)
    ]
    return page(title, sections, header=_header(results))


def _check_extra_sections(extra: Sequence[tuple[str, str]] | None) -> list[tuple[str, str]]:
    pairs = list(extra or [])
    for item in pairs:
        if not (
            isinstance(item, (tuple, list))
            and len(item) == 2
            and all(isinstance(x, str) for x in item)
        ):
            raise ConfigError(
                f"extra_sections must be (title, html_fragment) string pairs, got {item!r}"
            )
    return [(str(name), str(fragment)) for name, fragment in pairs]


# -- header ----------------------------------------------------------------------------------


def _header(results: Results) -> str:
    trained: dict[str, list[str]] = {}
    for fold in results.folds:
        trained.setdefault(fold.configuration, []).append(fold.name.removeprefix("fold_"))
    rows = [
        ("Dataset", escape(results.dataset_name)),
        ("Dataset folder", escape(_dataset_folder(results))),
        ("Results folder", escape(results.root.resolve())),
        ("Generated", escape(datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))),
        ("medseg version", escape(__version__)),
        (
            "Configurations trained",
            escape("; ".join(f"{c} (folds {', '.join(f)})" for c, f in trained.items()) or "none"),
        ),
    ]
    if results.device:
        rows.append(("Device", escape(results.device)))
    meta = (
        '<table class="meta">'
        + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        + "</table>"
    )
    problems = "".join(note(p) for p in results.problems)
    return meta + problems


def _dataset_folder(results: Results) -> str:
    path = results.dataset_path
    if path is None:
        return "not recorded (no plans.json)"
    return (
        str(path)
        if path.is_dir()
        else f"{path} (not found here: overlays are drawn without the image)"
    )


# -- plans -----------------------------------------------------------------------------------


def _plans(results: Results) -> str:
    configs = (results.plans or {}).get("configurations")
    if not isinstance(configs, dict) or not configs:
        return note(
            f"No plans: {results.root / 'plans.json'} is missing or has no configurations "
            "(run 'medseg plan DATASET -o RESULTS')."
        )
    rows, reasons = [], []
    for name, plan in configs.items():
        plan = plan if isinstance(plan, dict) else {}
        net = plan.get("network_config") or {}
        optimiser = (
            f"{plan.get('optimizer', 'n/a')}, lr {plan.get('learning_rate', 'n/a')} "
            f"({plan.get('lr_schedule', 'n/a')})"
        )
        if plan.get("weight_decay") is not None:
            optimiser += f", weight decay {plan['weight_decay']}"
        budget = (
            f"{plan.get('num_epochs', '?')} epochs \u00d7 {plan.get('steps_per_epoch', '?')} steps"
        )
        rows.append(
            [
                escape(name),
                escape(_join(plan.get("patch_size"))),
                format_number(plan.get("batch_size"), ".0f"),
                escape(_join(plan.get("spacing"))),
                escape(plan.get("network", "n/a")),
                escape(_join(net.get("features"), ", ")),
                escape(optimiser),
                escape(plan.get("loss", "n/a")),
                escape(budget),
                escape(plan.get("num_classes", "n/a")),
            ]
        )
        if plan.get("reasons"):
            items = "".join(
                f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in plan["reasons"].items()
            )
            reasons.append(
                f"<details><summary>Why these choices ({escape(name)})</summary>"
                f"<dl>{items}</dl></details>"
            )
    header = [
        "configuration",
        "patch (voxels)",
        "batch",
        "spacing (mm)",
        "network",
        "features per stage",
        "optimiser",
        "loss",
        "budget",
        "classes",
    ]
    return table(rows, header) + "".join(reasons)


def _join(values: Any, sep: str = " \u00d7 ") -> str:
    if isinstance(values, (list, tuple)):
        return sep.join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
    return "n/a" if values is None else str(values)


# -- metrics and boxplots --------------------------------------------------------------------


def _no_evaluation(results: Results) -> str:
    return note(
        f"No evaluation yet: no summary.json under {results.root / 'evaluation'} "
        "(run 'medseg evaluate --pred PRED --ref REF --out RESULTS/evaluation/CONFIG')."
    )


def _metrics(results: Results) -> str:
    if not results.evaluations:
        return _no_evaluation(results)
    return "".join(_metric_table(results, evaluation) for evaluation in results.evaluations)


def _metric_table(results: Results, evaluation: Evaluation) -> str:
    summary = evaluation.summary
    per_label: Mapping[str, Any] = summary.get("per_label") or {}
    top = "".join(f'<th colspan="3">{escape(_METRIC_NAMES[m])}</th>' for m in TABLE_METRICS)
    sub = "<th>mean \u00b1 std</th><th>median</th><th>NaN</th>" * len(TABLE_METRICS)
    rows = [(results.label_name(label), stats, "") for label, stats in per_label.items()]
    rows.append(("all labels", summary.get("overall") or {}, ' class="all"'))
    body = ""
    for label, stats, css in rows:
        stats = stats if isinstance(stats, dict) else {}
        cells = "".join(_stat_cells(stats.get(m) or {}, m) for m in TABLE_METRICS)
        body += f"<tr{css}><td>{escape(label)}</td>{cells}</tr>"
    options = summary.get("options") or {}
    caption = (
        f"{escape(summary.get('n_cases', '?'))} cases. NaN: cases where the metric is undefined "
        "(for example HD95 when the reference or the prediction is empty), left out of mean, std "
        f"and median. Std is the population std. NSD at {escape(options.get('tolerance_mm', '?'))} "
        f"mm; HD95 {escape(options.get('hd95_mode', '?'))}."
    )
    return (
        f"<h3>{escape(evaluation.name)}</h3><table><caption>{caption}</caption><thead>"
        f'<tr><th rowspan="2">label</th>{top}</tr>'
        f"<tr>{sub}</tr></thead><tbody>{body}</tbody></table>"
    )


def _stat_cells(stats: Mapping[str, Any], metric: str) -> str:
    fmt = ".2f" if metric in _DISTANCES else ".3f"
    mean, std = format_number(stats.get("mean"), fmt), format_number(stats.get("std"), fmt)
    both = mean if mean.endswith("n/a") else f"{mean} \u00b1 {std[1:]}"
    cells = [
        both,
        format_number(stats.get("median"), fmt),
        format_number(stats.get("nan_count"), ".0f"),
    ]
    return "".join(f'<td class="num">{c[1:]}</td>' for c in cells)


def _boxplots(results: Results) -> str:
    if not results.evaluations:
        return _no_evaluation(results)
    parts = []
    for evaluation in results.evaluations:
        if not evaluation.rows:
            parts.append(note(f"{evaluation.name}: no per_case.csv in {evaluation.path}."))
            continue
        names = [results.label_name(label) for label in evaluation.labels]
        figure = figures.dice_boxplot(
            evaluation.rows, evaluation.labels, title=evaluation.name, names=names
        )
        parts.append(
            f'<figure><img src="{figures.to_data_uri(figure)}" '
            f'alt="Dice per case, {escape(evaluation.name)}">'
            "<figcaption>One dot per case; boxes: quartiles and median; NaN Dice left out."
            "</figcaption></figure>"
        )
    return '<div class="figures">' + "".join(parts) + "</div>"


# -- training --------------------------------------------------------------------------------


def _training(results: Results) -> str:
    if not results.folds:
        return note(f"No trained folds: no {results.root}/<config>/fold_<k> folders.")
    rows, plots = [], []
    for fold in results.folds:
        name = f"{fold.configuration} {fold.name}"
        if not fold.log:
            rows.append(
                [
                    escape(fold.configuration),
                    escape(fold.name),
                    "no log.csv (or no epoch logged)",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            continue
        last = fold.log[-1]
        ema = [r.get("val_dice_ema", math.nan) for r in fold.log]
        finite = [v for v in ema if not math.isnan(v)]
        seconds = sum(
            r.get("epoch_seconds", 0.0)
            for r in fold.log
            if not math.isnan(r.get("epoch_seconds", 0.0))
        )
        waits = [r.get("data_wait_share", math.nan) for r in fold.log]
        waits = [w for w in waits if not math.isnan(w)]
        rows.append(
            [
                escape(fold.configuration),
                escape(fold.name),
                format_number(last.get("epoch"), ".0f"),
                format_number(last.get("train_loss"), ".4f"),
                format_number(last.get("val_dice")),
                format_number(max(finite) if finite else math.nan),
                format_number(seconds / 60, ".1f"),
                format_number(100 * sum(waits) / len(waits) if waits else math.nan, ".0f"),
            ]
        )
        figure = figures.training_curves(fold.log, title=name)
        plots.append(
            f'<figure><img class="wide" src="{figures.to_data_uri(figure, dpi=75)}" '
            f'alt="training curves {escape(name)}"></figure>'
        )
    header = [
        "configuration",
        "fold",
        "epochs",
        "last train loss",
        "last val Dice",
        "best EMA val Dice",
        "time (min)",
        "waiting for data (%)",
    ]
    caption = (
        "Online validation Dice is measured on validation patches during training, not on whole "
        "cases; the evaluation above is the honest number."
    )
    return table(rows, header, caption=caption) + "".join(plots)


# -- overlays (medseg.report.overlays) -------------------------------------------------------


def _cases(results: Results) -> str:
    if not results.evaluations:
        return _no_evaluation(results)
    return case_overlays(results)
