"""The CSV source: a header row, then one row per image.

::

    path,label[,fold][,split]        # classification
    path,label,target_x,...          # regression (or path,target_a,target_b; or task="regression")

``path`` is relative to the CSV's folder (absolute paths work too); column names are case
insensitive. Classification labels are either all integers (``1.0`` counts as 1; the label
*is* the class index, class names are ``"0" .. str(max)`` over all rows) or class-name
strings (sorted over all rows -> indices). ``fold`` is an integer; ``split`` is
``train``/``val``/``test`` (without it every row is split ``"train"``). Regression targets
are ``label`` (if present) followed by the ``target_*`` columns in file order. The file is
read as UTF-8 (a byte-order mark is dropped).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
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
from medseg.errors import DatasetError

#: ``(line number, cells by lower-case column name)`` for each non-blank data row.
Rows = list[tuple[int, dict[str, str]]]


@dataclass
class CsvTable:
    """A parsed CSV: its path, lower-case header and numbered rows (blank lines dropped)."""

    path: Path
    header: list[str]
    rows: Rows

    @property
    def has_split(self) -> bool:
        return "split" in self.header

    @property
    def splits(self) -> list[str]:
        """The splits the rows name, in ``SPLITS`` order; ``["train"]`` without a split column."""
        if not self.has_split:
            return ["train"]
        present = {cells["split"] for _, cells in self.rows}
        return [s for s in SPLITS if s in present]


def read_csv_rows(
    path: Path, key_column: str, example_header: str
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The lower-case header and the numbered non-blank rows (``(line number, {column:
    cell})``) of a CSV whose header must hold ``key_column``.

    Raises:
        DatasetError: the file cannot be read or decoded, is empty, lacks ``key_column``, has
            duplicate column names, a row with the wrong cell count, or no rows.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{path}: cannot read CSV ({err})") from err
    numbered = [(n, row) for n, row in enumerate(lines, start=1) if any(c.strip() for c in row)]
    if not numbered:
        raise DatasetError(
            f"{path}: CSV is empty; expected a header row {example_header} and one row per image"
        )
    _, header_row = numbered[0]
    header = [h.strip().lower() for h in header_row]
    if key_column not in header:
        raise DatasetError(
            f"{path}: no '{key_column}' column (header: {','.join(header_row)}); the first row "
            f"must be a header such as {example_header}"
        )
    if len(set(header)) != len(header):
        raise DatasetError(f"{path}: duplicate column names in header {','.join(header_row)}")
    rows = []
    for n, row in numbered[1:]:
        if len(row) != len(header):
            raise DatasetError(
                f"{path}: line {n} has {len(row)} cells, the header has {len(header)}"
            )
        rows.append((n, {h: cell.strip() for h, cell in zip(header, row, strict=True)}))
    if not rows:
        raise DatasetError(f"{path}: CSV has a header but no rows")
    return header, rows


def read_csv_table(path: Path) -> CsvTable:
    """Parse and check the CSV at ``path`` (header, cell counts, split names).

    Raises:
        DatasetError: the file cannot be read or decoded, is empty, has no ``path`` column,
            duplicate column names, a row with the wrong cell count, no rows, or a split
            that is not ``train``/``val``/``test``.
    """
    header, rows = read_csv_rows(path, "path", "path,label[,fold][,split]")
    table = CsvTable(path, header, rows)
    if table.has_split:
        for n, cells in rows:
            if cells["split"] not in SPLITS:
                raise DatasetError(
                    f"{path}: line {n}: split '{cells['split']}' is not one of {', '.join(SPLITS)}"
                )
    return table


def _csv_task(table: CsvTable, task: Task | None) -> tuple[Task, list[str]]:
    """The task and the label/target columns it uses."""
    targets = [h for h in table.header if h.startswith("target_")]
    has_label = "label" in table.header
    if not has_label and not targets:
        raise DatasetError(
            f"{table.path}: no 'label' column (header: {','.join(table.header)}); "
            "add a label column (classification) or label / target_* columns (regression)"
        )
    if task is None:
        task = "regression" if targets else "classification"
    if task == "classification":
        if not has_label:
            raise DatasetError(
                f"{table.path}: classification needs a 'label' column "
                f"(header: {','.join(table.header)})"
            )
        return "classification", ["label"]
    return "regression", (["label"] if has_label else []) + targets


def _parse_class_labels(table: CsvTable) -> tuple[dict[int, int], list[str]]:
    """Label index per CSV line and the class names, from every row (all splits)."""
    values = {n: cells["label"] for n, cells in table.rows}
    for n, value in values.items():
        if not value:
            raise DatasetError(f"{table.path}: line {n}: empty label")
    numbers = {n: x for n, v in values.items() if (x := _float_or_none(v)) is not None}
    if len(numbers) == len(values):
        indices = {}
        for n, x in numbers.items():
            if not float(x).is_integer():
                raise DatasetError(
                    f"{table.path}: line {n}: label '{values[n]}' is not an integer class index; "
                    "use integers or class names, or pass task='regression' for continuous targets"
                )
            if x < 0:
                raise DatasetError(
                    f"{table.path}: line {n}: label '{values[n]}' is negative; "
                    "class indices start at 0"
                )
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


def _regression_targets(path: Path, rows: Rows, columns: list[str]) -> np.ndarray:
    """``(len(rows), len(columns))`` float32 targets, each cell a finite number."""
    targets = []
    for n, cells in rows:
        row = []
        for column in columns:
            value = _float_or_none(cells[column])
            if value is None:
                raise DatasetError(
                    f"{path}: line {n}: {column} '{cells[column]}' is not a finite number "
                    "(regression target)"
                )
            row.append(value)
        targets.append(row)
    return np.asarray(targets, dtype=np.float32).reshape(len(rows), len(columns))


def _folds(path: Path, rows: Rows) -> np.ndarray:
    """``(len(rows),)`` int64 from the ``fold`` column."""
    fold_values = []
    for n, cells in rows:
        try:
            fold_values.append(int(cells["fold"]))
        except ValueError:
            raise DatasetError(
                f"{path}: line {n}: fold '{cells['fold']}' is not an integer"
            ) from None
    return np.asarray(fold_values, dtype=np.int64)


def _image_files(path: Path, rows: Rows) -> list[Path]:
    """The image file of each row, relative paths taken from the CSV's folder."""
    files = []
    for n, cells in rows:
        if not cells["path"]:
            raise DatasetError(f"{path}: line {n}: empty path")
        file = Path(cells["path"])
        file = file if file.is_absolute() else path.parent / file
        if not file.exists():
            raise DatasetError(f"{path}: line {n}: image '{cells['path']}' does not exist ({file})")
        files.append(file)
    return files


