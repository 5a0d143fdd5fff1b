"""The cascade's files: a later stage trains on the previous stage's segmentations.

``3d_cascade_fullres`` trains on the ``3d_fullres`` case store plus the ``3d_lowres``
stage's cross-validation predictions of every training case (written by
``medseg prepare-cascade``), in a folder of their own, so one image store serves several
configurations::

    RESULTS/preprocessed/<cascade configuration>/
      <case>_prev.npy        int8 (int16 if needed), (1, *spatial): class indices (0 =
                             background, k = the k-th smallest label value) predicted by the
                             previous stage, on the grid of the case's ``<case>.npy``
      previous_stage.json    which fold and checkpoint predicted each case

The network sees them as one-hot channels, one per foreground class
(:func:`foreground_one_hot`), after the image channels.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from medseg.errors import ConfigError, DatasetError, listing
from medseg.fileutil import atomic_path, check_writable

log = logging.getLogger(__name__)
PREVIOUS_SUFFIX = "_prev.npy"
PREVIOUS_STAGE_FILE = "previous_stage.json"


def foreground_one_hot(
    indices: Tensor, num_classes: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``(B, 1, *S)`` class indices (any dtype) -> ``(B, num_classes - 1, *S)`` one-hot masks of
    the foreground classes ``1 .. num_classes - 1``: a cascade stage's extra input channels.

    Example:
        >>> foreground_one_hot(torch.tensor([[[0.0, 1.0, 2.0]]]), 3).tolist()
        [[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]
    """
    if indices.is_floating_point():
        indices = indices.round()
    return torch.cat([(indices == k).to(dtype) for k in range(1, num_classes)], dim=1)


def previous_stage_dir(results: str | os.PathLike[str], configuration: str) -> Path:
    """Where a cascade stage's previous-stage segmentations of the training cases live."""
    return Path(results) / "preprocessed" / configuration


def check_previous_stage(
    results: str | os.PathLike[str],
    configuration: str,
    previous_stage: str,
    case_ids: Sequence[str],
) -> Path:
    """The folder of ``<case>_prev.npy`` for a cascade stage, every case present.

    Raises:
        ConfigError: some are missing; the message says which commands produce them.
    """
    folder = previous_stage_dir(results, configuration)
    missing = [c for c in case_ids if not (folder / f"{c}{PREVIOUS_SUFFIX}").is_file()]
    if missing:
        raise ConfigError(
            f"{configuration} trains on the {previous_stage} stage's predictions of the training "
            f"cases, missing in {folder} for {len(missing)} of {len(case_ids)} case(s) "
            f"({listing(missing)}). Train the {previous_stage} folds first "
            f"('medseg train {results} --config {previous_stage} --fold K' "
            f"for each fold, or --fold all), then run 'medseg prepare-cascade {results}'"
        )
    _warn_if_stale(folder)
    return folder


def _warn_if_stale(folder: Path) -> None:
    record = folder / PREVIOUS_STAGE_FILE
    if not record.is_file():
        return
    checkpoints = json.loads(record.read_text(encoding="utf-8")).get("checkpoints", {})
    changed = [
        p
        for p, mtime in checkpoints.items()
        if not Path(p).is_file() or Path(p).stat().st_mtime_ns != mtime
    ]
    if changed:
        log.warning(
            "%s: the previous-stage checkpoint(s) %s changed since their predictions were made; "
            "rerun 'medseg prepare-cascade --overwrite' to refresh them",
            folder,
            changed,
        )


def write_previous(
    folder: str | os.PathLike[str],
    case_id: str,
    segmentation: np.ndarray,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a previous-stage segmentation ``<folder>/<case>_prev.npy`` (atomically).

    Args:
        folder: the previous-stage folder (created if missing).
        case_id: the case.
        segmentation: ``(*spatial)`` class indices on the grid of the case's image in the
            store it goes with (stored as ``(1, *spatial)``).
        overwrite: replace an existing file.

    Returns:
        The written path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case_id}{PREVIOUS_SUFFIX}"
    check_writable(path, overwrite=overwrite)
    segmentation = np.asarray(segmentation)[None]
    high = int(segmentation.max(initial=0))
    with atomic_path(path) as tmp:
        np.save(tmp, segmentation.astype(np.int8 if high <= 127 else np.int16))
    return path


def load_previous(folder: str | os.PathLike[str], case_id: str, *, mmap: bool = True) -> np.ndarray:
    """Open ``<folder>/<case>_prev.npy``: ``(1, *spatial)`` class indices.

    Raises:
        DatasetError: the file is missing.
    """
    path = Path(folder) / f"{case_id}{PREVIOUS_SUFFIX}"
    if not path.is_file():
        raise DatasetError(f"{path}: previous-stage segmentation is missing")
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
