"""``evaluate_folders(lesion_wise=True)`` and ``medseg evaluate --lesion-wise``: lesions.csv
and ``summary["lesion_wise"]`` equal the metric called case by case, with one-line errors."""

from __future__ import annotations

import csv
import logging
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.errors import ConfigError
from medseg.evaluation import evaluate_folders
from medseg.io import Image, write_image
from medseg.metrics import lesion_wise

SPACING = (2.0, 1.0, 1.0)
OPTIONS = {"dilation_mm": 2.0, "min_volume_mm3": 0.0}


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Two 3D cases of label 1: ``a`` finds one of two lesions and adds a spurious one; ``b``
    finds its only lesion exactly."""
    ref_a = np.zeros((6, 20, 20), np.uint8)
    ref_a[1:4, 2:6, 2:6] = 1
    ref_a[1:4, 12:16, 12:16] = 1  # missed
    pred_a = np.zeros_like(ref_a)
    pred_a[1:4, 2:6, 3:7] = 1
    pred_a[2:4, 15:18, 2:4] = 1  # spurious
    ref_b = np.zeros((6, 20, 20), np.uint8)
    ref_b[2:5, 8:12, 8:12] = 1
    return {"a": (pred_a, ref_a), "b": (ref_b.copy(), ref_b)}


def _write(root) -> None:
    for case, (pred, ref) in _cases().items():
        write_image(Image(pred, SPACING), root / "pred" / f"{case}.nii.gz")
        write_image(Image(ref, SPACING), root / "ref" / f"{case}.nii.gz")


def _lesion_wise(root, out="out", **options):
    return evaluate_folders(
        root / "pred", root / "ref", root / out, lesion_wise=True, jobs=1, **options
    )


def test_folder_lesion_results_equal_the_metric_case_by_case(tmp_path):
    _write(tmp_path)
    summary = _lesion_wise(tmp_path, lesion_options=OPTIONS)
    direct = {
        case: lesion_wise(pred == 1, ref == 1, SPACING, **OPTIONS)
        for case, (pred, ref) in _cases().items()
    }
    assert (direct["a"].tp, direct["a"].fp, direct["a"].fn) == (1, 1, 1)
    stats = summary["lesion_wise"]["per_label"]["1"]
    assert (stats["tp"], stats["fp"], stats["fn"]) == (2, 1, 1)  # summed over both cases
    # detection F1 of the summed counts: 2 TP / (2 TP + (1 FP + 1 FN) / 2)
    assert stats["f1"] == pytest.approx(2 / 3)
    expected_dice = (direct["a"].lesion_dice + direct["b"].lesion_dice) / 2
    assert stats["lesion_dice"]["mean"] == pytest.approx(expected_dice)
    assert direct["b"].lesion_dice == 1.0 and direct["a"].lesion_dice < 0.5
    with open(tmp_path / "out" / "lesions.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    kinds = sorted((row["case"], row["kind"]) for row in rows)
    assert kinds == [("a", "fn"), ("a", "fp"), ("a", "tp"), ("b", "tp")]
    missed = next(row for row in rows if row["kind"] == "fn")
    assert float(missed["dice"]) == 0.0 and float(missed["hd95"]) == 374.0
    assert float(missed["ref_volume_mm3"]) == 3 * 4 * 4 * 2.0
    assert summary["options"]["lesion_wise"]["dilation_mm"] == 2.0


def test_without_the_option_no_lesion_outputs(tmp_path):
    _write(tmp_path)
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", jobs=1)
    assert "lesion_wise" not in summary
    assert not (tmp_path / "out" / "lesions.csv").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dilation_mm": -1.0}, "dilation_mm must be a finite number >= 0"),
        ({"min_volume_mm3": math.nan}, "min_volume_mm3 must be a finite number >= 0"),
        ({"footprint": "cube"}, "footprint must be one of ellipsoid, brats"),
        ({"radius": 2}, "unknown lesion-wise option(s) radius"),
        ({"labels": ["tumour"]}, "lesion-wise labels tumour not among the evaluated labels"),
    ],
)
def test_bad_lesion_options_are_refused_before_any_work(tmp_path, options, message):
    _write(tmp_path)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate_folders(
            tmp_path / "pred",
            tmp_path / "ref",
            tmp_path / "out",
            lesion_wise=True,
            lesion_options=options,
            jobs=1,
        )
    assert not (tmp_path / "out" / "summary.json").exists()


def test_cli_lesion_wise_prints_the_table_and_writes_lesions_csv(tmp_path):
    _write(tmp_path)
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref")]
    args += ["-o", str(tmp_path / "out"), "--jobs", "1", "--lesion-wise"]
    args += ["--lesion-dilation", "2", "--lesion-min-volume", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "lesion-wise" in result.output and "lesion Dice" in result.output
    assert (tmp_path / "out" / "lesions.csv").is_file()
    again = CliRunner().invoke(app, [*args, "--lesion-footprint", "cube"])
    assert again.exit_code != 0 and "cube" in again.output


def test_one_warning_for_a_label_that_is_one_component_everywhere(tmp_path, caplog):
    """An organ label (one blob per case) gets a single warning, a lesion label none."""
    for case in ("a", "b", "c"):
        ref = np.zeros((6, 20, 20), np.uint8)
        ref[1:5, 2:10, 2:10] = 1  # the organ
        ref[2:4, 14:16, 14:16] = 2  # two lesions
        ref[2:4, 14:16, 2:4] = 2
        write_image(Image(ref, SPACING), tmp_path / "ref" / f"{case}.nii.gz")
        write_image(Image(ref, SPACING), tmp_path / "pred" / f"{case}.nii.gz")
    with caplog.at_level(logging.WARNING, logger="medseg.evaluation"):
        summary = evaluate_folders(
            tmp_path / "pred",
            tmp_path / "ref",
            tmp_path / "out",
            lesion_wise=True,
            lesion_options=OPTIONS,
            jobs=1,
        )
    warnings = [r.getMessage() for r in caplog.records if "one component" in r.getMessage()]
    assert warnings == [
        "label 1 has one component in each of its 3 case(s); lesion-wise metrics equal the "
        "per-case ones there (meant for labels with many lesions)"
    ]
    assert summary["lesion_wise"]["per_label"]["2"]["tp"] == 6


def test_lesion_labels_restrict_the_lesion_wise_labels(tmp_path):
    for case in ("a", "b"):
        ref = np.zeros((6, 20, 20), np.uint8)
        ref[1:5, 2:10, 2:10] = 1
        ref[2:4, 14:16, 14:16] = 2
        write_image(Image(ref, SPACING), tmp_path / "ref" / f"{case}.nii.gz")
        write_image(Image(ref, SPACING), tmp_path / "pred" / f"{case}.nii.gz")
    summary = evaluate_folders(
        tmp_path / "pred",
        tmp_path / "ref",
        tmp_path / "out",
        lesion_wise=True,
        lesion_options={**OPTIONS, "labels": ["2"]},
        jobs=1,
    )
    assert list(summary["lesion_wise"]["per_label"]) == ["2"]
    with open(tmp_path / "out" / "lesions.csv", encoding="utf-8", newline="") as handle:
        assert {row["label"] for row in csv.DictReader(handle)} == {"2"}
    named = evaluate_folders(
        tmp_path / "pred",
        tmp_path / "ref",
        tmp_path / "named",
        labels={"organ": 1, "lesion": 2},
        lesion_wise=True,
        lesion_options={**OPTIONS, "labels": ["lesion"]},
        jobs=1,
    )
    assert list(named["lesion_wise"]["per_label"]) == ["lesion"]
