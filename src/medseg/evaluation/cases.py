"""Pair prediction and reference files by case id, and evaluate one pair.

The case id of a file is its name minus the image extension (``.nii.gz`` counts as one), so
nnU-Net style folders pair ``labelsTr/case_001.nii.gz`` with ``pred/case_001.nii.gz``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DatasetError, GeometryError, ImageIOError, listing
from medseg.evaluation.lesions import evaluate_lesions
from medseg.io import IMAGE_EXTENSIONS, Image, file_ending, grid_mismatches, read_image
from medseg.metrics import LesionWiseResult, evaluate_case, label_regions
from medseg.metrics.measure import label_values, size_columns

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CasePair:
    """One case: its id and the two files to compare."""

    case: str
    pred_path: Path
    ref_path: Path


@dataclass
class CaseResult:
    """What a worker returns for one case.

    Attributes:
        case: the case id.
        metrics: ``{label name: {column: value}}`` for the labels evaluated: the metrics
            (``METRIC_COLUMNS``) and sizes (``SIZE_COLUMNS``) of the ``per_case.csv`` row.
        ref_labels: non-zero reference values (without the ignore label).
        n_voxels: voxels that count (all minus ignored), for rows of absent labels.
        spacing: the case's voxel size in mm (array axis order), for sizes of absent labels.
        lesions: ``{label name: lesion-wise result}`` when lesion-wise evaluation was asked.
    """

    case: str
    metrics: dict[str, dict[str, float]]
    ref_labels: list[int] = field(default_factory=list)
    n_voxels: int = 0
    spacing: tuple[float, ...] = ()
    lesions: dict[str, LesionWiseResult] = field(default_factory=dict)


def case_files(folder: str | Path) -> dict[str, Path]:
    """``{case id: path}`` of the image files directly inside ``folder`` (hidden files skipped).

    Raises:
        ImageIOError: ``folder`` is not a folder.
        DatasetError: two files share a case id (``a.nii`` and ``a.nii.gz``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageIOError(f"{folder}: no such folder")
    cases: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or not _is_image(path.name):
            continue
        case = path.name[: -len(file_ending(path))]
        if case in cases:
            raise DatasetError(
                f"{folder}: case '{case}' has two files, {cases[case].name} and {path.name}; "
                "keep one"
            )
        cases[case] = path
    return cases


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def match_cases(
    pred_dir: str | Path, ref_dir: str | Path, *, cases: Sequence[str] | None = None
) -> list[CasePair]:
    """Pair every reference with the prediction of the same case id, sorted by case id.

    Predictions without a reference are ignored (with a warning). ``cases`` restricts the
    references to those case ids (e.g. one cross-validation fold).

    Raises:
        DatasetError: no reference files, or references without a prediction (listed).
    """
    preds, refs = case_files(pred_dir), case_files(ref_dir)
    if cases is not None:
        unknown = sorted(set(cases) - set(refs))
        if unknown:
            raise DatasetError(f"{ref_dir}: no reference for case(s) {', '.join(unknown[:5])}")
        refs = {case: refs[case] for case in cases}
    if not refs:
        raise DatasetError(f"{ref_dir}: no reference images ({', '.join(IMAGE_EXTENSIONS)})")
    missing = sorted(set(refs) - set(preds))
    if missing:
        raise DatasetError(
            f"{pred_dir}: no prediction for {len(missing)} reference case(s): "
            f"{listing(missing)}. Predict them, or evaluate against a reference folder "
            "without them."
        )
    extra = sorted(set(preds) - set(refs))
    if extra:
        logger.warning(
            "%s: %d prediction(s) without a reference are ignored: %s",
            pred_dir,
            len(extra),
            ", ".join(extra[:5]),
        )
    return [CasePair(case, preds[case], refs[case]) for case in sorted(refs)]


def read_pair(pair: CasePair) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read both label maps of a case and check they share a grid.

    Returns:
        ``(pred, ref, spacing)`` as integer arrays in array axis order.

    Raises:
        GeometryError: dimensionality, shape or spacing differ (the message names the case
            and both files). Origin/direction differences are only logged.
        ImageIOError: a file is unreadable, multi-channel or not an integer label map.
    """
    pred_image, ref_image = read_image(pair.pred_path), read_image(pair.ref_path)
    for image, path in ((pred_image, pair.pred_path), (ref_image, pair.ref_path)):
        if image.has_channels:
            raise ImageIOError(f"{path}: has {image.num_channels} channels; a label map has one")
    problems = grid_mismatches(pred_image, ref_image)
    fatal = [p for p in problems if p.split()[0] in ("dimensionality", "shape", "spacing")]
    if fatal:
        raise GeometryError(
            f"case '{pair.case}': prediction {pair.pred_path} and reference {pair.ref_path} "
            f"differ in {'; '.join(fatal)}. Resample the prediction onto the reference grid."
        )
    if problems:
        logger.warning(
            "case '%s': prediction and reference differ in %s", pair.case, "; ".join(problems)
        )
    return (
        label_array(pred_image, pair.pred_path),
        label_array(ref_image, pair.ref_path),
        ref_image.spacing,
    )


def label_array(image: Image, path: Path) -> np.ndarray:
    array = image.array
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return array
    if not np.array_equal(array, np.round(array)):
        raise ImageIOError(
            f"{path}: holds non-integer values; expected a label map (0 = background)"
        )
    return array.astype(np.int32)


def present_labels(array: np.ndarray, *, ignore_label: int | None = None) -> list[int]:
    """Sorted non-zero values of a label map, without ``ignore_label`` (see
    ``medseg.metrics.measure.label_values``: fast on large volumes)."""
    return label_values(array, ignore_label=ignore_label)


def evaluate_pair(pair: CasePair, options: dict[str, Any]) -> CaseResult:
    """Evaluate one case (runs in a worker process).

    Args:
        pair: the case.
        options: ``evaluate_case`` keywords; ``labels=None`` means every non-zero value of
            this case's reference or prediction. ``lesion_wise``: None, or the keywords of
            ``medseg.evaluation.lesions.evaluate_lesions`` (dilation, minimum volume, ...)
            plus ``labels``: the region names to score lesion by lesion (None: all).

    Returns:
        The case's metrics and sizes per label (``CaseResult``).
    """
    pred, ref, spacing = read_pair(pair)
    ignore = options.get("ignore_label")
    ref_labels = present_labels(ref, ignore_label=ignore)
    kwargs = dict(options)
    lesion_options = kwargs.pop("lesion_wise", None)
    if kwargs.get("labels") is None:
        kwargs["labels"] = sorted(set(ref_labels) | set(present_labels(pred, ignore_label=ignore)))
    n_voxels = int(ref.size if ignore is None else np.count_nonzero(ref != ignore))
    metrics = evaluate_case(pred, ref, spacing, **kwargs) if kwargs["labels"] else {}
    for row in metrics.values():  # sizes from the counts: ignored voxels are already out
        row.update(size_columns(row["tp"], row["fp"], row["fn"], spacing))
    lesions = {}
    if lesion_options is not None and kwargs["labels"]:
        lesion_options = dict(lesion_options)
        chosen = lesion_options.pop("labels", None)  # region names; None: every one
        regions = label_regions(kwargs["labels"])
        if chosen is not None:
            regions = {name: values for name, values in regions.items() if name in chosen}
        lesions = evaluate_lesions(
            pred,
            ref,
            spacing,
            regions,
            case=pair.case,
            ignore_label=ignore,
            hd95_mode=kwargs.get("hd95_mode", "max_directed"),
            surface=kwargs.get("surface", "voxel"),
            surface_connectivity=kwargs.get("connectivity", 1),
            threads=kwargs.get("threads"),
            **lesion_options,
        )
    return CaseResult(pair.case, metrics, ref_labels, n_voxels, tuple(spacing), lesions)
