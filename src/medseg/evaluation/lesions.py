"""Lesion-wise evaluation of label maps: per-case results, ``lesions.csv`` rows, summary.

The metric itself (BraTS 2023 lesion-wise Dice/HD95 and detection counts) is
``medseg.metrics.lesions.lesion_wise``; this module applies it to every label or region of
a case (``evaluate_lesions``, called in the per-case worker), flattens the results into
``lesions.csv`` rows (``lesion_rows``, ``format_lesions_csv``) and summarises a dataset
(``summarize_lesions``, for ``summary.json["lesion_wise"]``). See docs/lesions.md.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.fileutil import csv_safe
from medseg.metrics.aggregate import describe
from medseg.metrics.distance import Hd95Mode
from medseg.metrics.lesions import (
    DEFAULT_DILATION_MM,
    DEFAULT_HD95_PENALTY_MM,
    DEFAULT_MIN_VOLUME_MM3,
    FOOTPRINTS,
    Footprint,
    LesionWiseResult,
    empty_lesion_result,
    lesion_wise,
)
from medseg.metrics.surface import SurfaceMode

logger = logging.getLogger(__name__)

LESIONS_FILE = "lesions.csv"
LESION_CSV_COLUMNS: tuple[str, ...] = (
    "case",
    "label",
    "kind",
    "lesion_id",
    "ref_volume_mm3",
    "pred_volume_mm3",
    "dice",
    "hd95",
    "pred_ids",
    "centroid",
)
_INT_COLUMNS = ("lesion_id",)
_FLOAT_COLUMNS = ("ref_volume_mm3", "pred_volume_mm3", "dice", "hd95")


def evaluate_lesions(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    regions: Mapping[str, tuple[int, ...]],
    *,
    case: str = "",
    ignore_label: int | None = None,
    dilation_mm: float = DEFAULT_DILATION_MM,
    min_volume_mm3: float = DEFAULT_MIN_VOLUME_MM3,
    connectivity: int | None = None,
    hd95_penalty_mm: float = DEFAULT_HD95_PENALTY_MM,
    footprint: Footprint = "ellipsoid",
    hd95_mode: Hd95Mode = "max_directed",
    surface: SurfaceMode = "voxel",
    surface_connectivity: int = 1,
    threads: int | None = None,
) -> dict[str, LesionWiseResult]:
    """Lesion-wise results of every label or region of one case.

    Args:
        pred: ``(*spatial)`` integer predicted label map, 2D or 3D.
        ref: ``(*spatial)`` integer reference label map, same shape.
        spacing: voxel size in mm per array axis.
        regions: ``{name: label values}`` (``medseg.metrics.label_regions``); a region's
            mask is the union of its values.
        case: case id, for the log message.
        ignore_label: reference value whose voxels are background in both masks.
        dilation_mm, min_volume_mm3, connectivity, hd95_penalty_mm, footprint: lesion
            matching options (``medseg.metrics.lesions.lesion_wise``; BraTS-GLI defaults).
        hd95_mode, surface, surface_connectivity, threads: the per-case ``hd95`` options, so
            lesion HD95 has the definition of the per-case column.

    Returns:
        ``{region name: LesionWiseResult}`` (``single_component`` marks a region whose
        lesion-wise scores repeat the per-case ones; ``evaluate_folders`` warns).

    Raises:
        GeometryError: shapes or spacing differ, or the maps are not 2D/3D.
        ConfigError: a bad option.

    Example:
        >>> ref = np.zeros((6, 9), int); ref[1:3, 1:3] = 1; ref[1:3, 6:8] = 1
        >>> res = evaluate_lesions(
        ...     ref, ref, (1.0, 1.0), {"tumour": (1,)}, dilation_mm=1.0, min_volume_mm3=0
        ... )
        >>> res["tumour"].tp, res["tumour"].lesion_dice
        (2, 1.0)
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    valid = None if ignore_label is None else ref != ignore_label
    results = {}
    for name, values in regions.items():
        pred_mask, ref_mask = np.isin(pred, values), np.isin(ref, values)
        if valid is not None:
            pred_mask &= valid
            ref_mask &= valid
        result = lesion_wise(
            pred_mask,
            ref_mask,
            spacing,
            dilation_mm=dilation_mm,
            min_volume_mm3=min_volume_mm3,
            connectivity=connectivity,
            hd95_penalty_mm=hd95_penalty_mm,
            footprint=footprint,
            hd95_mode=hd95_mode,
            surface=surface,
            surface_connectivity=surface_connectivity,
            threads=threads,
        )
        if result.single_component:  # D: evaluate_folders warns once per label
            logger.debug(
                "label %s of case %s has one component; lesion-wise metrics equal the "
                "per-case ones",
                name,
                case,
            )
        results[name] = result
    return results


