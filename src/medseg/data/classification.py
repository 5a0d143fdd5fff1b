"""Image classification / regression datasets: one label (or target vector) per image.

``load_classification(source, split)`` reads three kinds of source into a ``ClassificationSet``
(all images stacked in memory as ``(N, C, *spatial)`` float32):

* **a folder of images per class**::

      SOURCE/train/<class>/<image>     SOURCE/val/<class>/...     SOURCE/test/<class>/...

  or, when SOURCE has none of the ``train``/``val``/``test`` subfolders, ``SOURCE/<class>/<image>``
  (all split ``"train"``). Images are any file ``medseg.io`` reads (``.png``, ``.nii.gz``, ...);
  a subfolder of a class folder is read as one DICOM series. Other files are skipped with a
  warning, hidden entries (``.name``) silently. Class names are the folder names over *all*
  splits, sorted as strings, so a class index is the same in every split (a class may be
  missing from a split, but a class folder may not be empty).
* **a CSV file** with a header row::

      path,label[,fold][,split]        # classification
      path,label,target_x,...          # regression (or path,target_a,target_b; or task="regression")

  ``path`` is relative to the CSV's folder (absolute paths work too); column names are case
  insensitive. Classification labels are either all integers (``1.0`` counts as 1; the label
  *is* the class index, class names are ``"0" .. str(max)`` over all rows) or class-name
  strings (sorted over all rows -> indices). ``fold`` is an integer; ``split`` is
  ``train``/``val``/``test`` (without it every row is split ``"train"``). Regression targets
  are ``label`` (if present) followed by the ``target_*`` columns in file order.
* **a ``.npz`` in MedMNIST layout**: ``<split>_images`` ``(N, H, W)``, ``(N, H, W, C)``
  (C in 1, 3, 4) or ``(N, D, H, W)`` (``(N, D, H, W, C)``) and ``<split>_labels`` ``(N, 1)``
  or ``(N,)`` integers; an optional ``class_names`` string array, else ``"0", "1", ...``.
  Ids are ``npz:<split>:<index>``.

Intensities (``normalize``):

* ``"auto"`` (default): ``uint8`` images (PNG/JPEG, MedMNIST) are divided by 255 to ``[0, 1]``;
  every other dtype (CT in HU, MRI floats, 16-bit pictures) is kept as read, as float32.
* ``None``: every image kept as read (uint8 stays 0-255), as float32.
* ``"zscore"``: each image and channel shifted and scaled to mean 0, standard deviation 1.

Every problem in the input is a ``DatasetError`` whose one-line message names the file (and
row, key or shape) at fault: mixed image sizes or channel counts, empty class folders, bad or
missing CSV columns and values, missing images, missing ``.npz`` keys, unknown splits, and
NaN / infinite voxels.

The helpers ``class_weights``, ``balanced_sample_weights`` and ``stratified_folds`` work on
the integer labels and return NumPy arrays (the data layer does not need torch for them).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from medseg.errors import ConfigError, DatasetError
from medseg.io import IMAGE_EXTENSIONS, read_image

logger = logging.getLogger(__name__)

__all__ = [
    "NORMALIZE_MODES",
    "SPLITS",
    "ClassificationSet",
    "Normalize",
    "Task",
    "available_splits",
    "balanced_sample_weights",
    "class_weights",
    "load_classification",
    "stratified_folds",
]

Task = Literal["classification", "regression"]
Normalize = Literal["auto", "zscore"] | None
TASKS: tuple[str, ...] = ("classification", "regression")
NORMALIZE_MODES: tuple[str | None, ...] = ("auto", "zscore", None)
#: The split names of the folder layout and the CSV ``split`` column, in listing order.
SPLITS: tuple[str, ...] = ("train", "val", "test")


# ---------------------------------------------------------------- the container


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
            labels = np.asarray(self.labels)
            if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iub"):
                raise DatasetError(
                    f"classification labels must be (N,) integers, got shape {labels.shape} {labels.dtype}"
                )
            self.labels = labels.astype(np.int64, copy=False)
            if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
                raise DatasetError(
                    f"labels range {self.labels.min()}..{self.labels.max()} does not fit "
                    f"{len(self.class_names)} class names {self.class_names}"
                )
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
            "images": n, "labels": len(self.labels), "ids": len(self.ids),
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
                raise ConfigError(f"boolean subset mask must have shape ({len(self)},), got {index.shape}")
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


# ---------------------------------------------------------------- loading


def available_splits(source: str | os.PathLike[str]) -> list[str]:
    """The splits ``source`` holds, ``train``/``val``/``test`` first (see the module docstring).

    Raises:
        DatasetError: the source does not exist or is not a folder, ``.csv`` or ``.npz``.
    """
    path, kind = _source_kind(source)
    if kind == "folder":
        return list(_folder_splits(path))
    if kind == "csv":
        table = _read_csv(path)
        return table.splits
    with np.load(path, allow_pickle=False) as data:
        return _npz_splits(list(data.files))


def load_classification(
    source: str | os.PathLike[str],
    split: str = "train",
    *,
    task: Task | None = None,
    normalize: Normalize = "auto",
) -> ClassificationSet:
    """Load one split of a classification (or regression) dataset into memory.

    Args:
        source: a class-folder dataset, a ``.csv`` or a MedMNIST ``.npz`` (module docstring).
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
        result = _load_folder(path, split, task, normalize)
    elif kind == "csv":
        result = _load_csv(path, split, task, normalize)
    else:
        result = _load_npz(path, split, task, normalize)
    logger.info(
        "loaded %d %dD images (%d channel(s), %s) from %s split %s",
        len(result), result.spatial_dims, result.num_channels, result.task, path, split,
    )
    return result


