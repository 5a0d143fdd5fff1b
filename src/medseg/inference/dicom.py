"""Predict a DICOM series end to end: read the series, predict it with the trained ensemble
(as ``medseg predict`` does: same models, post-processing and options), write a DICOM SEG that
references the series (``medseg.io.dicom.write_dicom_seg``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from medseg.errors import MedsegError
from medseg.fileutil import check_writable
from medseg.inference.ensemble import label_values, predict_case
from medseg.inference.postprocess import apply_postprocessing, load_postprocessing
from medseg.inference.predict import load_models
from medseg.io.dicom import read_dicom_series, write_dicom_seg
from medseg.planning.plan import Plan


def segment_names(plan: Plan) -> dict[int, str]:
    """Label value -> name of the plan's output classes, background (0) excluded; region
    entries (lists of values, BraTS-style) and the ``ignore`` label are not classes.

    Example:
        >>> from types import SimpleNamespace
        >>> labels = {"background": 0, "liver": 1, "wt": [1, 2], "ignore": 9}
        >>> segment_names(SimpleNamespace(labels=labels))
        {1: 'liver'}
    """
    classes = set(label_values(plan))  # D: not the ``ignore`` label (sparse annotations)
    return {
        int(value): str(name)
        for name, value in plan.labels.items()
        if isinstance(value, int) and not isinstance(value, bool) and value in classes - {0}
    }


def predict_dicom_series(
    series_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    results: str | os.PathLike[str],
    *,
    configurations: Sequence[str] | None = None,
    folds: Sequence[int | str] | None = None,
    checkpoint: Literal["best", "latest"] = "best",
    mirror: bool = True,
    overlap: float = 0.5,
    postprocess: bool = True,
    device: torch.device | str | None = None,
    series_uid: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Segment one DICOM series with the trained ensemble and write a DICOM SEG.

    Args:
        series_dir: the folder of the series' DICOM files.
        out_path: the SEG file to write (``.dcm``).
        results: the results folder with the trained folds.
        configurations, folds, checkpoint: which models (``predict.load_models``); a
            cascade also loads its previous stage.
        mirror, overlap, device: as ``medseg.inference.predict``.
        postprocess: apply ``RESULTS/postprocessing.json`` when it exists.
        series_uid: which series when ``series_dir`` holds several.
        overwrite: replace an existing ``out_path``.

    Returns:
        The written SEG path. Segments: one per foreground label of the plan (named by the
        plan's ``labels``), empty where nothing was predicted; an all-empty prediction still
        gives a valid SEG (with a warning).

    Raises:
        DatasetError: ``series_dir`` holds no DICOM series (e.g. a NIfTI folder) or several
            without ``series_uid``; the image's channels differ from the models'.
        ConfigError: missing checkpoints, bad options, or the ``dicom`` extra is missing.
        ImageIOError: the series is unreadable or lacks what a SEG must reference.
        OverwriteError: ``out_path`` exists and ``overwrite`` is False.
    """
    target = check_writable(out_path, overwrite=overwrite)  # D: fail before minutes of work
    image, files = read_dicom_series(series_dir, series_uid=series_uid)
    models, previous = load_models(results, configurations, folds, checkpoint)
    try:
        _, label = predict_case(
            models,
            image,
            overlap=overlap,
            mirror=mirror,
            device=device,
            previous_stage=previous,
        )
    except MedsegError as err:
        raise type(err)(f"{series_dir}: {err}") from err
    decision = load_postprocessing(results) if postprocess else None
    if decision is not None:
        label = label.with_array(apply_postprocessing(label.array, decision))
    return write_dicom_seg(
        label,
        files,
        target,
        segments=segment_names(models[0][1]),
        overwrite=overwrite,
        algorithm_name="medseg",
    )


__all__ = ["predict_dicom_series", "segment_names"]
