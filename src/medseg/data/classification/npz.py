"""The MedMNIST ``.npz`` source: ``<split>_images`` and ``<split>_labels`` arrays per split.

``<split>_images`` is ``(N, H, W)``, ``(N, H, W, C)`` (C in 1, 3, 4) or ``(N, D, H, W)``
(``(N, D, H, W, C)``); ``<split>_labels`` is ``(N, 1)`` or ``(N,)`` integers; an optional
``class_names`` string array, else ``"0", "1", ...``. Ids are ``npz:<split>:<index>``. The
archive is read with ``allow_pickle=False``, so object arrays are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.data.classification.dataset import (
    SPLITS,
    ClassificationSet,
    Normalize,
    Task,
    no_split_error,
)
from medseg.data.classification.images import is_uint8, normalize_stack
from medseg.errors import DatasetError


def npz_splits(keys: Sequence[str]) -> list[str]:
    """The splits named by ``<split>_images`` / ``<split>_labels`` keys, ``SPLITS`` first.

    Example:
        >>> npz_splits(["test_images", "test_labels", "extra_images", "train_labels"])
        ['train', 'test', 'extra']
    """
    found = {k.rsplit("_", 1)[0] for k in keys if k.endswith(("_images", "_labels"))}
    return [s for s in SPLITS if s in found] + sorted(found - set(SPLITS))


def npz_file_splits(path: Path) -> list[str]:
    """``npz_splits`` of the keys of the archive at ``path``."""
    with np.load(path, allow_pickle=False) as data:
        return npz_splits(list(data.files))


def load_npz(path: Path, split: str, task: Task | None, normalize: Normalize) -> ClassificationSet:
    """Load ``split`` of the MedMNIST-style archive at ``path`` (see the module docstring).

    Args:
        path: the ``.npz`` file.
        split: a split the keys name (``npz_splits``).
        task: ``"classification"``, ``"regression"`` or ``None`` (regression when the labels
            are floats that are not all whole numbers).
        normalize: the intensity mode (``medseg.data.classification``).

    Returns:
        The split's images in array order, as ``(N, C, *spatial)``.

    Raises:
        DatasetError: the archive cannot be read, lacks a key, or holds arrays of the wrong
            shape, type or values (the message names the key).
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as err:
        raise DatasetError(f"{path}: cannot read .npz ({err})") from err
    with archive as data:
        keys = list(data.files)
        _check_split_keys(path, split, keys)
        raw_labels = np.asarray(data[f"{split}_labels"])
        raw_images = data[f"{split}_images"]
        if task is None:
            is_float = raw_labels.dtype.kind == "f" and not _integral(raw_labels)
            task = "regression" if is_float else "classification"
        class_names: list[str] = []
        if task == "classification":
            labels = _npz_class_labels(path, split, raw_labels)
            class_names = _npz_class_names(path, data, split, labels)
        else:
            labels = raw_labels.astype(np.float32).reshape(len(raw_labels), -1)
        images = _npz_images(path, split, raw_images, normalize)
    if len(images) != len(labels):
        raise DatasetError(
            f"{path}: '{split}_images' holds {len(images)} images but '{split}_labels' "
            f"{len(labels)} labels"
        )
    return ClassificationSet(
        images=normalize_stack(images, normalize),
        labels=labels,
        class_names=class_names,
        ids=[f"npz:{split}:{i}" for i in range(len(images))],
        folds=None,
        task=task,
    )


def _check_split_keys(path: Path, split: str, keys: list[str]) -> None:
    """Raise unless ``keys`` hold ``<split>_images`` and ``<split>_labels``."""
    splits = npz_splits(keys)
    if not splits:
        raise DatasetError(
            f"{path}: no '<split>_images' / '<split>_labels' keys "
            f"(keys present: {', '.join(keys) or 'none'}); "
            "expected the MedMNIST layout train_images, train_labels, val_images, ..."
        )
    if split not in splits:
        raise no_split_error(path, split, splits)
    for key in (f"{split}_images", f"{split}_labels"):
        if key not in keys:
            raise DatasetError(f"{path}: missing key '{key}' (keys present: {', '.join(keys)})")


def _npz_class_names(
    path: Path, data: np.lib.npyio.NpzFile, split: str, labels: np.ndarray
) -> list[str]:
    """The stored ``class_names``, else ``"0" .. str(largest label over all splits)``."""
    keys = list(data.files)
    stored = None
    if "class_names" in keys:
        stored = [str(c) for c in np.asarray(data["class_names"]).reshape(-1)]
    largest = int(labels.max()) if labels.size else -1
    for key in keys:  # other splits' labels too, so class indices agree across splits
        if key.endswith("_labels") and key != f"{split}_labels":
            other = np.asarray(data[key])
            largest = max(largest, int(other.max()) if other.size else -1)
    if stored is None:
        return [str(k) for k in range(largest + 1)]
    if largest >= len(stored):
        raise DatasetError(
            f"{path}: label {largest} has no entry in class_names ({len(stored)} names: {stored})"
        )
    return stored


def _integral(array: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(array)) and np.all(array == np.round(array)))


def _npz_class_labels(path: Path, split: str, raw: np.ndarray) -> np.ndarray:
    """``(N,)`` int64 class indices from ``(N,)`` or ``(N, 1)`` whole numbers >= 0."""
    key = f"{split}_labels"
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim != 1:
        raise DatasetError(
            f"{path}: '{key}' has shape {raw.shape}; expected (N, 1) class indices (multi-label "
            "sets are not supported; pass task='regression' to load them as float targets)"
        )
    if raw.dtype.kind not in "iub" and not (raw.dtype.kind == "f" and _integral(raw)):
        raise DatasetError(
            f"{path}: '{key}' holds non-integer values ({raw.dtype}); expected class indices"
        )
    if raw.size and raw.min() < 0:
        raise DatasetError(f"{path}: '{key}' holds negative labels; class indices start at 0")
    return raw.astype(np.int64)


def _npz_images(path: Path, split: str, raw: np.ndarray, normalize: Normalize) -> np.ndarray:
    """``(N, C, *spatial)`` float32 from MedMNIST's channels-last layout, uint8 scaled by "auto"."""
    key = f"{split}_images"
    if raw.ndim == 3:
        view = raw[:, None]
    elif raw.ndim == 4 and raw.shape[-1] in (1, 3, 4):
        view = np.moveaxis(raw, -1, 1)  # (N, H, W, C) pictures
    elif raw.ndim == 4:
        view = raw[:, None]  # (N, D, H, W) volumes
    elif raw.ndim == 5:
        view = np.moveaxis(raw, -1, 1)  # (N, D, H, W, C)
    else:
        raise DatasetError(
            f"{path}: '{key}' has shape {raw.shape}; "
            "expected (N, H, W), (N, H, W, C) or (N, D, H, W)"
        )
    if raw.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: '{key}' has unsupported dtype {raw.dtype}")
    images = np.empty(view.shape, dtype=np.float32)
    if normalize == "auto" and is_uint8(raw):
        np.divide(view, np.float32(255.0), out=images, dtype=np.float32)
    else:
        images[...] = view
    if raw.dtype.kind == "f":
        finite = np.isfinite(images.reshape(len(images), -1)).all(axis=1)
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            raise DatasetError(
                f"{path}: '{key}' image {first} (npz:{split}:{first}) holds NaN or infinite values"
            )
    return images
