"""``evaluate_folders``: a folder of predictions against a folder of references.

Writes ``OUT/per_case.csv`` (one row per case and label: metrics and sizes) and
``OUT/summary.json`` (per label and overall: mean, std, median and NaN count of every column;
pooled Dice/IoU, per-image means, Bland-Altman of the sizes and size strata), both
atomically, and returns the summary.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from medseg.data.labels import declared_ignore_label
from medseg.device import available_cpus
from medseg.errors import ConfigError, DatasetError
from medseg.evaluation.cases import CasePair, CaseResult, evaluate_pair, match_cases
from medseg.evaluation.lesions import LESIONS_FILE, check_lesion_options, lesion_outputs
from medseg.evaluation.pool import run_cases, worker_count
from medseg.fileutil import check_writable, csv_safe, write_json_atomic, write_text_atomic
from medseg.io import read_geometry
from medseg.metrics import (
    DEFAULT_TOLERANCE_MM,
    HD95_MODES,
    METRIC_COLUMNS,
    SURFACE_MODES,
    Hd95Mode,
    SurfaceMode,
    aggregate,
    empty_metrics,
    label_regions,
)
from medseg.metrics.aggregate import (
    bland_altman_by_label,
    per_image_summary,
    pooled_overlap,
    size_unit,
    stratify_by_size,
)
from medseg.metrics.case import COUNT_COLUMNS, Labels
from medseg.metrics.measure import SIZE_COLUMNS, size_columns

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Columns of ``per_case.csv``: the metrics, then the sizes (``vol_*`` in 3D, ``area_*`` in 2D).
ROW_COLUMNS: tuple[str, ...] = (*METRIC_COLUMNS, *SIZE_COLUMNS)
CSV_COLUMNS: tuple[str, ...] = ("case", "label", *ROW_COLUMNS)
#: Metrics averaged per image and per size stratum (every column but the raw counts).
MEAN_COLUMNS: tuple[str, ...] = tuple(c for c in ROW_COLUMNS if c not in COUNT_COLUMNS)
PER_CASE_FILE = "per_case.csv"
SUMMARY_FILE = "summary.json"


def evaluate_folders(
    pred_dir: str | os.PathLike[str],
    ref_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    labels: Labels | None = None,
    ignore_label: int | Literal["auto"] | None = "auto",
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
    hd95_mode: Hd95Mode = "max_directed",
    surface: SurfaceMode = "voxel",
    connectivity: int = 1,
    jobs: int | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
    cases: Sequence[str] | None = None,
    size_bins_ml: Sequence[float] | None = None,
    lesion_wise: bool = False,
    lesion_options: Mapping[str, Any] | None = None,
    executor: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Evaluate every reference in ``ref_dir`` against the same case in ``pred_dir``.

    Args:
        pred_dir, ref_dir: folders of predicted and reference label maps (any ``medseg.io``
            format); cases pair by file name minus extension.
        out_dir: where ``per_case.csv`` and ``summary.json`` go (created if needed).
        labels: labels/regions (see ``medseg.metrics.label_regions``); default every
            non-zero value found in the references (a case lacking one gets its empty row).
        ignore_label: reference value whose voxels count in no metric; ``"auto"``: the
            ``ignore`` label of the ``dataset.json`` in ``ref_dir`` or its parent, if any.
        tolerance_mm, hd95_mode, surface, connectivity: as ``evaluate_case`` (NSD tolerance
            in mm; ``"max_directed"`` or ``"pooled"``; ``"voxel"`` or ``"surfel"``; 1 = face).
        jobs, executor, address: worker processes (default: the CPUs; 1: this process), or
            ``"ray"`` (and a Ray address): each case a Ray task.
        overwrite, show_progress: replace existing outputs; draw a progress bar (terminal).
        cases: evaluate only these case ids (default: every reference).
        size_bins_ml: reference-volume edges in mL for the ``stratified`` summary, e.g.
            ``(0.5, 2, 10)``; default tertiles of each label's reference sizes (3D only).
        lesion_wise: also score lesion by lesion (BraTS 2023, docs/lesions.md; ``lesions.csv``).
        lesion_options: its options (``medseg.evaluation.lesions.check_lesion_options``:
            dilation, minimum volume, penalty, footprint, and the labels to score).

    Returns:
        The summary written to ``summary.json`` (NaN where it has ``null``): ``n_cases``,
        ``labels``, ``per_label`` and ``overall`` (``medseg.metrics.aggregate``), the
        ``dataset_summaries``, ``lesion_wise`` (when asked) and ``options``.

    Raises:
        OverwriteError: an output exists and ``overwrite`` is False (checked before any work).
        GeometryError, DatasetError, ImageIOError, ConfigError: a pair differs in grid (names
            the case), missing cases, unreadable files, bad options.
    """
    names = (PER_CASE_FILE, SUMMARY_FILE, *([LESIONS_FILE] if lesion_wise else []))
    csv_path, json_path, *lesions_path = (
        check_writable(Path(out_dir) / name, overwrite=overwrite) for name in names
    )
    options = _options(
        labels, ignore_label, Path(ref_dir), tolerance_mm, hd95_mode, surface, connectivity
    )
    if lesion_wise:
        options["lesion_wise"] = check_lesion_options(lesion_options, options["labels"])
    pairs = match_cases(pred_dir, ref_dir, cases=cases)
    size_bins = _size_bins(size_bins_ml, pairs[0].ref_path)
    results = _run(pairs, options, worker_count(jobs, len(pairs)), show_progress, executor, address)
    regions = _regions(options["labels"], results, ref_dir)
    rows = _rows(results, regions, warn_extra=options["labels"] is None)
    summary = {**aggregate(rows, metrics=ROW_COLUMNS), **dataset_summaries(rows, size_bins)}
    labels_used = {k: list(v) for k, v in regions.items()}
    summary |= {"labels": list(regions), "pred_dir": str(pred_dir), "ref_dir": str(ref_dir)}
    summary["options"] = {**options, "labels": labels_used, "size_bins_ml": size_bins}
    if lesion_wise:
        lesion_csv, summary["lesion_wise"] = lesion_outputs(
            {result.case: result.lesions for result in results}, regions, options["lesion_wise"]
        )
        write_text_atomic(lesions_path[0], lesion_csv)
    write_text_atomic(csv_path, format_csv(rows))
    write_json_atomic(json_path, json_safe(summary))
    logger.info("evaluated %d case(s); wrote %s and %s", len(pairs), csv_path, json_path)
    return summary


