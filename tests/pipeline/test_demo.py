"""``medseg demo`` end to end with a tiny budget: every artefact it promises exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.errors import OverwriteError
from medseg.pipeline.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_writes_report_summary_and_preview_and_refuses_a_full_folder(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    summary = run_demo(out, num_cases=4, time_budget_s=2.0, progress=False)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["mean_dice"] == pytest.approx(summary["mean_dice"])
    assert set(saved["per_label_dice"]) == {"organ", "lesion", "vessel"}
    assert 0.0 <= saved["otsu_foreground_dice"] <= 1.0
    html = (out / "report.html").read_text()
    assert "Otsu" in html and "Augmentation preview" in html
    assert (out / "augmentation_preview.png").stat().st_size > 0
    with pytest.raises(OverwriteError, match="--overwrite"):
        run_demo(out, num_cases=4, time_budget_s=2.0, progress=False)