def lesion_rows(case: str, label_name: str, result: LesionWiseResult) -> list[dict[str, Any]]:
    """One ``lesions.csv`` row per lesion of ``result`` (keys ``LESION_CSV_COLUMNS``).

    ``pred_ids`` is the space-separated list of matched predicted component labels and
    ``centroid`` the space-separated centre index (array axis order).

    Example:
        >>> ref = np.zeros((5, 5), bool); ref[1:4, 1:4] = True
        >>> row = lesion_rows("c1", "1", lesion_wise(ref, ref, (1.0, 1.0)))[0]
        >>> row["kind"], row["dice"], row["pred_ids"], row["centroid"]
        ('small', 1.0, '1', '2.0 2.0')
    """
    return [
        {
            "case": case,
            "label": label_name,
            "kind": lesion.kind,
            "lesion_id": lesion.lesion_id,
            "ref_volume_mm3": lesion.ref_volume_mm3,
            "pred_volume_mm3": lesion.pred_volume_mm3,
            "dice": lesion.dice,
            "hd95": lesion.hd95,
            "pred_ids": " ".join(str(i) for i in lesion.pred_ids),
            "centroid": " ".join(repr(float(c)) for c in lesion.centroid),
        }
        for lesion in result.lesions
    ]


def format_lesions_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV text with the ``LESION_CSV_COLUMNS`` header; NaN as ``nan``.

    A case id or label name a spreadsheet would run as a formula gets a leading ``'``
    (``medseg.fileutil.csv_safe``).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LESION_CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(name, row[name]) for name in LESION_CSV_COLUMNS])
    return buffer.getvalue()


def _cell(name: str, value: Any) -> Any:
    if name in _INT_COLUMNS:
        return str(int(value))
    if name in _FLOAT_COLUMNS:
        value = float(value)
        return "nan" if math.isnan(value) else repr(value)
    return csv_safe(str(value))


