"""The benchmark's trained rows: the random forest and multi-atlas on the training cases.

Split out of :mod:`medseg.pipeline.classic`; :func:`run_forest` fits the forest once and
predicts every evaluated case, :func:`run_multi_atlas` registers the atlases to every
evaluated case (and scores each atlas alone for the median single atlas).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.dataset import Dataset
from medseg.io import Image, write_image
from medseg.pipeline.classic_run import DEFAULT_OPTIONS, _CaseReader, classic_registry

#: The multi-atlas options a single atlas is registered with too, so it is scored as fused.
SINGLE_ATLAS_KEYS = ("transform", "metric", "seed", "max_size", "mesh_mm")


def write_prediction(
    prediction: Image, pred_dir: Path, case_id: str, ending: str, overwrite: bool
) -> None:
    """Write one case's label map as ``pred_dir/CASE<ending>``."""
    write_image(prediction, pred_dir / f"{case_id}{ending}", overwrite=overwrite)


def run_forest(
    training: list[tuple[Image, Image]],
    eval_ids: list[str],
    read: _CaseReader,
    pred_dir: Path,
    data: Dataset,
    options: Mapping[str, Any],
    overwrite: bool,
) -> dict[str, Any]:
    """Fit the forest on ``training``, predict ``eval_ids``: ``fit_s`` and the seconds."""
    classic = classic_registry()
    options = {**DEFAULT_OPTIONS["forest"], **options}
    segmenter_class = classic.get("forest")
    classic.check_options("forest", options)
    start = time.perf_counter()
    segmenter = segmenter_class(**options).fit(
        [image for image, _ in training], [label for _, label in training]
    )
    fit_s = time.perf_counter() - start
    seconds = []
    for case_id in eval_ids:
        image, _ = read(case_id)
        start = time.perf_counter()
        prediction = segmenter.predict(image)
        seconds.append(time.perf_counter() - start)
        write_prediction(prediction, pred_dir, case_id, data.file_ending, overwrite)
    return {"fit_s": round(fit_s, 3), "seconds": seconds}


def run_multi_atlas(
    atlases: list[tuple[Image, Image]],
    eval_ids: list[str],
    read: _CaseReader,
    pred_dir: Path,
    data: Dataset,
    options: Mapping[str, Any],
    *,
    single_atlases: bool,
    overwrite: bool,
) -> dict[str, Any]:
    """Multi-atlas on ``eval_ids`` (and each atlas alone): the seconds and the median."""
    classic = classic_registry()
    classic.check_options("multi_atlas", options)
    if options.get("k") is not None and options["k"] > len(atlases):
        options = {**options, "k": len(atlases)}  # the default 5 with fewer atlases: all
    seconds, medians = [], []
    for case_id in eval_ids:
        image, reference = read(case_id)
        start = time.perf_counter()
        prediction = classic.build("multi_atlas", image, atlases, **options)
        seconds.append(time.perf_counter() - start)
        write_prediction(prediction, pred_dir, case_id, data.file_ending, overwrite)
        if single_atlases:
            singles = [
                mean_label_dice(_single_atlas(image, atlas, options), reference)
                for atlas in atlases
            ]
            medians.append(float(np.median(singles)))
    row: dict[str, Any] = {"n_atlases": len(atlases), "seconds": seconds}
    if single_atlases:
        row["median_single_atlas_dice"] = float(np.mean(medians))
    return row


def _single_atlas(target: Image, atlas: tuple[Image, Image], options: Mapping[str, Any]) -> Image:
    """One atlas registered to ``target`` and its label propagated (no fusion)."""
    from medseg.classic.atlas import propagate, register

    keep = {k: v for k, v in options.items() if k in SINGLE_ATLAS_KEYS}
    registration = register(target, atlas[0], **keep)
    return propagate(atlas[1], registration.transform, target)


def mean_label_dice(prediction: Image, reference: Image) -> float:
    """Mean Dice over the reference's foreground labels (1.0 when both are empty).

    Example:
        >>> a = Image(np.array([[0, 1], [2, 2]]), (1.0, 1.0))
        >>> mean_label_dice(a, a)
        1.0
    """
    pred, ref = np.asarray(prediction.array), np.asarray(reference.array)
    values = [int(v) for v in np.unique(ref) if v != 0]
    if not values:
        return 1.0 if not (pred > 0).any() else 0.0
    scores = []
    for value in values:
        p, r = pred == value, ref == value
        scores.append(2.0 * float((p & r).sum()) / float(p.sum() + r.sum()))
    return float(np.mean(scores))
