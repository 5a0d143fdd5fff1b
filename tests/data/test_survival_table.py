"""Survival tables: case,time,event[,path] read in row order with their images; every bad row
is one DatasetError line naming the file and line; stratified validation splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.data.survival_table import (
    check_outcomes,
    read_survival_csv,
    validation_split,
)
from medseg.errors import ConfigError, DatasetError
from medseg.io import Image, write_image


def _images(folder: Path, names: list[str]) -> None:
    for k, name in enumerate(names):
        pixels = np.full((8, 8), 10 * k, dtype=np.uint8)
        write_image(Image(pixels, (1.0, 1.0)), folder / "images" / f"{name}.png")


def _table(tmp_path: Path, text: str, names=("a", "b", "c")) -> Path:
    _images(tmp_path, list(names))
    path = tmp_path / "table.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_rows_are_read_in_order_with_their_images(tmp_path: Path) -> None:
    path = _table(tmp_path, "Case,TIME,event,age\nc,3.5,1,70\na,2,0,60\nb,0,1,50\n")
    table = read_survival_csv(path)
    assert table.cases == ["c", "a", "b"]
    np.testing.assert_array_equal(table.time, [3.5, 2.0, 0.0])
    np.testing.assert_array_equal(table.event, [1, 0, 1])
    assert table.event.dtype == np.int64 and table.images.shape == (3, 1, 8, 8)
    np.testing.assert_allclose(table.images[:, 0, 0, 0], [20 / 255, 0, 10 / 255], rtol=1e-6)
    part = table.subset(np.array([2, 0]))
    assert part.cases == ["b", "c"] and part.time.tolist() == [0.0, 3.5]


def test_a_path_column_names_the_image(tmp_path: Path) -> None:
    path = _table(tmp_path, "case,path,time,event\nx,images/b.png,1,1\ny,,2,0\n", ("b", "y"))
    table = read_survival_csv(path)
    np.testing.assert_allclose(table.images[:, 0, 0, 0], [0.0, 10 / 255], rtol=1e-6)


def test_outcomes_are_optional_for_prediction(tmp_path: Path) -> None:
    path = _table(tmp_path, "case\na\nb\n")
    table = read_survival_csv(path, outcome="optional")
    assert table.time is None and not table.has_outcome
    with pytest.raises(DatasetError, match="no time or event column"):
        read_survival_csv(path)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("a,,1", "line 3: an event without a time"),
        ("a,,0", "line 3: a censored case without a time"),
        ("a,nan,1", "line 3: time 'nan' is not a finite number >= 0"),
        ("a,-2,0", "line 3: time '-2' is not a finite number >= 0"),
        ("a,soon,1", "line 3: time 'soon' is not a finite number >= 0"),
        ("a,2,2", "line 3: event '2' is not 0 or 1"),
        ("a,2,yes", "line 3: event 'yes' is not 0 or 1"),
        ("a,2,", "line 3: event '' is not 0 or 1"),
        ("b,2,1", "line 3: case 'b' repeats line 2"),
        ("z,2,1", "line 3: no image for case 'z'"),
        (",2,1", "line 3: empty case"),
        ("a,2", "line 3 has 2 cells, the header has 3"),
    ],
)
def test_a_bad_row_is_one_line_naming_the_file_and_line(
    tmp_path: Path, rows: str, message: str
) -> None:
    path = _table(tmp_path, f"case,time,event\nb,1,1\n{rows}\n")
    with pytest.raises(DatasetError) as info:
        read_survival_csv(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "CSV is empty"),
        ("time,event\n1,1\n", "no 'case' column"),
        ("case,time,event\n", "no rows"),
        ("case,case,time\na,b,1\n", "duplicate column"),
    ],
)
def test_a_bad_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = _table(tmp_path, text)
    with pytest.raises(DatasetError, match=message):
        read_survival_csv(path)


def test_validation_split_is_stratified_and_reproducible() -> None:
    event = np.array([1] * 40 + [0] * 60)
    train, val = validation_split(event, 0.25, seed=1)
    assert len(val) == 25 and int(event[val].sum()) == 10
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    again = validation_split(event, 0.25, seed=1)[1]
    assert np.array_equal(val, again) and not np.array_equal(val, validation_split(event, 0.25)[1])
    small = np.array([1, 1, 1, 1, 0, 0])
    rest, few = validation_split(small, 0.1)  # 0.4 events rounds to 0: at least 2 each side
    assert int(small[few].sum()) == 2 and int(small[rest].sum()) == 2
    with pytest.raises(DatasetError, match="too few"):
        validation_split(np.array([1, 1, 1, 0, 0]), 0.2)
    with pytest.raises(ConfigError, match="fraction"):
        validation_split(event, 1.0)


def test_check_outcomes_names_the_rows() -> None:
    with pytest.raises(DatasetError, match=r"rows \[1\]"):
        check_outcomes(np.array([1.0, np.inf, 2.0]), np.array([1, 1, 0]), 3, "val")
    check_outcomes(np.array([1.0, 1.0]), np.array([1, 1]), 2, "ok")