def load_csv(path: Path, split: str, task: Task | None, normalize: Normalize) -> ClassificationSet:
    """Load ``split`` of the CSV dataset at ``path`` (see the module docstring).

    Args:
        path: the ``.csv`` file.
        split: a split the ``split`` column names (``"train"`` without that column).
        task: ``"classification"``, ``"regression"`` or ``None`` (regression when the header
            has ``target_*`` columns).
        normalize: the intensity mode (``medseg.data.classification``).

    Returns:
        The split's images in row order; ids are the ``path`` cells as written.

    Raises:
        DatasetError: the CSV, a cell or an image is bad (the message names the line).
    """
    table = read_csv_table(path)
    resolved_task, columns = _csv_task(table, task)
    if split not in table.splits:
        raise no_split_error(path, split, table.splits)
    rows = [(n, cells) for n, cells in table.rows if not table.has_split or cells["split"] == split]
    class_names: list[str] = []
    if resolved_task == "classification":
        indices, class_names = _parse_class_labels(table)
        labels = np.asarray([indices[n] for n, _ in rows], dtype=np.int64)
    else:
        labels = _regression_targets(path, rows, columns)
    folds = _folds(path, rows) if "fold" in table.header else None
    images = stack_files(_image_files(path, rows), normalize)
    return ClassificationSet(
        images=normalize_stack(images, normalize),
        labels=labels,
        class_names=class_names,
        ids=[cells["path"] for _, cells in rows],
        folds=folds,
        task=resolved_task,
    )