def _source_kind(source: str | os.PathLike[str]) -> tuple[Path, str]:
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


def _no_split(source: Path, split: str, available: Sequence[str]) -> DatasetError:
    return DatasetError(
        f"{source}: no split '{split}'; available: {', '.join(available) or '(none)'}"
    )


# ---------------------------------------------------------------- image stacking


def _is_uint8(array: np.ndarray) -> bool:
    return array.dtype == np.uint8


def _normalize_stack(images: np.ndarray, normalize: Normalize) -> np.ndarray:
    """Apply ``"zscore"`` in place (``"auto"``'s uint8 scaling is done while reading)."""
    if normalize == "zscore" and images.size:
        axes = tuple(range(2, images.ndim))
        mean = images.mean(axis=axes, keepdims=True, dtype=np.float64)
        std = images.std(axis=axes, keepdims=True, dtype=np.float64)
        images -= mean.astype(np.float32)
        images /= np.maximum(std, 1e-8).astype(np.float32)
    return images


def _stack_files(paths: Sequence[Path], normalize: Normalize) -> np.ndarray:
    """Read ``paths`` into one ``(N, C, *spatial)`` float32 array, checking they agree."""
    first = read_image(paths[0])
    ref = _checked_array(first.channels_first(), paths[0], normalize)
    ref_dims = first.spatial_dims
    images = np.empty((len(paths), *ref.shape), dtype=np.float32)
    images[0] = ref
    for i, path in enumerate(paths[1:], start=1):
        image = read_image(path)
        array = image.channels_first()
        if image.spatial_dims != ref_dims or array.shape[1:] != ref.shape[1:]:
            raise DatasetError(
                f"{path}: image size {tuple(array.shape[1:])} differs from {tuple(ref.shape[1:])} of "
                f"{paths[0]}; resize all images to one size first"
            )
        if array.shape[0] != ref.shape[0]:
            raise DatasetError(
                f"{path}: {array.shape[0]} channel(s) but {paths[0]} has {ref.shape[0]}; "
                "convert all images to the same channels (e.g. all grey or all RGB)"
            )
        images[i] = _checked_array(array, path, normalize)
    return images


def _checked_array(array: np.ndarray, name: Path | str, normalize: Normalize) -> np.ndarray:
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = "NaN" if np.isnan(array).any() else "infinite"
        raise DatasetError(f"{name}: image holds {bad} voxels; fix or remove the image")
    if array.dtype.kind not in "fiub":
        raise DatasetError(f"{name}: unsupported voxel type {array.dtype}")
    if normalize == "auto" and _is_uint8(array):
        return array.astype(np.float32) / np.float32(255.0)  # exact x / 255 in float32
    return array.astype(np.float32, copy=False)


# ---------------------------------------------------------------- folder of class folders


def _folder_splits(root: Path) -> dict[str, Path]:
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
        logger.warning("%s: skipped %d non-image file(s) (%s)", folder, len(skipped), ", ".join(skipped[:3]))
    return images


def _load_folder(root: Path, split: str, task: Task | None, normalize: Normalize) -> ClassificationSet:
    if task == "regression":
        raise ConfigError(f"{root}: a folder of class folders is a classification dataset; use a CSV for regression")
    splits = _folder_splits(root)
    if split not in splits:
        raise _no_split(root, split, list(splits))
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
        images=_normalize_stack(_stack_files(paths, normalize), normalize),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=names,
        ids=[p.relative_to(root).as_posix() for p in paths],
        folds=None,
        task="classification",
    )


