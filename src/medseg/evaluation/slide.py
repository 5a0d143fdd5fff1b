"""Evaluate a predicted slide mask against a reference label slide, tile by tile.

Whole-slide masks are too large to hold, but overlap metrics need only confusion counts,
and counts add up: ``evaluate_slide`` reads both masks in ``tile`` x ``tile`` regions of level
0, counts every (reference value, predicted value) pair in each (``np.unique`` on the paired
values), sums the counts, and derives each label's (or region's: a union of labels) TP, FP,
FN, TN and every overlap metric of ``medseg.metrics.confusion`` from the summed table. Memory
is one pair of tiles plus a table of the value pairs that occur. Areas are in mm^2 from the
slides' microns per pixel (NaN when neither slide records it).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError, DatasetError
from medseg.fileutil import check_writable, write_json_atomic
from medseg.io.slide import Slide, open_slide
from medseg.metrics import label_regions
from medseg.metrics.case import Labels
from medseg.metrics.confusion import ConfusionCounts, overlap_metrics

SlideSource = str | os.PathLike[str] | Slide


def pair_counts(pred: Slide, ref: Slide, *, tile: int = 2048) -> Counter[tuple[int, int]]:
    """``{(reference value, predicted value): pixels}`` over the prediction's level 0, read
    tile by tile; the reference is read at its pyramid level of the same size (a mask
    predicted at the training tiles' resolution is compared at that resolution).

    Raises:
        DatasetError: no reference level has the prediction's size (the message names both
            files and sizes).
    """
    level = reference_level(pred, ref)
    h, w = pred.levels[0].shape
    counts: Counter[tuple[int, int]] = Counter()
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            th, tw = min(tile, h - y), min(tile, w - x)
            p = pred.read_region(0, y, x, th, tw, fill=0)[..., 0]
            r = ref.read_region(level, y, x, th, tw, fill=0)[..., 0]
            counts.update(_tile_pairs(r, p))
    return counts


def reference_level(pred: Slide, ref: Slide) -> int:
    """The reference's pyramid level whose size is the prediction's level 0."""
    shape = pred.levels[0].shape
    for index, level in enumerate(ref.levels):
        if level.shape == shape:
            return index
    (ph, pw), (rh, rw) = shape, ref.levels[0].shape
    raise DatasetError(
        f"{pred.path} is {ph} x {pw} pixels but the reference {ref.path} is {rh} x {rw} "
        "(and no level of its pyramid has the prediction's size); predict at the "
        "reference's resolution (--target-mpp) to compare them"
    )


def _tile_pairs(ref: np.ndarray, pred: np.ndarray) -> dict[tuple[int, int], int]:
    """``{(reference value, predicted value): pixels}`` of one pair of tiles."""
    if ref.dtype == np.uint8 and pred.dtype == np.uint8:  # the common case: one bincount
        table = np.bincount(ref.ravel().astype(np.int64) * 256 + pred.ravel(), minlength=65536)
        keys = np.flatnonzero(table)
        return {(int(k) // 256, int(k) % 256): int(table[k]) for k in keys}
    if min(int(ref.min()), int(pred.min())) < 0:
        raise DatasetError("label slides must hold non-negative integer labels")
    key = ref.astype(np.int64).ravel() << 32 | pred.astype(np.int64).ravel()
    values, n = np.unique(key, return_counts=True)
    return {(int(k) >> 32, int(k) & 0xFFFFFFFF): int(c) for k, c in zip(values, n, strict=True)}


def region_counts(
    counts: Mapping[tuple[int, int], int], values: tuple[int, ...]
) -> ConfusionCounts:
    """TP/FP/FN/TN of the region ``values`` from the pair table.

    Example:
        >>> region_counts({(1, 1): 2, (0, 1): 1, (1, 0): 1, (0, 0): 12}, (1,))
        ConfusionCounts(tp=2, fp=1, fn=1, tn=12)
    """
    inside = set(values)
    tp = fp = fn = tn = 0
    for (r, p), n in counts.items():
        if r in inside and p in inside:
            tp += n
        elif p in inside:
            fp += n
        elif r in inside:
            fn += n
        else:
            tn += n
    return ConfusionCounts(tp=tp, fp=fp, fn=fn, tn=tn)


def labels_from_dataset_json(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """The foreground labels of a ``dataset.json`` (background 0 and ``ignore`` left out).

    Raises:
        ConfigError: unreadable file or no ``labels`` mapping.
    """
    try:
        labels = json.loads(Path(path).read_text(encoding="utf-8"))["labels"]
        return label_regions(
            {k: v for k, v in labels.items() if k not in ("background", "ignore") and v != 0}
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ConfigError(f"{path}: cannot read its 'labels' mapping ({err})") from None


def _open(source: SlideSource) -> tuple[Slide, bool]:
    return (source, False) if isinstance(source, Slide) else (open_slide(source), True)


def evaluate_slide(
    prediction_slide_path: SlideSource,
    reference_slide_path: SlideSource,
    labels: Labels | None = None,
    *,
    tile: int = 2048,
) -> dict[str, Any]:
    """Per-label Dice, IoU (and every overlap metric), pixel counts and areas of a slide mask.

    Args:
        prediction_slide_path: the predicted label slide (``predict_slide``'s mask).
        reference_slide_path: the reference label slide (same level-0 size).
        labels: labels/regions (``label_regions``: ``[1, 2]``, ``{"tumour": [1, 2]}``);
            None: every non-zero value found in either slide.
        tile: side of the regions read at once.

    Returns:
        ``{"shape", "mpp", "labels": {name: {tp, fp, fn, tn, dice, iou, ...,
        pixels_pred, pixels_ref, area_pred_mm2, area_ref_mm2}}}``; Dice/IoU are NaN when a
        label is absent from both.

    Raises:
        DatasetError: sizes differ. ImageIOError: unreadable slide. ConfigError: bad labels or
        tile.
    """
    if tile < 1:
        raise ConfigError(f"tile must be at least 1, got {tile}")
    pred, own_pred = _open(prediction_slide_path)
    try:
        ref, own_ref = _open(reference_slide_path)
        try:
            counts = pair_counts(pred, ref, tile=tile)
            level = reference_level(pred, ref)
            mpp = pred.mpp if pred.mpp is not None else ref.level_mpp(level)
            shape = pred.levels[0].shape
        finally:
            if own_ref:
                ref.close()
    finally:
        if own_pred:
            pred.close()
    if labels is None:
        found = sorted({v for pair in counts for v in pair} - {0})
        regions = {str(v): (v,) for v in found}
    else:
        regions = label_regions(labels)
    mm2 = math.nan if mpp is None else (mpp / 1000.0) ** 2
    results = {}
    for name, values in regions.items():
        c = region_counts(counts, values)
        results[name] = {
            "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn,
            **overlap_metrics(c),
            "pixels_pred": c.tp + c.fp,
            "pixels_ref": c.tp + c.fn,
            "area_pred_mm2": (c.tp + c.fp) * mm2,
            "area_ref_mm2": (c.tp + c.fn) * mm2,
        }  # fmt: skip
    return {"shape": list(shape), "mpp": mpp, "labels": results}


#: The file ``evaluate_slide_to_folder`` writes.
SLIDE_SUMMARY = "slide_summary.json"


def slide_result_lines(result: Mapping[str, Any]) -> list[str]:
    """One printable line per label: Dice, IoU and (when the mpp is known) the areas."""
    lines = []
    for name, row in result["labels"].items():
        area = (
            ""
            if math.isnan(row["area_ref_mm2"])
            else f", area {row['area_pred_mm2']:.3f} mm^2 (reference {row['area_ref_mm2']:.3f})"
        )
        lines.append(f"{name}: Dice {row['dice']:.4f}, IoU {row['iou']:.4f}{area}")
    return lines


def evaluate_slide_to_folder(
    prediction_slide_path: SlideSource,
    reference_slide_path: SlideSource,
    out_dir: str | os.PathLike[str],
    labels: Labels | None = None,
    *,
    tile: int = 2048,
    overwrite: bool = False,
) -> dict[str, Any]:
    """``evaluate_slide``, written to ``OUT/slide_summary.json`` (``medseg evaluate`` on two
    slide files).

    Raises:
        OverwriteError: the summary exists and ``overwrite`` is False; as ``evaluate_slide``.
    """
    path = check_writable(Path(out_dir) / SLIDE_SUMMARY, overwrite=overwrite)
    result = evaluate_slide(prediction_slide_path, reference_slide_path, labels, tile=tile)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return result
