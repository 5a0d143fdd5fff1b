"""The class-folder source: ``SOURCE/<split>/<class>/<image>`` or ``SOURCE/<class>/<image>``.

Without any ``train``/``val``/``test`` subfolder the whole of SOURCE is split ``"train"``.
Images are any file ``medseg.io`` reads; a subfolder of a class folder is one DICOM series.
Other files are skipped with a warning, hidden entries (``.name``) silently. Class names are
the folder names over *all* splits, sorted as strings, so a class index is the same in every
split (a class may be missing from a split, but a class folder may not be empty).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medseg.data.classification.dataset import (
    SPLITS,
    ClassificationSet,
    Normalize,
    Task,
    no_split_error,
)
from medseg.data.classification.images import normalize_stack, stack_files
from medseg.errors import ConfigError, DatasetError
from medseg.io import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)


def folder_splits(root: Path) -> dict[str, Path]:
    """The split folders under ``root`` in ``SPLITS`` order, or ``{"train": root}`` if none."""
    present = {s: root / s for s in SPLITS if (root / s).is_dir()}
    return present or {"train": root}


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_entries(folder: Path) -> list[Path]:
    """Image files (and DICOM series folders) in a class folder, sorted by name."""
    images, skipped = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() or entry.name.lower().endswith(IMAGE_EXTENSIONS):
            images.append(entry)
        else:
            skipped.append(entry.name)
    if skipped:
        logger.warning(
            "%s: skipped %d non-image file(s) (%s)", folder, len(skipped), ", ".join(skipped[:3])
        )
    return images


def load_folder(
    root: Path, split: str, task: Task | None, normalize: Normalize
) -> ClassificationSet:
    """Load ``split`` of the class-folder dataset at ``root`` (see the module docstring).

    Args:
        root: the dataset folder.
        split: a split ``folder_splits(root)`` lists.
        task: ``None`` or ``"classification"``; folders hold no regression targets.
        normalize: the intensity mode (``medseg.data.classification``).

    Returns:
        Images in file-name order per class, classes in name order; ids are paths relative
        to ``root``.

    Raises:
        ConfigError: ``task="regression"``.
        DatasetError: unknown split, no class folders, an empty class folder, or images
            that do not stack.
    """
    if task == "regression":
        raise ConfigError(
            f"{root}: a folder of class folders is a classification dataset; "
            "use a CSV for regression"
        )
    splits = folder_splits(root)
    if split not in splits:
        raise no_split_error(root, split, list(splits))
    folder = splits[split]
    if not _class_dirs(folder):
        where = f"split '{split}'" if folder != root else "the dataset"
        raise DatasetError(
            f"{folder}: no class folders in {where}; expected <class>/<images> "
            "(e.g. train/benign/001.png), or train/val/test folders holding them"
        )
    names = sorted({d.name for f in splits.values() for d in _class_dirs(f)})
    paths: list[Path] = []
    labels: list[int] = []
    for class_dir in _class_dirs(splits[split]):
        files = _image_entries(class_dir)
        if not files:
            raise DatasetError(
                f"{class_dir}: class folder '{class_dir.name}' holds no images "
                f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder"
            )
        paths.extend(files)
        labels.extend([names.index(class_dir.name)] * len(files))
    return ClassificationSet(
        images=normalize_stack(stack_files(paths, normalize), normalize),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=names,
        ids=[p.relative_to(root).as_posix() for p in paths],
        folds=None,
        task="classification",
    )
