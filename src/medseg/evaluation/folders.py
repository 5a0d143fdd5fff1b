"""``evaluate_folders``: a folder of predictions against a folder of references.

Writes ``OUT/per_case.csv`` (one row per case and label) and ``OUT/summary.json`` (per label
and overall: mean, std, median and NaN count of every metric), both atomically, and returns
the summary.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import multiprocessing
import numbers
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from medseg.data.labels import declared_ignore_label
from medseg.data.parallel import exit_with_parent
from medseg.device import available_cpus
from medseg.errors import ConfigError, DatasetError
from medseg.evaluation.cases import CasePair, CaseResult, evaluate_pair, match_cases
from medseg.fileutil import check_writable, csv_safe, write_json_atomic, write_text_atomic
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
from medseg.metrics.case import COUNT_COLUMNS, Labels

logger = logging.getLogger(__name__)

CSV_COLUMNS: tuple[str, ...] = ("case", "label", *METRIC_COLUMNS)
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
) -> dict[str, Any]:
    """Evaluate every reference in ``ref_dir`` against the same case in ``pred_dir``.

    Args:
        pred_dir: folder of predicted label maps (any ``medseg.io`` format).
        ref_dir: folder of reference label maps; cases pair by file name minus extension.
        out_dir: where ``per_case.csv`` and ``summary.json`` go (created if needed).
        labels: labels/regions (see ``medseg.metrics.label_regions``); default every
            non-zero value found in the references (a case lacking one gets its empty row).
        ignore_label: reference value whose voxels count in no metric (see
            ``evaluate_case``); ``"auto"`` (default): the ``ignore`` label (sparse
            annotations) of the ``dataset.json`` in ``ref_dir`` or its parent folder (as for
            ``DATASET/labelsTr``), None when there is none; None: no value is ignored.
        tolerance_mm: NSD tolerance in mm.
        hd95_mode: ``"max_directed"`` (default) or ``"pooled"``.
        surface: ``"voxel"`` (default) or ``"surfel"``.
        connectivity: voxel-surface neighbourhood (1 = face).
        jobs: worker processes; default the number of CPUs; 1 runs in this process.
        overwrite: replace existing output files.
        show_progress: draw a progress bar on stderr (when it is a terminal).
        cases: evaluate only these case ids (default: every reference).

    Returns:
        The summary written to ``summary.json`` (NaN where it has ``null``): ``n_cases``,
        ``labels``, ``per_label``, ``overall`` (see ``medseg.metrics.aggregate``) and
        ``options``.

    Raises:
        OverwriteError: an output exists and ``overwrite`` is False (checked before any work).
        GeometryError: a pair differs in shape or spacing (names the case).
        DatasetError, ImageIOError, ConfigError: missing cases, unreadable files, bad options.
    """
    out_dir = Path(out_dir)
    csv_path = check_writable(out_dir / PER_CASE_FILE, overwrite=overwrite)
    json_path = check_writable(out_dir / SUMMARY_FILE, overwrite=overwrite)
    if isinstance(ignore_label, str):
        if ignore_label != "auto":
            raise ConfigError(
                f"ignore_label must be an integer, 'auto' or None, got {ignore_label!r}"
            )
        ignore_label = _dataset_ignore_label(Path(ref_dir))
    options = _options(labels, ignore_label, tolerance_mm, hd95_mode, surface, connectivity)
    pairs = match_cases(pred_dir, ref_dir, cases=cases)
    results = _run(pairs, options, _jobs(jobs, len(pairs)), show_progress)
    regions = options["labels"] or {str(v): (v,) for v in _reference_labels(results)}
    if not regions:
        raise DatasetError(
            f"{ref_dir}: every reference is empty; pass the labels to evaluate (--labels)"
        )
    rows = _rows(results, regions, warn_extra=options["labels"] is None)
    summary = aggregate(rows)
    summary["labels"] = list(regions)
    summary["options"] = {
        **options,
        "labels": {name: list(values) for name, values in regions.items()},
    }
    summary["pred_dir"], summary["ref_dir"] = str(pred_dir), str(ref_dir)
    write_text_atomic(csv_path, format_csv(rows))
    write_json_atomic(json_path, json_safe(summary))
    logger.info("evaluated %d case(s); wrote %s and %s", len(pairs), csv_path, json_path)
    return summary


def _dataset_ignore_label(ref_dir: Path) -> int | None:
    """The ``ignore`` label of the dataset ``ref_dir`` belongs to (``DATASET/labelsTr``), or
    None."""
    for folder in (ref_dir, ref_dir.parent):
        if (folder / "dataset.json").is_file():
            return declared_ignore_label(folder)
    return None


def _options(
    labels: Labels | None,
    ignore_label: int | None,
    tolerance_mm: float,
    hd95_mode: str,
    surface: str,
    connectivity: int,
) -> dict[str, Any]:
    """Check the options before any file is read."""
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


def _jobs(jobs: int | None, n_cases: int) -> int:
    if jobs is not None and jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    return max(1, min(jobs or available_cpus(), n_cases))


def _run(
    pairs: Sequence[CasePair], options: dict[str, Any], jobs: int, show_progress: bool
) -> list[CaseResult]:
    """Evaluate all pairs, in worker processes when ``jobs > 1``; results in case order."""
    # disable=None: draw the bar only when stderr is a terminal, so logs and pipes stay clean
    bar = tqdm(
        total=len(pairs), desc="evaluate", unit="case", disable=None if show_progress else True
    )
    with bar:
        if jobs == 1:
            results = []
            for pair in pairs:
                results.append(evaluate_pair(pair, options))
                bar.update()
            return results
        # each worker uses its share of the CPUs for the k-d tree queries
        options = {**options, "threads": max(1, available_cpus() // jobs)}
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=context,
            initializer=exit_with_parent,  # no orphaned worker after a kill -9
            initargs=(os.getpid(),),
        ) as pool:
            futures = [pool.submit(evaluate_pair, pair, options) for pair in pairs]
            try:
                for future in as_completed(futures):
                    future.result()  # re-raise the first error at once
                    bar.update()
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
            return [future.result() for future in futures]


def _reference_labels(results: Sequence[CaseResult]) -> list[int]:
    return sorted({v for result in results for v in result.ref_labels})


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
            metrics = result.metrics.get(name) or empty_metrics(result.n_voxels)
            rows.append({"case": result.case, "label": name, **metrics})
    return rows


def format_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV text with the ``CSV_COLUMNS`` header; counts as ints, NaN as ``nan``.

    A case id or label name a spreadsheet would run as a formula (``=...``, ``@...``) gets
    a leading ``'`` (``medseg.fileutil.csv_safe``; ``csv_restore`` undoes it).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        names = [csv_safe(str(row["case"])), csv_safe(str(row["label"]))]
        writer.writerow([*names, *(_cell(name, row[name]) for name in METRIC_COLUMNS)])
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
