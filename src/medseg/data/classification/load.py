"""``load_classification``: pick the reader for a source (folder, ``.csv``, ``.npz``) and run it.

The readers live in ``folders``, ``csv_table`` and ``npz``; this module only checks the
options, tells the source kinds apart and logs what was loaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from medseg.data.classification.csv_table import load_csv, read_csv_table
from medseg.data.classification.dataset import (
    NORMALIZE_MODES,
    TASKS,
    ClassificationSet,
    Normalize,
    Task,
)
from medseg.data.classification.folders import folder_splits, load_folder
from medseg.data.classification.npz import load_npz, npz_file_splits
from medseg.errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)


def available_splits(source: str | os.PathLike[str]) -> list[str]:
    """The splits ``source`` holds, ``train``/``val``/``test`` first.

    Args:
        source: a class-folder dataset, a ``.csv`` or a MedMNIST ``.npz`` (layouts in
            ``medseg.data.classification``).

    Returns:
        Split names: the ``train``/``val``/``test`` folders present (``["train"]`` when there
        are none), the CSV ``split`` values, or the ``.npz`` key prefixes.

    Raises:
        DatasetError: the source does not exist or is not a folder, ``.csv`` or ``.npz``,
            or the CSV is malformed.
    """
    path, kind = _source_kind(source)
    if kind == "folder":
        return list(folder_splits(path))
    if kind == "csv":
        return read_csv_table(path).splits
    return npz_file_splits(path)


def load_classification(
    source: str | os.PathLike[str],
    split: str = "train",
    *,
    task: Task | None = None,
    normalize: Normalize = "auto",
) -> ClassificationSet:
    """Load one split of a classification (or regression) dataset into memory.

    Args:
        source: a class-folder dataset, a ``.csv`` or a MedMNIST ``.npz`` (layouts in
            ``medseg.data.classification``).
        split: ``"train"``, ``"val"``, ``"test"`` (see ``available_splits``).
        task: ``"classification"``, ``"regression"`` or ``None``: regression for a CSV with
            ``target_*`` columns or an ``.npz`` with float labels, classification otherwise.
            Folders are always classification.
        normalize: ``"auto"`` (uint8 -> ``[0, 1]``, others as read), ``None`` or ``"zscore"``.

    Returns:
        The ``ClassificationSet``; images in file-name order per class (folders), row order
        (CSV) or array order (``.npz``).

    Raises:
        DatasetError: the source is inconsistent (the message names the file at fault).
        ConfigError: bad ``task``/``normalize``.
        ImageIOError: an image file cannot be read.

    Example:
        >>> data = load_classification("pneumoniamnist.npz", "val")  # doctest: +SKIP
        >>> data.images.shape, data.class_names  # doctest: +SKIP
        ((270, 1, 28, 28), ['0', '1'])
    """
    if task is not None and task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)} or None, got {task!r}")
    if normalize not in NORMALIZE_MODES:
        raise ConfigError(f"normalize must be one of {list(NORMALIZE_MODES)}, got {normalize!r}")
    path, kind = _source_kind(source)
    if kind == "folder":
        result = load_folder(path, split, task, normalize)
    elif kind == "csv":
        result = load_csv(path, split, task, normalize)
    else:
        result = load_npz(path, split, task, normalize)
    logger.info(
        "loaded %d %dD images (%d channel(s), %s) from %s split %s",
        len(result),
        result.spatial_dims,
        result.num_channels,
        result.task,
        path,
        split,
    )
    return result


def _source_kind(source: str | os.PathLike[str]) -> tuple[Path, str]:
    """``(path, "folder" | "csv" | "npz")`` for an existing source."""
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_dir():
        return path, "folder"
    suffix = path.suffix.lower()
    if suffix in (".csv", ".npz"):
        return path, suffix[1:]
    raise DatasetError(
        f"{path}: not a classification source; give a folder of class folders, a .csv or a .npz"
    )
