"""``build_report``: one self-contained HTML file summarising a results folder.

The file has inline CSS and every figure as a base64 PNG, so it opens offline, can be mailed
and archived, and refers to nothing outside itself. Sections: header (dataset, date, medseg
version, configurations trained, device if recorded), plans (with the reasons behind each
choice), metrics per evaluation, per-case Dice boxplots, training curves per fold, and
overlays of the best, median and worst case; then the caller's ``extra_sections``. A piece
that is missing (no plans, no folds, no evaluation yet) is stated in its section instead.
"""

from __future__ import annotations

import datetime
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg import __version__
from medseg.errors import ConfigError, MedsegError
from medseg.fileutil import check_writable, write_text_atomic
from medseg.io import read_image
from medseg.report import figures
from medseg.report.results import (
    Evaluation,
    Results,
    case_paths,
    load_results,
    pick_cases,
    rank_cases,
)

REPORT_FILE = "report.html"
TABLE_METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "assd", "nsd")
_METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "hd95": "HD95 (mm)", "assd": "ASSD (mm)", "nsd": "NSD"}
_DISTANCES = {"hd95", "assd"}
_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;
max-width:1250px;margin:0 auto;padding:1.5em 2em 4em;line-height:1.45;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.3em;border-bottom:2px solid #e3e6ea;
padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em;margin-top:1.5em}
nav a{margin-right:1em;color:#1f5fa8;text-decoration:none}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #dde1e6;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f5f7}tr:nth-child(even) td{background:#fafbfc}td.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}tr.all td{font-weight:600}
table.meta th{width:14em}caption{caption-side:bottom;text-align:left;color:#666;font-size:.9em;
padding-top:.3em}details{margin:.4em 0}summary{cursor:pointer;color:#1f5fa8}dl{margin:.4em 1em}
dt{font-weight:600}dd{margin:0 0 .4em 1em}.note{color:#8a5300;background:#fff7e6;
border-left:4px solid #f0b429;padding:.4em .8em}.figures{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}figure img{max-width:100%;border:1px solid #e3e6ea}figcaption{font-size:.85em;
color:#444;max-width:420px}img.wide{max-width:100%}footer{margin-top:3em;color:#888;font-size:.8em}
"""


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
    target = check_writable(Path(out) if out is not None else Path(results) / REPORT_FILE, overwrite=overwrite)
    extras = _check_extra_sections(extra_sections)
    text = render_report(load_results(results), title=title, extra_sections=extras)
    # non-ASCII as character references: the file is the same whatever the locale's encoding
    write_text_atomic(target, text.encode("ascii", "xmlcharrefreplace").decode("ascii"))
    return target


def render_report(
    results: Results, *, title: str | None = None, extra_sections: Sequence[tuple[str, str]] = ()
) -> str:
    """The report of an already loaded results folder as an HTML string (see ``build_report``)."""
    title = title or f"medseg report: {results.dataset_name}"
    sections = [
        ("plans", "Plans", _plans(results)),
        ("metrics", "Metrics", _metrics(results)),
        ("dice", "Per-case Dice", _boxplots(results)),
        ("training", "Training", _training(results)),
        ("cases", "Best, median and worst case", _cases(results)),
    ]
    sections += [(f"extra-{i}", name, fragment) for i, (name, fragment) in enumerate(extra_sections, 1)]
    nav = "".join(f'<a href="#{key}">{_e(name)}</a>' for key, name, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{_e(name)}</h2>{content}</section>' for key, name, content in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1>{_header(results)}<nav>{nav}</nav>{body}"
        f"<footer>Generated by medseg {_e(__version__)}.</footer></body></html>\n"
    )


def _e(value: Any) -> str:
    return html.escape(str(value))


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _check_extra_sections(extra: Sequence[tuple[str, str]] | None) -> list[tuple[str, str]]:
    pairs = list(extra or [])
    for item in pairs:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise ConfigError(f"extra_sections must be (title, html_fragment) string pairs, got {item!r}")
    return [(str(name), str(fragment)) for name, fragment in pairs]


def _table(rows: Sequence[Sequence[str]], header: Sequence[str], *, caption: str = "") -> str:
    """A table of already escaped cells; a cell starting with ``\\x00`` is numeric."""

    def cell(tag: str, text: str) -> str:
        return f'<{tag} class="num">{text[1:]}</{tag}>' if text.startswith("\x00") else f"<{tag}>{text}</{tag}>"

    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell("td", c) for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{caption}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: Any, fmt: str = ".3f") -> str:
    """A numeric cell: formatted, or ``n/a`` for NaN/None/non-numbers."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "\x00n/a"
    return "\x00n/a" if math.isnan(number) else "\x00" + format(number, fmt)


def _join(values: Any, sep: str = " \u00d7 ") -> str:
    if isinstance(values, (list, tuple)):
        return sep.join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
    return "n/a" if values is None else str(values)


# -- header ----------------------------------------------------------------------------------


def _header(results: Results) -> str:
    trained: dict[str, list[str]] = {}
    for fold in results.folds:
        trained.setdefault(fold.configuration, []).append(fold.name.removeprefix("fold_"))
    rows = [
        ("Dataset", _e(results.dataset_name)),
        ("Dataset folder", _e(_dataset_folder(results))),
        ("Results folder", _e(results.root.resolve())),
        ("Generated", _e(datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))),
        ("medseg version", _e(__version__)),
        ("Configurations trained", _e("; ".join(f"{c} (folds {', '.join(f)})" for c, f in trained.items()) or "none")),
    ]
    if results.device:
        rows.append(("Device", _e(results.device)))
    table = '<table class="meta">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
    problems = "".join(_note(p) for p in results.problems)
    return table + problems


def _dataset_folder(results: Results) -> str:
    path = results.dataset_path
    if path is None:
        return "not recorded (no plans.json)"
    return str(path) if path.is_dir() else f"{path} (not found here: overlays are drawn without the image)"


# -- plans -----------------------------------------------------------------------------------


def _plans(results: Results) -> str:
    configs = (results.plans or {}).get("configurations")
    if not isinstance(configs, dict) or not configs:
        return _note(f"No plans: {results.root / 'plans.json'} is missing or has no configurations "
                     "(run 'medseg plan DATASET -o RESULTS').")
    rows, reasons = [], []
    for name, plan in configs.items():
        plan = plan if isinstance(plan, dict) else {}
        net = plan.get("network_config") or {}
        optimiser = f"{plan.get('optimizer', 'n/a')}, lr {plan.get('learning_rate', 'n/a')} ({plan.get('lr_schedule', 'n/a')})"
        if plan.get("weight_decay") is not None:
            optimiser += f", weight decay {plan['weight_decay']}"
        budget = f"{plan.get('num_epochs', '?')} epochs \u00d7 {plan.get('steps_per_epoch', '?')} steps"
        rows.append([_e(name), _e(_join(plan.get("patch_size"))), _num(plan.get("batch_size"), ".0f"),
                     _e(_join(plan.get("spacing"))), _e(plan.get("network", "n/a")),
                     _e(_join(net.get("features"), ", ")), _e(optimiser), _e(plan.get("loss", "n/a")),
                     _e(budget), _e(plan.get("num_classes", "n/a"))])
        if plan.get("reasons"):
            items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in plan["reasons"].items())
            reasons.append(f"<details><summary>Why these choices ({_e(name)})</summary><dl>{items}</dl></details>")
    header = ["configuration", "patch (voxels)", "batch", "spacing (mm)", "network", "features per stage",
              "optimiser", "loss", "budget", "classes"]
    return _table(rows, header) + "".join(reasons)


# -- metrics and boxplots --------------------------------------------------------------------


def _no_evaluation(results: Results) -> str:
    return _note(f"No evaluation yet: no summary.json under {results.root / 'evaluation'} "
                 "(run 'medseg evaluate --pred PRED --ref REF --out RESULTS/evaluation/CONFIG').")


def _metrics(results: Results) -> str:
    if not results.evaluations:
        return _no_evaluation(results)
    return "".join(_metric_table(results, evaluation) for evaluation in results.evaluations)


def _metric_table(results: Results, evaluation: Evaluation) -> str:
    summary = evaluation.summary
    per_label: Mapping[str, Any] = summary.get("per_label") or {}
    top = "".join(f'<th colspan="3">{_e(_METRIC_NAMES[m])}</th>' for m in TABLE_METRICS)
    sub = "<th>mean \u00b1 std</th><th>median</th><th>NaN</th>" * len(TABLE_METRICS)
    rows = [(results.label_name(label), stats, "") for label, stats in per_label.items()]
    rows.append(("all labels", summary.get("overall") or {}, ' class="all"'))
    body = ""
    for label, stats, css in rows:
        stats = stats if isinstance(stats, dict) else {}
        cells = "".join(_stat_cells(stats.get(m) or {}, m) for m in TABLE_METRICS)
        body += f"<tr{css}><td>{_e(label)}</td>{cells}</tr>"
    options = summary.get("options") or {}
    caption = (
        f"{_e(summary.get('n_cases', '?'))} cases. NaN: cases where the metric is undefined (for example "
        "HD95 when the reference or the prediction is empty), left out of mean, std and median. Std is the "
        f"population std. NSD at {_e(options.get('tolerance_mm', '?'))} mm; HD95 {_e(options.get('hd95_mode', '?'))}."
    )
    return (
        f"<h3>{_e(evaluation.name)}</h3><table><caption>{caption}</caption><thead>"
        f'<tr><th rowspan="2">label</th>{top}</tr><tr>{sub}</tr></thead><tbody>{body}</tbody></table>'
    )


def _stat_cells(stats: Mapping[str, Any], metric: str) -> str:
    fmt = ".2f" if metric in _DISTANCES else ".3f"
    mean, std = _num(stats.get("mean"), fmt), _num(stats.get("std"), fmt)
    both = mean if mean.endswith("n/a") else f"{mean} \u00b1 {std[1:]}"
    cells = [both, _num(stats.get("median"), fmt), _num(stats.get("nan_count"), ".0f")]
    return "".join(f'<td class="num">{c[1:]}</td>' for c in cells)


def _boxplots(results: Results) -> str:
    if not results.evaluations:
        return _no_evaluation(results)
    parts = []
    for evaluation in results.evaluations:
        if not evaluation.rows:
            parts.append(_note(f"{evaluation.name}: no per_case.csv in {evaluation.path}."))
            continue
        names = [results.label_name(label) for label in evaluation.labels]
        figure = figures.dice_boxplot(evaluation.rows, evaluation.labels, title=evaluation.name, names=names)
        parts.append(f'<figure><img src="{figures.to_data_uri(figure)}" alt="Dice per case, {_e(evaluation.name)}">'
                     "<figcaption>One dot per case; boxes: quartiles and median; NaN Dice left out.</figcaption></figure>")
    return '<div class="figures">' + "".join(parts) + "</div>"


# -- training --------------------------------------------------------------------------------


def _training(results: Results) -> str:
    if not results.folds:
        return _note(f"No trained folds: no {results.root}/<config>/fold_<k> folders.")
    rows, plots = [], []
    for fold in results.folds:
        name = f"{fold.configuration} {fold.name}"
        if not fold.log:
            rows.append([_e(fold.configuration), _e(fold.name), "no log.csv (or no epoch logged)", "", "", "", "", ""])
            continue
        last = fold.log[-1]
        ema = [r.get("val_dice_ema", math.nan) for r in fold.log]
        finite = [v for v in ema if not math.isnan(v)]
        seconds = sum(r.get("epoch_seconds", 0.0) for r in fold.log if not math.isnan(r.get("epoch_seconds", 0.0)))
        waits = [r.get("data_wait_share", math.nan) for r in fold.log]
        waits = [w for w in waits if not math.isnan(w)]
        rows.append([_e(fold.configuration), _e(fold.name), _num(last.get("epoch"), ".0f"),
                     _num(last.get("train_loss"), ".4f"), _num(last.get("val_dice")),
                     _num(max(finite) if finite else math.nan), _num(seconds / 60, ".1f"),
                     _num(100 * sum(waits) / len(waits) if waits else math.nan, ".0f")])
        figure = figures.training_curves(fold.log, title=name)
        plots.append(f'<figure><img class="wide" src="{figures.to_data_uri(figure, dpi=75)}" '
                     f'alt="training curves {_e(name)}"></figure>')
    header = ["configuration", "fold", "epochs", "last train loss", "last val Dice", "best EMA val Dice",
              "time (min)", "waiting for data (%)"]
    caption = ("Online validation Dice is measured on validation patches during training, not on whole "
               "cases; the evaluation above is the honest number.")
    return _table(rows, header, caption=caption) + "".join(plots)


# -- overlays --------------------------------------------------------------------------------


def _cases(results: Results) -> str:
    if not results.evaluations:
        return _no_evaluation(results)
    parts = []
    for evaluation in results.evaluations:
        picks = pick_cases(rank_cases(evaluation.rows))
        if not picks:
            why = "No case has a finite Dice to rank by." if evaluation.rows else f"No per_case.csv in {evaluation.path}."
            parts.append(f"<h3>{_e(evaluation.name)}</h3>" + _note(why))
            continue
        figs = "".join(_case_figure(results, evaluation, roles, case, dice) for roles, case, dice in picks)
        parts.append(f'<h3>{_e(evaluation.name)}</h3><div class="figures">{figs}</div>')
    legend = ("Cases ranked by their mean Dice over labels. Yellow: reference contour; blue: prediction "
              "contour; 3D cases show the axial slice with the most reference foreground.")
    return f"<p>{_e(legend)}</p>" + "".join(parts)


def _case_figure(results: Results, evaluation: Evaluation, roles: str, case: str, dice: float) -> str:
    per_label = ", ".join(f"{results.label_name(r['label'])}: {float(r['dice']):.3f}"
                          for r in evaluation.rows if r["case"] == case)
    caption = f"{roles}: {case}, mean Dice {dice:.3f} ({per_label})"
    paths = case_paths(results, evaluation, case)
    missing = [k for k in ("reference", "prediction") if paths[k] is None]
    if missing:
        note = _note(f"no overlay: {' and '.join(missing)} not found")
        return f"<figure><figcaption>{_e(caption)}</figcaption>{note}</figure>"
    notes = []
    try:
        reference, prediction = read_image(paths["reference"]), read_image(paths["prediction"])
        image = None
        if paths["image"] is None:
            notes.append("image not found in the dataset folder; contours drawn on black")
        else:
            image = read_image(paths["image"])
        figure, more = figures.case_overlay(reference, prediction, evaluation.regions, image=image,
                                            title=f"{roles}: {case}  (Dice {dice:.3f})")
    except (MedsegError, ValueError) as err:
        return f"<figure><figcaption>{_e(caption)}</figcaption>{_note(f'no overlay: {err}')}</figure>"
    extra = "".join(_note(n) for n in notes + more)
    return (f'<figure><img src="{figures.to_data_uri(figure)}" alt="{_e(case)}">'
            f"<figcaption>{_e(caption)}</figcaption>{extra}</figure>")