def dataset_summaries(
    rows: Sequence[dict[str, Any]], size_bins: Sequence[float] | None = None
) -> dict[str, Any]:
    """The dataset-level parts of ``summary.json`` beside the per-case means.

    Returns:
        ``{"pooled", "per_image", "size_unit", "bland_altman", "stratified"}`` (see
        ``evaluate_folders`` and the functions of ``medseg.metrics.aggregate``).
    """
    return {
        "pooled": pooled_overlap(rows),
        "per_image": per_image_summary(rows, metrics=MEAN_COLUMNS),
        "size_unit": size_unit(rows),
        "bland_altman": bland_altman_by_label(rows),
        "stratified": stratify_by_size(rows, metrics=MEAN_COLUMNS, bins=size_bins),
    }


def _size_bins(size_bins_ml: Sequence[float] | None, first_ref: Path) -> list[float] | None:
    """Check ``size_bins_ml`` before any work: positive, increasing, and 3D references."""
    if size_bins_ml is None:
        return None
    bins = [float(b) for b in size_bins_ml]
    if not bins or not all(math.isfinite(b) and b > 0 for b in bins) or bins != sorted(set(bins)):
        raise ConfigError(
            f"size bins must be positive, finite and increasing mL values, got {bins}"
        )
    shape, _ = read_geometry(first_ref)
    if len(shape) != 3:
        raise ConfigError(
            f"{first_ref}: size bins are volumes in mL, but the references are "
            f"{len(shape)}D; leave them out to stratify by tertiles of area"
        )
    return bins


def _dataset_ignore_label(ref_dir: Path) -> int | None:
    """The ``ignore`` label of the dataset ``ref_dir`` belongs to (``DATASET/labelsTr``), or
    None."""
    for folder in (ref_dir, ref_dir.parent):
        if (folder / "dataset.json").is_file():
            return declared_ignore_label(folder)
    return None


