"""The in-memory classification / regression set: ``ClassificationSet`` and its vocabulary.

``Task``, ``Normalize`` and ``SPLITS`` are the names every source reader (``folders``,
``csv_table``, ``npz``) and ``load_classification`` share; ``no_split_error`` is their common
"unknown split" message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from medseg.errors import ConfigError, DatasetError

Task = Literal["classification", "regression"]
Normalize = Literal["auto", "zscore"] | None
TASKS: tuple[str, ...] = ("classification", "regression")
NORMALIZE_MODES: tuple[str | None, ...] = ("auto", "zscore", None)
#: The split names of the folder layout and the CSV ``split`` column, in listing order.
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class ClassificationSet:
    """Images with one class label (or target vector) each.

    Attributes:
        images: ``(N, C, *spatial)`` float32 (spatial ``(y, x)`` or ``(z, y, x)``).
        labels: ``(N,)`` int64 class indices (classification) or ``(N, T)`` float32 targets
            (regression).
        class_names: ``class_names[k]`` is the name of class index ``k``; empty for regression.
        ids: one id per image: the file path (relative to the source) or ``npz:<split>:<i>``.
        folds: ``(N,)`` int fold per image when the source gives one, else ``None``.
        task: ``"classification"`` or ``"regression"``.

    Example:
        >>> s = ClassificationSet(np.zeros((4, 1, 8, 8), np.float32), np.array([0, 1, 1, 1]),
        ...                       ["a", "b"], ["w", "x", "y", "z"])
        >>> s.spatial_dims, s.num_channels, s.num_classes, s.class_counts().tolist()
        (2, 1, 2, [1, 3])
        >>> s.subset([0, 2]).ids
        ['w', 'y']
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    ids: list[str]
    folds: np.ndarray | None = None
    task: Task = "classification"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {list(TASKS)}, got {self.task!r}")
        self.images = np.asarray(self.images, dtype=np.float32)
        if self.images.ndim not in (4, 5):
            raise DatasetError(
                f"images must be (N, C, y, x) or (N, C, z, y, x), got shape {self.images.shape}"
            )
        n = self.images.shape[0]
        self.class_names = [str(c) for c in self.class_names]
        self.ids = [str(i) for i in self.ids]
        if self.task == "classification":
            self.labels = _checked_class_labels(self.labels, self.class_names)
        else:
            labels = np.asarray(self.labels, dtype=np.float32)
            self.labels = labels[:, None] if labels.ndim == 1 else labels
            if self.labels.ndim != 2:
                raise DatasetError(f"regression targets must be (N, T), got shape {labels.shape}")
            if self.class_names:
                raise DatasetError("a regression set has no class names")
        if self.folds is not None:
            self.folds = np.asarray(self.folds, dtype=np.int64)
        lengths = {
            "images": n,
            "labels": len(self.labels),
            "ids": len(self.ids),
            **({"folds": len(self.folds)} if self.folds is not None else {}),
        }
        if len(set(lengths.values())) != 1:
            raise DatasetError(f"lengths differ: {lengths}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def spatial_dims(self) -> int:
        return self.images.ndim - 2

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.images.shape[2:])

    @property
    def num_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``); 0 for regression."""
        return len(self.class_names)

    @property
    def num_targets(self) -> int:
        """Regression targets per image (``T``); 1 for classification."""
        return int(self.labels.shape[1]) if self.task == "regression" else 1

    def class_counts(self) -> np.ndarray:
        """``(num_classes,)`` int64: images per class.

        Raises:
            ConfigError: for a regression set.
        """
        if self.task != "classification":
            raise ConfigError("class_counts() needs a classification set; this one is regression")
        return np.bincount(self.labels, minlength=self.num_classes).astype(np.int64)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ClassificationSet:
        """A new set with the images at ``indices`` (integers or a boolean mask), copied."""
        index = np.asarray(indices)
        if index.dtype == np.bool_:
            if index.shape != (len(self),):
                raise ConfigError(
                    f"boolean subset mask must have shape ({len(self)},), got {index.shape}"
                )
            index = np.flatnonzero(index)
        index = index.astype(np.int64, copy=False).reshape(-1)
        return ClassificationSet(
            images=self.images[index],
            labels=self.labels[index],
            class_names=list(self.class_names),
            ids=[self.ids[i] for i in index],
            folds=None if self.folds is None else self.folds[index],
            task=self.task,
        )


def _checked_class_labels(labels: np.ndarray, class_names: list[str]) -> np.ndarray:
    """``labels`` as ``(N,)`` int64, each a valid index into ``class_names``."""
    array = np.asarray(labels)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iub"):
        raise DatasetError(
            f"classification labels must be (N,) integers, got shape {array.shape} {array.dtype}"
        )
    array = array.astype(np.int64, copy=False)
    if array.size and (array.min() < 0 or array.max() >= len(class_names)):
        raise DatasetError(
            f"labels range {array.min()}..{array.max()} does not fit "
            f"{len(class_names)} class names {class_names}"
        )
    return array


def no_split_error(source: Path, split: str, available: Sequence[str]) -> DatasetError:
    """The error for a split ``source`` does not hold, listing the ones it does."""
    return DatasetError(
        f"{source}: no split '{split}'; available: {', '.join(available) or '(none)'}"
    )