# ---------------------------------------------------------------- CSV


@dataclass
class _CsvTable:
    path: Path
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (line number, cells by lower-case column)

    @property
    def has_split(self) -> bool:
        return "split" in self.header

    @property
    def splits(self) -> list[str]:
        if not self.has_split:
            return ["train"]
        present = {cells["split"] for _, cells in self.rows}
        return [s for s in SPLITS if s in present]


def _read_csv(path: Path) -> _CsvTable:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{path}: cannot read CSV ({err})") from err
    numbered = [(n, row) for n, row in enumerate(lines, start=1) if any(cell.strip() for cell in row)]
    if not numbered:
        raise DatasetError(f"{path}: CSV is empty; expected a header row path,label[,fold][,split] and one row per image")
    _, header_row = numbered[0]
    header = [h.strip().lower() for h in header_row]
    if "path" not in header:
        raise DatasetError(
            f"{path}: no 'path' column (header: {','.join(header_row)}); the first row must be a "
            "header such as path,label[,fold][,split]"
        )
    if len(set(header)) != len(header):
        raise DatasetError(f"{path}: duplicate column names in header {','.join(header_row)}")
    rows = []
    for n, row in numbered[1:]:
        if len(row) != len(header):
            raise DatasetError(f"{path}: line {n} has {len(row)} cells, the header has {len(header)}")
        rows.append((n, {h: cell.strip() for h, cell in zip(header, row, strict=True)}))
    if not rows:
        raise DatasetError(f"{path}: CSV has a header but no rows")
    table = _CsvTable(path, header, rows)
    if table.has_split:
        for n, cells in rows:
            if cells["split"] not in SPLITS:
                raise DatasetError(
                    f"{path}: line {n}: split '{cells['split']}' is not one of {', '.join(SPLITS)}"
                )
    return table


def _csv_task(table: _CsvTable, task: Task | None) -> tuple[Task, list[str]]:
    """The task and the label/target columns it uses."""
    targets = [h for h in table.header if h.startswith("target_")]
    has_label = "label" in table.header
    if not has_label and not targets:
        raise DatasetError(
            f"{table.path}: no 'label' column (header: {','.join(table.header)}); add a label column "
            "(classification) or label / target_* columns (regression)"
        )
    if task is None:
        task = "regression" if targets else "classification"
    if task == "classification":
        if not has_label:
            raise DatasetError(
                f"{table.path}: classification needs a 'label' column (header: {','.join(table.header)})"
            )
        return "classification", ["label"]
    return "regression", (["label"] if has_label else []) + targets


def _parse_class_labels(table: _CsvTable) -> tuple[dict[int, int], list[str]]:
    """Label index per CSV line and the class names, from every row (all splits)."""
    values = {n: cells["label"] for n, cells in table.rows}
    for n, value in values.items():
        if not value:
            raise DatasetError(f"{table.path}: line {n}: empty label")
    numbers = {n: _float_or_none(v) for n, v in values.items()}
    if all(x is not None for x in numbers.values()):
        indices = {}
        for n, x in numbers.items():
            assert x is not None
            if not float(x).is_integer():
                raise DatasetError(
                    f"{table.path}: line {n}: label '{values[n]}' is not an integer class index; "
                    "use integers or class names, or pass task='regression' for continuous targets"
                )
            if x < 0:
                raise DatasetError(f"{table.path}: line {n}: label '{values[n]}' is negative; class indices start at 0")
            indices[n] = int(x)
        return indices, [str(k) for k in range(max(indices.values()) + 1)]
    names = sorted(set(values.values()))
    lookup = {name: k for k, name in enumerate(names)}
    return {n: lookup[v] for n, v in values.items()}, names


