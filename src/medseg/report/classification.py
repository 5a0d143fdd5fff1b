"""The HTML report of a classification run: one self-contained file, like segmentation's.

Sections: the run (network, data, task, classes, training options), the metrics of each
evaluation found under ``RUN/evaluation/<name>/metrics.json`` (per class and macro, with the
confusion matrix and ROC curves), the training curves of each fold, and the Grad-CAM /
saliency overlays under ``RUN/explain/``. A missing piece is stated instead of failing.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError
from medseg.fileutil import check_writable
from medseg.report.html import REPORT_FILE, escape, format_number, note, page, table, write_html

_CLASS_COLUMNS = (
    ("accuracy", "ACC"),
    ("recall", "Sensitivity"),
    ("specificity", "Specificity"),
    ("precision", "PPV"),
    ("npv", "NPV"),
    ("f1", "F1"),
    ("mcc", "MCC"),
)


def build_classification_report(
    run: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``RUN/report.html`` (or ``out``) atomically and return its path.

    Raises:
        ConfigError: ``run`` is not a classification run folder (no ``config.json`` anywhere).
        OverwriteError: the report exists and ``overwrite`` is False.
    """
    run = Path(run)
    configs = sorted(run.glob("fold_*/config.json")) or sorted(run.glob("config.json"))
    if not run.is_dir() or not configs:
        raise ConfigError(
            f"{run}: not a classification run (no fold_*/config.json); "
            f"train with `medseg classify train DATA -o {run}`"
        )
    target = check_writable(
        Path(out) if out is not None else run / REPORT_FILE, overwrite=overwrite
    )
    config = json.loads(configs[0].read_text(encoding="utf-8"))
    info = _read_json(run / "run.json")
    sections = [
        ("run", "Run", _run_section(config, info, len(configs))),
        ("metrics", "Metrics", _metrics_section(run)),
        ("training", "Training", _training_section(run)),
        ("explain", "Where the network looks", _explain_section(run)),
    ]
    title = f"medseg classification report: {info.get('data', run.name)}"
    write_html(target, page(title, sections))
    return target


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _png(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _run_section(config: dict[str, Any], info: dict[str, Any], folds: int) -> str:
    rows = [
        ("data", info.get("data", "")),
        ("task", config.get("task", "")),
        ("network", f"{config.get('network')} {config.get('network_config') or ''}"),
        ("classes", ", ".join(config.get("class_names", [])) or "(regression)"),
        ("image shape", " x ".join(str(s) for s in config.get("image_shape", []))),
        ("channels", config.get("in_channels")),
        ("models (folds)", folds),
        (
            "training",
            f"{config.get('optimizer')} lr {config.get('learning_rate')}, batch "
            f"{config.get('batch_size')}, augmentation {config.get('augmentation')}, "
            f"class balance: {config.get('class_weighting')}",
        ),
        (
            "transfer",
            f"pretrained {config.get('pretrained') or 'no'}, freeze {config.get('freeze')}, "
            f"backbone lr x{config.get('backbone_lr_factor')}",
        ),
        ("budget", info.get("budget", "")),
        ("device", info.get("device", "")),
    ]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="meta">{body}</table>'


def _metrics_section(run: Path) -> str:
    found = sorted((run / "evaluation").glob("*/metrics.json"))
    if not found:
        return note("No evaluation yet: run `medseg classify evaluate` on a predictions table.")
    parts = []
    for path in found:
        summary = _read_json(path)
        parts.append(f"<h3>{escape(path.parent.name)} ({summary.get('n', '?')} images)</h3>")
        if summary.get("task") == "regression":
            parts.append(
                table(
                    [[format_number(summary.get(k)) for k in ("mae", "rmse", "r2", "pearson")]],
                    ["MAE", "RMSE", "R\u00b2", "Pearson r"],
                )
            )
            continue
        per_class = summary.get("per_class", {})
        aucs = summary.get("per_class_auc", {})
        rows = [
            [
                escape(name),
                *(format_number(values.get(k)) for k, _ in _CLASS_COLUMNS),
                format_number(aucs.get(name)),
                "\x00" + str(values.get("support", "")),
            ]
            for name, values in per_class.items()
        ]
        macro = summary.get("macro", {})
        rows.append(
            [
                "<b>macro</b>",
                *(format_number(macro.get(k)) for k, _ in _CLASS_COLUMNS),
                format_number(summary.get("roc_auc")),
                "\x00" + str(summary.get("n", "")),
            ]
        )
        caption = (
            f"Overall accuracy {summary.get('accuracy', float('nan')):.3f}, multi-class MCC "
            f"{summary.get('mcc') if summary.get('mcc') is not None else float('nan'):.3f}, "
            "ROC AUC "
            f"{summary.get('roc_auc') if summary.get('roc_auc') is not None else float('nan'):.3f} "
            "(one vs rest, macro, for more than two classes). Per-class rows are one vs rest."
        )
        parts.append(
            table(
                rows, ["class", *(name for _, name in _CLASS_COLUMNS), "AUC", "n"], caption=caption
            )
        )
        figures = [
            _png(path.parent / name, caption)
            for name, caption in (
                ("confusion.png", "Confusion matrix (rows: reference)"),
                ("roc.png", "ROC curves"),
            )
            if (path.parent / name).is_file()
        ]
        parts.append(f'<div class="figures">{"".join(figures)}</div>')
    return "".join(parts)


def _training_section(run: Path) -> str:
    curves = sorted(run.glob("fold_*/curves.png")) or sorted(run.glob("curves.png"))
    if not curves:
        return note("No training curves found.")
    return (
        '<div class="figures">'
        + "".join(_png(p, p.parent.name if p.parent != run else "training") for p in curves)
        + "</div>"
    )


def _explain_section(run: Path) -> str:
    overlays = sorted((run / "explain").glob("*.png"))[:24]
    if not overlays:
        return note("No explanations yet: run `medseg classify explain`.")
    return (
        "<p>Grad-CAM (or input-gradient saliency) over the image: where the evidence for the "
        'predicted class lies.</p><div class="figures">'
        + "".join(_png(p, p.stem) for p in overlays)
        + "</div>"
    )
