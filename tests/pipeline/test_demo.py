"""``medseg demo`` end to end, shrunk to 4 cases and 3 steps: every artefact it promises
exists, and it trains the steps it is given (not a time budget)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from medseg.errors import ConfigError, OverwriteError
from medseg.pipeline.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_writes_report_summary_and_preview_and_refuses_a_full_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "demo"
    with caplog.at_level(logging.INFO, logger="medseg.pipeline.demo"):
        summary = run_demo(out, num_cases=4, epochs=1, steps_per_epoch=3, progress=False)
    saved = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert saved["mean_dice"] == pytest.approx(summary["mean_dice"])
    assert (saved["epochs"], saved["steps"], saved["stopped_by"]) == (1, 3, "epochs")
    assert saved["seconds_per_step"] > 0 and saved["estimated_train_s"] > 0
    assert "1 epochs x 3 steps" in caplog.text and "about" in caplog.text
    assert set(saved["per_label_dice"]) == {"organ", "lesion", "vessel"}
    assert 0.0 <= saved["otsu_foreground_dice"] <= 1.0
    # the multi-atlas row: every label, evaluated by the same evaluator on the same cases
    assert set(saved["multi_atlas_per_label_dice"]) == {"organ", "lesion", "vessel"}
    assert saved["multi_atlas_atlases"] == 3 and saved["timings_s"]["multi_atlas"] > 0
    atlas_eval = json.loads((out / "baseline_multi_atlas" / "summary.json").read_text("utf-8"))
    assert atlas_eval["n_cases"] == 4  # the held-out test phantoms
    assert saved["multi_atlas_foreground_dice"] == pytest.approx(
        atlas_eval["per_label"]["foreground"]["dice"]["mean"]
    )
    # phantom organs vary in place and shape, yet affine atlases overlap them well
    assert saved["multi_atlas_per_label_dice"]["organ"] > 0.5
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Otsu" in html and "multi-atlas Dice" in html and "Augmentation preview" in html
    # the answers beside the overlaps: volumes with Bland-Altman, the phantoms' lesions scored
    # lesion by lesion, and the validation uncertainty against Dice
    for section in ("Volumes and agreement", "Bland-Altman", "Lesion-wise evaluation"):
        assert section in html
    assert "Uncertainty" in html and "Spearman" in html
    evaluation = out / "results" / "evaluation" / saved["configuration"]
    lesion_summary = json.loads((evaluation / "summary.json").read_text(encoding="utf-8"))
    assert list(lesion_summary["lesion_wise"]["per_label"]) == ["2"]  # the "lesion" label
    assert (evaluation / "lesions.csv").is_file()
    assert (out / "augmentation_preview.png").stat().st_size > 0
    with pytest.raises(OverwriteError, match="--overwrite"):
        run_demo(out, num_cases=4, epochs=1, steps_per_epoch=3, progress=False)


def test_demo_refuses_a_training_length_below_one_step(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="steps_per_epoch must be >= 1"):
        run_demo(tmp_path / "demo", epochs=1, steps_per_epoch=0, progress=False)
    assert not (tmp_path / "demo").exists()
