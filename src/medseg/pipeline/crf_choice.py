"""Deciding a dense CRF by cross-validation: the folds keep their validation softmax, the
pooled decision goes into ``RESULTS/postprocessing.json`` beside the largest-component rule,
and ``predict`` applies it (``medseg.inference.crf.apply_crf_decision``)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.dataset import Dataset
from medseg.errors import DatasetError
from medseg.fileutil import atomic_path
from medseg.inference.ensemble import label_values
from medseg.inference.postprocess import POSTPROCESSING_FILE, choose_crf
from medseg.io import Image
from medseg.planning.plan import Plan

PROBABILITIES_FOLDER = "probabilities"


def save_validation_probabilities(
    pred_dir: Path, case_id: str, probs: np.ndarray, plan: Plan, image: Image
) -> Path:
    """Write ``pred_dir/probabilities/CASE.npz`` (``probabilities`` ``(C, *spatial)`` in the
    image's geometry, ``label_values``, ``spacing``), the format ``choose_crf`` reads."""
    folder = pred_dir / PROBABILITIES_FOLDER
    folder.mkdir(exist_ok=True)
    path = folder / f"{case_id}.npz"
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            probabilities=probs.astype(np.float32),
            label_values=np.asarray(label_values(plan)),
            spacing=np.asarray(image.spacing),
        )
    return path


def choose_crf_from_folds(
    results: Path, configuration: str, dataset: Dataset, crf: bool | dict[str, Any]
) -> dict[str, Any]:
    """Pool every fold's ``validation/probabilities/`` and decide the CRF
    (``medseg.inference.postprocess.choose_crf``) into ``RESULTS/postprocessing.json``.

    Raises:
        DatasetError: no fold kept its softmax (train with ``save_probabilities=True``).
    """
    files = sorted(
        (results / configuration).glob(f"fold_*/validation/{PROBABILITIES_FOLDER}/*.npz")
    )
    if not files:
        raise DatasetError(
            f"{results / configuration}: no validation softmax to decide a CRF on; train the "
            "folds with save_probabilities=True (medseg train --save-probabilities)"
        )
    settings = crf if isinstance(crf, dict) else None
    with tempfile.TemporaryDirectory(dir=results) as tmp:
        for path in files:
            shutil.copyfile(path, Path(tmp) / path.name)
        return choose_crf(
            tmp,
            dataset.root / "imagesTr",
            dataset.root / "labelsTr",
            sorted(dataset.foreground_labels.values()),
            settings=settings,
            out_path=results / POSTPROCESSING_FILE,
        )