def _options(
    labels: Labels | None,
    ignore_label: int | Literal["auto"] | None,
    ref_dir: Path,
    tolerance_mm: float,
    hd95_mode: str,
    surface: str,
    connectivity: int,
) -> dict[str, Any]:
    """Check the options before any file is read (``"auto"``: the dataset's ignore label)."""
    if isinstance(ignore_label, str):
        if ignore_label != "auto":
            raise ConfigError(
                f"ignore_label must be an integer, 'auto' or None, got {ignore_label!r}"
            )
        ignore_label = _dataset_ignore_label(ref_dir)
    if hd95_mode not in HD95_MODES:
        raise ConfigError(f"hd95_mode must be one of {', '.join(HD95_MODES)}, got {hd95_mode!r}")
    if surface not in SURFACE_MODES:
        raise ConfigError(f"surface must be one of {', '.join(SURFACE_MODES)}, got {surface!r}")
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise ConfigError(f"tolerance must be a finite number of mm >= 0, got {tolerance_mm}")
    if ignore_label is not None:
        if isinstance(ignore_label, bool) or not isinstance(ignore_label, numbers.Integral):
            raise ConfigError(f"ignore_label must be an integer or None, got {ignore_label!r}")
        ignore_label = int(ignore_label)
    return {
        "labels": label_regions(labels) if labels is not None else None,
        "ignore_label": ignore_label,
        "tolerance_mm": float(tolerance_mm),
        "hd95_mode": hd95_mode,
        "surface": surface,
        "connectivity": connectivity,
    }


def _run(
    pairs: Sequence[CasePair],
    options: dict[str, Any],
    jobs: int,
    show_progress: bool,
    executor: str = "local",
    address: str | None = None,
) -> list[CaseResult]:
    """Evaluate all pairs, in worker processes when ``jobs > 1``; results in case order."""
    if jobs > 1 or executor != "local":  # each worker: its share of the CPUs for the k-d trees
        options = {**options, "threads": max(1, available_cpus() // jobs) if jobs > 1 else 1}
    worker = functools.partial(evaluate_pair, options=options)
    return run_cases(
        worker,
        pairs,
        jobs=jobs,
        desc="evaluate",
        show_progress=show_progress,
        executor=executor,
        address=address,
    )


def _regions(
    given: dict[str, tuple[int, ...]] | None, results: Sequence[CaseResult], ref_dir: Any
) -> dict[str, tuple[int, ...]]:
    """The evaluated labels: those given, else every non-zero value of the references."""
    values = sorted({v for result in results for v in result.ref_labels})
    regions = given or {str(v): (v,) for v in values}
    if not regions:
        raise DatasetError(
            f"{ref_dir}: every reference is empty; pass the labels to evaluate (--labels)"
        )
    return regions


def _rows(
    results: Sequence[CaseResult], regions: dict[str, tuple[int, ...]], *, warn_extra: bool
) -> list[dict[str, Any]]:
    """One row per case and label; a label absent from a case gets the both-empty row."""
    if warn_extra:
        extra = sorted({k for result in results for k in result.metrics} - set(regions), key=int)
        if extra:
            logger.warning("labels %s occur only in predictions; not evaluated", ", ".join(extra))
    rows = []
    for result in results:
        for name in regions:
            row = result.metrics.get(name)
            if row is None:
                row = {**empty_metrics(result.n_voxels), **size_columns(0, 0, 0, result.spacing)}
            rows.append({"case": result.case, "label": name, **row})
    return rows


def format_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] = CSV_COLUMNS) -> str:
    """Rows as CSV text with the ``columns`` header (``case``, ``label`` first, default
    ``CSV_COLUMNS``); counts as ints, NaN as ``nan``.

    A case id or label name a spreadsheet would run as a formula (``=...``, ``@...``) gets
    a leading ``'`` (``medseg.fileutil.csv_safe``; ``csv_restore`` undoes it).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        names = [csv_safe(str(row["case"])), csv_safe(str(row["label"]))]
        writer.writerow([*names, *(_cell(name, row[name]) for name in columns[2:])])
    return buffer.getvalue()


def _cell(name: str, value: float) -> str:
    if name in COUNT_COLUMNS:
        return str(int(value))
    return "nan" if math.isnan(value) else repr(float(value))


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` with every NaN/inf float replaced by None (strict JSON ``null``)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
