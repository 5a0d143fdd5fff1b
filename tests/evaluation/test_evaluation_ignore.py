"""Sparse references: voxels whose reference is the ``ignore`` label count in no metric, with
the value read from the dataset's ``dataset.json`` by default or given as ``--ignore-label``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.evaluation import evaluate_folders
from medseg.io import Image, write_image
from medseg.metrics.case import METRIC_COLUMNS

IGNORE = 3


def _reference() -> np.ndarray:
    """8 x 8: label 1 a 3 x 3 square, label 2 a 2 x 2 square, the lower-left 4 x 4 ignored."""
    ref = np.zeros((8, 8), np.uint8)
    ref[1:4, 1:4] = 1
    ref[5:7, 5:7] = 2
    ref[4:8, 0:4] = IGNORE
    return ref


def _write(root: Path, name: str, pred: np.ndarray, *, with_meta: bool = True) -> None:
    write_image(
        Image(_reference(), (1.0, 1.0)), root / "labelsTr" / "case_a.nii.gz", overwrite=True
    )
    write_image(Image(pred, (1.0, 1.0)), root / name / "case_a.nii.gz")
    if with_meta:
        labels = {"background": 0, "a": 1, "b": 2, "ignore": IGNORE}
        meta = {"channel_names": {"0": "CT"}, "labels": labels, "file_ending": ".nii.gz"}
        (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")


def _rows(out: Path) -> dict[str, dict[str, float]]:
    with (out / "per_case.csv").open(encoding="utf-8") as handle:
        return {
            row["label"]: {k: float(row[k]) for k in METRIC_COLUMNS}
            for row in csv.DictReader(handle)
        }


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in METRIC_COLUMNS)


def test_predictions_on_ignored_voxels_change_no_metric(tmp_path: Path) -> None:
    exact = _reference().copy()
    exact[exact == IGNORE] = 0
    wild = exact.copy()
    rng = np.random.default_rng(0)
    wild[4:8, 0:4] = rng.integers(0, 3, (4, 4))  # labels 1 and 2 predicted where not annotated
    assert (wild[4:8, 0:4] == 1).any() and (wild[4:8, 0:4] == 2).any()
    _write(tmp_path, "exact", exact)
    _write(tmp_path, "wild", wild)
    ref = tmp_path / "labelsTr"
    first = evaluate_folders(tmp_path / "exact", ref, tmp_path / "e1", jobs=1)
    second = evaluate_folders(tmp_path / "wild", ref, tmp_path / "e2", jobs=1)
    assert first["options"]["ignore_label"] == IGNORE  # read from ../dataset.json
    assert first["labels"] == ["1", "2"] == second["labels"]  # "3" is not a label
    rows, wild_rows = _rows(tmp_path / "e1"), _rows(tmp_path / "e2")
    for label in ("1", "2"):
        assert _same(rows[label], wild_rows[label]), label
        # hand values: a perfect prediction of the 48 annotated voxels
        assert rows[label]["dice"] == 1.0 and rows[label]["hd95"] == 0.0
        assert rows[label]["tp"] + rows[label]["tn"] == 64 - 16
    # without the ignore label the wild voxels are false positives: label 1 has 9 TP and
    # FP = its predictions in the lower-left block
    plain = evaluate_folders(tmp_path / "wild", ref, tmp_path / "e3", ignore_label=None, jobs=1)
    assert plain["options"]["ignore_label"] is None and "3" in plain["labels"]
    fp = int((wild[4:8, 0:4] == 1).sum())
    assert _rows(tmp_path / "e3")["1"]["dice"] == pytest.approx(18 / (18 + fp))


def test_cli_ignore_label_option(tmp_path: Path) -> None:
    pred = _reference().copy()
    pred[pred == IGNORE] = 1  # label 1 everywhere in the ignored block
    _write(tmp_path, "pred", pred, with_meta=False)
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "labelsTr")]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out"), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert _rows(tmp_path / "out")["1"]["dice"] == pytest.approx(18 / (18 + 16))  # 16 FP
    option = ["--ignore-label", str(IGNORE), "--overwrite"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out"), "-j", "1", *option])
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "out")
    assert rows["1"]["dice"] == 1.0 and set(rows) == {"1", "2"}