def _float_or_none(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _load_csv(path: Path, split: str, task: Task | None, normalize: Normalize) -> ClassificationSet:
    table = _read_csv(path)
    resolved_task, columns = _csv_task(table, task)
    if split not in table.splits:
        raise _no_split(path, split, table.splits)
    rows = [(n, cells) for n, cells in table.rows if not table.has_split or cells["split"] == split]
    class_names: list[str] = []
    if resolved_task == "classification":
        indices, class_names = _parse_class_labels(table)
        labels = np.asarray([indices[n] for n, _ in rows], dtype=np.int64)
    else:
        targets = []
        for n, cells in rows:
            row = []
            for column in columns:
                value = _float_or_none(cells[column])
                if value is None:
                    raise DatasetError(
                        f"{path}: line {n}: {column} '{cells[column]}' is not a finite number (regression target)"
                    )
                row.append(value)
            targets.append(row)
        labels = np.asarray(targets, dtype=np.float32).reshape(len(rows), len(columns))
    folds = None
    if "fold" in table.header:
        fold_values = []
        for n, cells in rows:
            try:
                fold_values.append(int(cells["fold"]))
            except ValueError:
                raise DatasetError(f"{path}: line {n}: fold '{cells['fold']}' is not an integer") from None
        folds = np.asarray(fold_values, dtype=np.int64)
    files = []
    for n, cells in rows:
        if not cells["path"]:
            raise DatasetError(f"{path}: line {n}: empty path")
        file = Path(cells["path"])
        file = file if file.is_absolute() else path.parent / file
        if not file.exists():
            raise DatasetError(f"{path}: line {n}: image '{cells['path']}' does not exist ({file})")
        files.append(file)
    images = _stack_files(files, normalize)
    return ClassificationSet(
        images=_normalize_stack(images, normalize),
        labels=labels,
        class_names=class_names,
        ids=[cells["path"] for _, cells in rows],
        folds=folds,
        task=resolved_task,
    )


# ---------------------------------------------------------------- MedMNIST .npz


def _npz_splits(keys: Sequence[str]) -> list[str]:
    found = {k.rsplit("_", 1)[0] for k in keys if k.endswith(("_images", "_labels"))}
    return [s for s in SPLITS if s in found] + sorted(found - set(SPLITS))


def _load_npz(path: Path, split: str, task: Task | None, normalize: Normalize) -> ClassificationSet:
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as err:
        raise DatasetError(f"{path}: cannot read .npz ({err})") from err
    with archive as data:
        keys = list(data.files)
        splits = _npz_splits(keys)
        if not splits:
            raise DatasetError(
                f"{path}: no '<split>_images' / '<split>_labels' keys (keys present: {', '.join(keys) or 'none'}); "
                "expected the MedMNIST layout train_images, train_labels, val_images, ..."
            )
        if split not in splits:
            raise _no_split(path, split, splits)
        for key in (f"{split}_images", f"{split}_labels"):
            if key not in keys:
                raise DatasetError(f"{path}: missing key '{key}' (keys present: {', '.join(keys)})")
        raw_labels = np.asarray(data[f"{split}_labels"])
        raw_images = data[f"{split}_images"]
        if task is None:
            task = "regression" if raw_labels.dtype.kind == "f" and not _integral(raw_labels) else "classification"
        class_names: list[str] = []
        if task == "classification":
            labels = _npz_class_labels(path, split, raw_labels)
            stored = None
            if "class_names" in keys:
                stored = [str(c) for c in np.asarray(data["class_names"]).reshape(-1)]
            largest = int(labels.max()) if labels.size else -1
            for key in keys:  # other splits' labels too, so class indices agree across splits
                if key.endswith("_labels") and key != f"{split}_labels":
                    other = np.asarray(data[key])
                    largest = max(largest, int(other.max()) if other.size else -1)
            if stored is not None:
                if largest >= len(stored):
                    raise DatasetError(
                        f"{path}: label {largest} has no entry in class_names ({len(stored)} names: {stored})"
                    )
                class_names = stored
            else:
                class_names = [str(k) for k in range(largest + 1)]
        else:
            labels = raw_labels.astype(np.float32).reshape(len(raw_labels), -1)
        images = _npz_images(path, split, raw_images, normalize)
    if len(images) != len(labels):
        raise DatasetError(
            f"{path}: '{split}_images' holds {len(images)} images but '{split}_labels' {len(labels)} labels"
        )
    return ClassificationSet(
        images=_normalize_stack(images, normalize),
        labels=labels,
        class_names=class_names,
        ids=[f"npz:{split}:{i}" for i in range(len(images))],
        folds=None,
        task=task,
    )


def _integral(array: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(array)) and np.all(array == np.round(array)))


def _npz_class_labels(path: Path, split: str, raw: np.ndarray) -> np.ndarray:
    key = f"{split}_labels"
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim != 1:
        raise DatasetError(
            f"{path}: '{key}' has shape {raw.shape}; expected (N, 1) class indices (multi-label sets "
            "are not supported; pass task='regression' to load them as float targets)"
        )
    if raw.dtype.kind not in "iub" and not (raw.dtype.kind == "f" and _integral(raw)):
        raise DatasetError(f"{path}: '{key}' holds non-integer values ({raw.dtype}); expected class indices")
    if raw.size and raw.min() < 0:
        raise DatasetError(f"{path}: '{key}' holds negative labels; class indices start at 0")
    return raw.astype(np.int64)


