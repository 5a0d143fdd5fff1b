"""Reviewed cases -> a dataset in the MSD (Decathlon) layout, for retraining.

``export_reviewed`` writes every ``accepted`` case (label: the prediction, or the reference
of a dataset folder) and every ``corrected`` case (label: its newest saved version) as
``DATASET/imagesTr/<case>.nii.gz`` + ``DATASET/labelsTr/<case>.nii.gz`` with a
``dataset.json`` (``name``, ``modality``, ``labels``, ``numTraining``, ``training``) that
``medseg.data.load_dataset`` reads back. Unreviewed cases are left out.
"""

from __future__ import annotations

import os
from pathlib import Path

from medseg.errors import ConfigError, OverwriteError
from medseg.fileutil import write_json_atomic
from medseg.io import read_image, write_image
from medseg.viewer.audit import AUDIT_FILE, AuditLog
from medseg.viewer.cases import discover_cases
from medseg.viewer.storage import read_status


def export_reviewed(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    predictions: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    user: str = "unknown",
) -> list[str]:
    """Export the accepted and corrected cases of a reviewed folder (module docstring).

    Args:
        root: the results or dataset folder that was reviewed.
        out: the new dataset folder (must be empty or absent unless ``overwrite``).
        output: the viewer's output folder (default: the results folder).
        predictions: as ``medseg view --predictions``.
        overwrite: allow a non-empty ``out``.
        user: the name in the audit log.

    Returns:
        The exported case ids.

    Raises:
        ConfigError: nothing reviewed, or no output folder to read the reviews from.
        OverwriteError: ``out`` is not empty and ``overwrite`` is False.
    """
    catalog = discover_cases(root, output=output, predictions=predictions)
    if catalog.output is None:
        raise ConfigError(f"{root}: a dataset folder's reviews are in its -o folder; pass it")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OverwriteError(f"{out}: not empty; pass --overwrite to write into it")
    training, exported = [], []
    for case_id, entry in sorted(catalog.cases.items()):
        if entry.problem:
            continue
        case_dir = catalog.output / "corrections" / case_id
        status = read_status(case_dir)
        if status["status"] == "corrected":
            label_path = case_dir / f"v{int(status['version'])}.nii.gz"
        elif status["status"] == "accepted":
            label_path = entry.prediction or entry.reference
        else:
            continue
        if label_path is None:
            continue
        write_image(read_image(entry.image), out / "imagesTr" / f"{case_id}.nii.gz", overwrite=True)
        write_image(read_image(label_path), out / "labelsTr" / f"{case_id}.nii.gz", overwrite=True)
        training.append(
            {"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"}
        )
        exported.append(case_id)
    if not exported:
        raise ConfigError(f"{root}: no accepted or corrected case to export")
    write_json_atomic(out / "dataset.json", _dataset_json(catalog, training))
    AuditLog(catalog.output / AUDIT_FILE).append(
        user=user,
        case=None,
        action="export",
        version=None,
        sha256=None,
        changed={},
        seconds=0.0,
        cases=exported,
    )
    return exported


def _dataset_json(catalog, training: list[dict]) -> dict:
    dataset = catalog.dataset
    return {
        "name": f"{dataset.name}-reviewed",
        "description": f"Cases reviewed with medseg view from {catalog.root.name}",
        "modality": dict(dataset.channel_names),
        "labels": {str(v): k for k, v in sorted(catalog.labels.items(), key=lambda kv: kv[1])},
        "numTraining": len(training),
        "training": training,
        "test": [],
    }
