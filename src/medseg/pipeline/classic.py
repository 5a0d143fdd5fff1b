"""The classical baselines benchmarked like a network: ``medseg classic benchmark``.

``classic_benchmark`` runs methods of :data:`medseg.classic.CLASSIC` on a dataset's held-out
cases, writes each method's label maps in ``medseg predict``'s layout, evaluates them with
``medseg.evaluation.evaluate_folders`` (the evaluator of ``medseg evaluate``) and writes one
table: method, Dice, HD95 (mm) and seconds per case.

The split: the cases sorted by id, the first ``train_fraction`` (80 %) are the training cases
(atlases of ``multi_atlas``, the forest's training set), the rest are evaluated, by every
method, so all rows describe the same cases.

**Oracle seeds.** The interactive methods need seeds or an initial contour; the benchmark
takes them from the reference label (:func:`oracle_seeds`), so their rows are an upper bound
for a user's clicks, not a fully automatic result, and the table says so. Binary methods
(``threshold``, ``otsu``, ``region_grow``, ``graph_cut``, ``level_set``) segment the union
of the foreground labels (one foreground: the seeds of every label are foreground seeds);
label-aware ones (``multi_atlas``, ``forest``) segment every label.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.dataset import Dataset, load_dataset
from medseg.errors import ConfigError, DatasetError
from medseg.fileutil import check_writable, write_json_atomic, write_text_atomic
from medseg.pipeline.classic_run import (
    BINARY_METHODS,
    DEFAULT_METHODS,
    DEFAULT_OPTIONS,
    TRAINED_METHODS,
    _CaseReader,
    classic_registry,
    segment_binary,
)
from medseg.pipeline.classic_trained import (
    mean_label_dice,  # noqa: F401 - re-exported (the public name it had here)
    run_forest,
    run_multi_atlas,
    write_prediction,
)
from medseg.registry import Registry

log = logging.getLogger(__name__)

TABLE_JSON = "classic_benchmark.json"
TABLE_MD = "classic_benchmark.md"


def split_cases(
    dataset: Dataset, *, train_fraction: float = 0.8, cases: int | None = None
) -> tuple[list[str], list[str]]:
    """The training and evaluated case ids: the first ``train_fraction`` of the sorted ids
    train, the rest (at most ``cases`` of them, the first ones) are evaluated.

    Raises:
        ConfigError: ``train_fraction`` outside (0, 1) or ``cases`` below 1.
        DatasetError: fewer than two cases (nothing to train on or nothing to evaluate).
    """
    if not 0 < train_fraction < 1:
        raise ConfigError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if cases is not None and cases < 1:
        raise ConfigError(f"cases must be >= 1, got {cases}")
    ids = sorted(case.case_id for case in dataset.cases if case.label_path is not None)
    if len(ids) < 2:
        raise DatasetError(f"{dataset.root}: {len(ids)} labelled case(s); the benchmark needs 2")
    n_train = min(max(1, math.floor(train_fraction * len(ids))), len(ids) - 1)
    evaluated = ids[n_train:]
    return ids[:n_train], evaluated[:cases] if cases is not None else evaluated


def classic_benchmark(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    cases: int | None = None,
    train_fraction: float = 0.8,
    train_cases: int | None = 10,
    channel: int = 0,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    single_atlases: bool = True,
    cnn_minutes: float | None = None,
    cnn_device: str | None = "cpu",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Benchmark classical methods on a dataset's held-out cases; write the table.

    Writes, for each method ``M``: ``OUT/M/predictions/CASE<ending>`` (``medseg predict``'s
    layout), ``OUT/M/evaluation/{per_case.csv,summary.json}`` (``medseg evaluate``); and the
    table ``OUT/classic_benchmark.json`` and ``.md``.

    Args:
        dataset: a dataset folder (nnU-Net v2 / MSD / 2D folder layout).
        out: the output folder.
        methods: names in ``CLASSIC`` (binary ones segment the foreground union with oracle
            seeds; ``multi_atlas`` and ``forest`` segment every label).
        cases: evaluate at most this many held-out cases (default all).
        train_fraction: the share of sorted cases that trains (atlases, forest).
        train_cases: use at most this many training cases, evenly spread over the training
            split (None: all); multi-atlas registers every one of them to every case.
        channel: the image channel the methods see (e.g. 1, green, for DRIVE's RGB).
        method_options: per-method keyword options, e.g. ``{"forest": {"n_estimators": 20}}``
            (over :data:`DEFAULT_OPTIONS`).
        single_atlases: for ``multi_atlas``, also score each atlas alone (registered and
            propagated by itself) and report the median single atlas's Dice.
        cnn_minutes: also train medseg's U-Net on the training cases for this many minutes
            and add its row ``cnn`` on the evaluated cases
            (:func:`medseg.pipeline.classic_cnn.run_cnn`); None: no CNN row.
        cnn_device: the CNN's device (``cpu``, ``cuda``, None: auto).
        overwrite: replace existing outputs.

    Returns:
        The table: ``{"dataset", "n_train", "evaluated_cases", "rows": [...]}``, each row
        ``method``, ``scope`` (``foreground`` or ``labels``), ``dice`` (mean over cases; for
        ``labels`` the mean over labels of the per-label means), ``foreground_dice``,
        ``hd95_mm``, ``seconds_per_case``, ``oracle_seeds`` and, for ``multi_atlas``,
        ``median_single_atlas_dice``; ``forest`` also ``fit_s``; ``cnn`` also ``budget_min``,
        ``fit_s``, ``epochs``, ``steps`` and ``configuration``.

    Raises:
        ConfigError: an unknown method (listing ``CLASSIC``'s names) or option.
        DatasetError: too few labelled cases, or ``channel`` beyond the images' channels.
        OverwriteError: the table exists and ``overwrite`` is False.
    """
    out = Path(out)
    json_path = check_writable(out / TABLE_JSON, overwrite=overwrite)
    md_path = check_writable(out / TABLE_MD, overwrite=overwrite)
    method_options = {k: dict(v) for k, v in (method_options or {}).items()}
    _check_methods(classic_registry(), methods)
    data = load_dataset(dataset)
    train_ids, eval_ids = split_cases(data, train_fraction=train_fraction, cases=cases)
    train_ids = _spread(train_ids, train_cases)
    labels = dict(sorted(data.foreground_labels.items(), key=lambda kv: kv[1]))
    read = _CaseReader(data, channel)
    run = _Run(out, data, labels, train_ids, eval_ids, read, single_atlases, overwrite)
    rows = [_benchmark_method(run, method, method_options.get(method, {})) for method in methods]
    if cnn_minutes is not None:
        rows.append(_benchmark_method(run, "cnn", {"minutes": cnn_minutes, "device": cnn_device}))
    table = {
        "dataset": str(data.root),
        "dataset_name": data.name,
        "n_train": len(train_ids),
        "train_cases": train_ids,
        "evaluated_cases": eval_ids,
        "channel": channel,
        "rows": rows,
    }
    write_json_atomic(json_path, table)
    write_text_atomic(md_path, format_table(table))
    return table