def _npz_images(path: Path, split: str, raw: np.ndarray, normalize: Normalize) -> np.ndarray:
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
            f"{path}: '{key}' has shape {raw.shape}; expected (N, H, W), (N, H, W, C) or (N, D, H, W)"
        )
    if raw.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: '{key}' has unsupported dtype {raw.dtype}")
    images = np.empty(view.shape, dtype=np.float32)
    if normalize == "auto" and _is_uint8(raw):
        np.divide(view, np.float32(255.0), out=images, dtype=np.float32)
    else:
        images[...] = view
    if raw.dtype.kind == "f":
        finite = np.isfinite(images.reshape(len(images), -1)).all(axis=1)
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            raise DatasetError(f"{path}: '{key}' image {first} (npz:{split}:{first}) holds NaN or infinite values")
    return images


# ---------------------------------------------------------------- weights and folds


def _class_labels(labels: np.ndarray | Sequence[int], name: str = "labels") -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iub"):
        raise ConfigError(f"{name} must be a 1-D array of integer class indices, got shape {array.shape} {array.dtype}")
    if array.size and array.min() < 0:
        raise ConfigError(f"{name} must be >= 0, got {array.min()}")
    return array.astype(np.int64, copy=False)


def class_weights(labels: np.ndarray | Sequence[int], num_classes: int) -> np.ndarray:
    """Inverse-frequency class weights, normalised to mean 1 over the classes present.

    ``w_k = 1 / count_k`` scaled so the present classes' weights average 1 (for a loss such as
    ``CrossEntropyLoss(weight=...)``). A class with no samples gets weight 0.

    Args:
        labels: ``(N,)`` class indices in ``[0, num_classes)``.
        num_classes: number of classes.

    Returns:
        ``(num_classes,)`` float64.

    Example:
        >>> class_weights([0, 0, 0, 1], 2).tolist()
        [0.5, 1.5]
    """
    labels = _class_labels(labels)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if labels.size and labels.max() >= num_classes:
        raise ConfigError(f"label {labels.max()} is out of range for num_classes={num_classes}")
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes, dtype=np.float64)
    present = counts > 0
    if not present.any():
        return weights
    weights[present] = 1.0 / counts[present]
    return weights * (present.sum() / weights.sum())


def balanced_sample_weights(labels: np.ndarray | Sequence[int]) -> np.ndarray:
    """Per-sample weights that make every class equally likely to be drawn.

    Sample ``i`` gets ``1 / count(labels[i])``, scaled to mean 1; pass them to
    ``torch.utils.data.WeightedRandomSampler(torch.as_tensor(w), num_samples, replacement=True)``.

    Returns:
        ``(N,)`` float64.

    Example:
        >>> balanced_sample_weights([0, 0, 0, 1]).tolist()
        [0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 2.0]
    """
    labels = _class_labels(labels)
    if not labels.size:
        return np.zeros(0, dtype=np.float64)
    counts = np.bincount(labels).astype(np.float64)
    weights = 1.0 / counts[labels]
    return weights * (labels.size / weights.sum())


def stratified_folds(labels: np.ndarray | Sequence[int], n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """A fold index per sample with every class spread evenly over the folds.

    Each class's samples are shuffled (``numpy.random.default_rng(seed)``) and dealt out in
    turn, continuing where the previous class stopped, so every fold holds within one sample
    of ``count_k / n_folds`` of each class ``k`` and the fold sizes differ by at most one.
    Deterministic for a given ``(labels, n_folds, seed)``. For regression, stratify on binned
    targets (e.g. ``np.digitize(y, np.quantile(y, [0.25, 0.5, 0.75]))``).

    Args:
        labels: ``(N,)`` class indices.
        n_folds: number of folds, ``2 <= n_folds <= N``.
        seed: shuffling seed.

    Returns:
        ``(N,)`` int64 fold indices in ``[0, n_folds)``.
    """
    labels = _class_labels(labels)
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ConfigError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if n_folds > labels.size:
        raise ConfigError(f"n_folds={n_folds} is more than the {labels.size} samples")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == k)) for k in np.unique(labels)])
    folds = np.empty(labels.size, dtype=np.int64)
    folds[order] = np.arange(order.size) % n_folds
    return folds