def summarize_lesions(
    per_case_results: Mapping[str, Mapping[str, LesionWiseResult]],
    *,
    labels: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Dataset summary of lesion-wise results, for ``summary.json["lesion_wise"]``.

    Per label: lesion counts summed over cases (``n_cases``, ``n_ref``, ``n_pred``,
    ``n_small``, ``tp``, ``fp``, ``fn``), detection ``precision``, ``recall`` and ``f1``
    of the summed counts (NaN for 0/0), and ``lesion_dice`` / ``lesion_hd95``:
    ``medseg.metrics.describe`` (mean, std, median, n, nan_count) of the per-case scores, as
    BraTS ranks by the mean over cases of the per-case lesion-wise scores.

    Args:
        per_case_results: ``{case: {label: LesionWiseResult}}`` (``evaluate_lesions`` output
            per case).
        labels: the labels to summarise, in order; a case without a result for one of them
            counts as both masks empty there (no lesion, Dice 1, HD95 0, as BraTS). Default:
            the labels found in the results, in first-seen order, each over the cases that
            have it.
        options: the lesion options used (stored as given under ``"options"``).

    Returns:
        ``{"per_label": {label: {...}}, "options": {...}}``.

    Example:
        >>> ref = np.zeros((5, 5), bool); ref[1:4, 1:4] = True
        >>> res = {"a": {"1": lesion_wise(ref, ref, (1.0, 1.0), min_volume_mm3=0)}}
        >>> summarize_lesions(res)["per_label"]["1"]["f1"]
        1.0
    """
    by_label: dict[str, list[LesionWiseResult]] = {}
    if labels is None:
        for results in per_case_results.values():
            for label, result in results.items():
                by_label.setdefault(label, []).append(result)
    else:
        empty = empty_lesion_result()
        for label in labels:
            by_label[label] = [r.get(label, empty) for r in per_case_results.values()]
    per_label = {}
    for label, results in by_label.items():
        counts = {
            key: sum(getattr(r, key) for r in results)
            for key in ("n_ref", "n_pred", "n_small", "tp", "fp", "fn")
        }
        tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
        per_label[label] = {
            "n_cases": len(results),
            **counts,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "lesion_dice": describe([r.lesion_dice for r in results]),
            "lesion_hd95": describe([r.lesion_hd95 for r in results]),
        }
    return {"per_label": per_label, "options": dict(options or {})}


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def lesion_outputs(
    per_case: Mapping[str, Mapping[str, LesionWiseResult]],
    regions: Mapping[str, tuple[int, ...]],
    options: Mapping[str, Any],
) -> tuple[str, dict[str, Any]]:
    """``lesions.csv`` text and ``summary["lesion_wise"]`` of a folder evaluation.

    Args:
        per_case: ``{case: {label name: result}}`` (``evaluate_lesions`` of each case).
        regions: the evaluated labels, in summary order.
        options: ``check_lesion_options``'s result (its ``labels`` restrict the labels).

    Returns:
        ``(csv_text, summary)``; also warns once per label that is one component everywhere.
    """
    chosen = options["labels"]
    names = [name for name in regions if chosen is None or name in chosen]
    summary = summarize_lesions(per_case, labels=names, options=options)
    rows = [
        row
        for case, results in per_case.items()
        for name, result in results.items()
        if name in names
        for row in lesion_rows(case, name, result)
    ]
    _warn_single_components(per_case, names)
    return format_lesions_csv(rows), summary


def _warn_single_components(
    per_case: Mapping[str, Mapping[str, LesionWiseResult]], names: Sequence[str]
) -> None:
    """One warning per label whose masks have a single component in every case that has one:
    there lesion-wise metrics only repeat the per-case ones (a whole organ, not lesions)."""
    for name in names:
        scored = [res[name] for res in per_case.values() if name in res]
        scored = [res for res in scored if res.n_ref or res.n_pred]
        if scored and all(res.single_component for res in scored):
            logger.warning(
                "label %s has one component in each of its %d case(s); lesion-wise metrics "
                "equal the per-case ones there (meant for labels with many lesions)",
                name,
                len(scored),
            )


def check_lesion_options(
    given: Mapping[str, Any] | None, regions: Mapping[str, tuple[int, ...]] | None
) -> dict[str, Any]:
    """The lesion-wise options of ``evaluate_folders`` with their defaults, checked before
    any file is read: ``dilation_mm`` (3.0), ``min_volume_mm3`` (50.0), ``hd95_penalty_mm``
    (374.0), ``footprint`` (``"ellipsoid"`` or ``"brats"``), ``connectivity`` (see
    ``medseg.metrics.lesions.lesion_wise``) and ``labels``: the label or region names to
    score lesion by lesion (default all). ``regions``: the evaluated labels when given,
    else None (every label value, named by its value, e.g. ``"2"``).

    Raises:
        ConfigError: an unknown option, a negative or non-finite number, an unknown footprint,
            or lesion labels that are not evaluated.
    """
    options: dict[str, Any] = {
        "dilation_mm": DEFAULT_DILATION_MM,
        "min_volume_mm3": DEFAULT_MIN_VOLUME_MM3,
        "hd95_penalty_mm": DEFAULT_HD95_PENALTY_MM,
        "footprint": "ellipsoid",
        "connectivity": None,
        "labels": None,
    }
    unknown = sorted(set(given or {}) - set(options))
    if unknown:
        raise ConfigError(
            f"unknown lesion-wise option(s) {', '.join(unknown)}; known: {', '.join(options)}"
        )
    options.update(given or {})
    for name in ("dilation_mm", "min_volume_mm3", "hd95_penalty_mm"):
        value = options[name]
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
            raise ConfigError(f"lesion-wise {name} must be a finite number >= 0, got {value!r}")
        options[name] = float(value)
    if options["footprint"] not in FOOTPRINTS:
        raise ConfigError(
            f"lesion-wise footprint must be one of {', '.join(FOOTPRINTS)}, "
            f"got {options['footprint']!r}"
        )
    if options["labels"] is not None:
        names = [str(name) for name in options["labels"]]
        known = list(regions) if regions is not None else None
        unknown = [n for n in names if (n not in known if known is not None else not n.isdigit())]
        if unknown or not names:
            raise ConfigError(
                f"lesion-wise labels {', '.join(unknown) or '(none)'} not among the evaluated "
                f"labels ({', '.join(known) if known is not None else 'label values'})"
            )
        options["labels"] = names
    return options