def _check_methods(classic: Registry, methods: Sequence[str]) -> None:
    """Stop at an unknown or not benchmarked method, before any work."""
    for method in methods:
        classic.entry(method)  # an unknown name raises, listing CLASSIC's names
        if method not in BINARY_METHODS + TRAINED_METHODS:
            raise ConfigError(
                f"classic method '{method}' is not benchmarked; use "
                f"{', '.join(BINARY_METHODS + TRAINED_METHODS)}"
            )


@dataclass(frozen=True)
class _Run:
    """What every method of one benchmark run shares."""

    out: Path
    data: Dataset
    labels: dict[str, int]
    train_ids: list[str]
    eval_ids: list[str]
    read: _CaseReader
    single_atlases: bool
    overwrite: bool


def _benchmark_method(run: _Run, method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Segment the evaluated cases with ``method``, evaluate them; the method's table row."""
    from medseg.evaluation import evaluate_folders

    log.info("classic benchmark: %s on %d case(s)", method, len(run.eval_ids))
    method_out = run.out / method
    pred_dir = method_out / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {"method": method}
    foreground = {"foreground": tuple(run.labels.values())}
    if method in BINARY_METHODS:
        regions = foreground
        row["seconds"] = _run_binary(run, method, pred_dir, options)
    elif method == "cnn":
        from medseg.pipeline.classic_cnn import run_cnn

        regions = {**{name: (value,) for name, value in run.labels.items()}, **foreground}
        row.update(
            run_cnn(
                run.data,
                run.train_ids,
                run.eval_ids,
                pred_dir,
                method_out / "work",
                overwrite=run.overwrite,
                **options,
            )
        )
    else:
        regions = {**{name: (value,) for name, value in run.labels.items()}, **foreground}
        row.update(_run_trained(run, method, pred_dir, options))
    seconds = row.pop("seconds")
    summary = evaluate_folders(
        pred_dir,
        run.data.root / "labelsTr",
        method_out / "evaluation",
        cases=run.eval_ids,
        labels=regions,
        overwrite=run.overwrite,
        jobs=1,
    )
    return {**_scores(method, summary, run.labels), **row, **_timing(seconds)}


def _run_binary(run: _Run, method: str, pred_dir: Path, options: Mapping[str, Any]) -> list[float]:
    """Segment every evaluated case's foreground with oracle seeds; the seconds per case."""
    seconds = []
    for case_id in run.eval_ids:
        image, reference = run.read(case_id)
        prediction, spent = segment_binary(method, image, reference, **options)
        seconds.append(spent)
        write_prediction(prediction, pred_dir, case_id, run.data.file_ending, run.overwrite)
    return seconds


def _run_trained(
    run: _Run, method: str, pred_dir: Path, options: Mapping[str, Any]
) -> dict[str, Any]:
    """Train ``forest`` or ``multi_atlas`` on the training cases, segment the evaluated ones."""
    training = [run.read(case_id) for case_id in run.train_ids]
    if method == "forest":
        return run_forest(
            training, run.eval_ids, run.read, pred_dir, run.data, options, run.overwrite
        )
    return run_multi_atlas(
        training,
        run.eval_ids,
        run.read,
        pred_dir,
        run.data,
        {**DEFAULT_OPTIONS["multi_atlas"], **options},
        single_atlases=run.single_atlases,
        overwrite=run.overwrite,
    )


def _spread(ids: list[str], count: int | None) -> list[str]:
    """At most ``count`` of ``ids``, evenly spaced (all of them for None)."""
    if count is None or count >= len(ids):
        return ids
    if count < 1:
        raise ConfigError(f"train_cases must be >= 1, got {count}")
    picks = np.linspace(0, len(ids) - 1, count).round().astype(int)
    return [ids[i] for i in sorted(set(picks.tolist()))]


def _scores(method: str, summary: dict[str, Any], labels: Mapping[str, int]) -> dict[str, Any]:
    per_label = summary["per_label"]

    def mean(label: str, metric: str) -> float:
        value = per_label[label][metric]["mean"]
        return float("nan") if value is None else float(value)

    binary = method in BINARY_METHODS
    names = ["foreground"] if binary else list(labels)
    return {
        "scope": "foreground" if binary else "labels",
        "dice": float(np.nanmean([mean(n, "dice") for n in names])),
        "foreground_dice": mean("foreground", "dice"),
        "hd95_mm": float(np.nanmean([mean(n, "hd95") for n in names])),
        "n_cases": summary["n_cases"],
        "oracle_seeds": method in ("region_grow", "graph_cut", "level_set", "threshold"),
    }


def _timing(seconds: Sequence[float]) -> dict[str, float]:
    return {"seconds_per_case": round(float(np.mean(seconds)), 4) if seconds else float("nan")}


def format_table(table: Mapping[str, Any]) -> str:
    """The benchmark table as Markdown (what ``classic_benchmark.md`` holds).

    Example:
        >>> row = {"method": "otsu", "scope": "foreground", "dice": 0.5, "hd95_mm": 3.0,
        ...        "seconds_per_case": 0.01, "oracle_seeds": False}
        >>> "| otsu | foreground | 0.5000 |" in format_table({"dataset_name": "x", "rows": [row],
        ...     "n_train": 1, "evaluated_cases": ["a"]})
        True
    """
    lines = [
        f"# Classical baselines on {table['dataset_name']}",
        "",
        f"{len(table['evaluated_cases'])} evaluated case(s), {table['n_train']} training "
        "case(s) (atlases / forest). Dice and HD95 (mm) are means over cases; `labels` rows "
        "average the labels, `foreground` rows score the union of the labels. "
        "Rows marked * use oracle seeds or contours taken from the reference.",
        "",
        "| method | scope | Dice | HD95 mm | s / case | median single atlas Dice |",
        "|---|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        single = row.get("median_single_atlas_dice")
        budget = row.get("budget_min")
        name = row["method"] if budget is None else f"{row['method']} (U-Net, {budget:g} min)"
        lines.append(
            f"| {name}{' *' if row.get('oracle_seeds') else ''} | {row['scope']} | "
            f"{row['dice']:.4f} | {row['hd95_mm']:.2f} | {row['seconds_per_case']:.3f} | "
            f"{'' if single is None else f'{single:.4f}'} |"
        )
    return "\n".join(lines) + "\n"
