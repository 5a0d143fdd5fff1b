"""The classification report shares the segmentation report's page and helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.errors import ConfigError, OverwriteError
from medseg.report.classification import build_classification_report
from medseg.report.html import format_number, page, table


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "fold_0").mkdir(parents=True)
    config = {"task": "classification", "network": "resnet18", "class_names": ["a", "b"]}
    (run / "fold_0" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (run / "run.json").write_text(json.dumps({"data": "Tümor"}), encoding="utf-8")
    return run


def test_classification_report_is_one_ascii_page_with_notes_for_missing_parts(
    tmp_path: Path,
) -> None:
    path = build_classification_report(_run(tmp_path))
    text = path.read_text(encoding="ascii")
    assert path.name == "report.html"
    assert "<title>medseg classification report: T&#252;mor</title>" in text
    assert '<a href="#metrics">Metrics</a>' in text and "No evaluation yet" in text
    with pytest.raises(OverwriteError):
        build_classification_report(tmp_path / "run")


def test_classification_report_refuses_a_folder_without_a_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a classification run"):
        build_classification_report(tmp_path)


def test_page_escapes_names_and_tables_align_numeric_cells() -> None:
    html = page("a < b", [("x", "<X>", "<p>kept</p>")])
    assert "<title>a &lt; b</title>" in html and "<h2>&lt;X&gt;</h2><p>kept</p>" in html
    cells = table([["name", format_number(0.5), format_number(float("nan"))]], ["n", "v", "w"])
    assert '<td class="num">0.500</td>' in cells and '<td class="num">n/a</td>' in cells


def test_html_helper_examples_hold() -> None:
    import doctest

    import medseg.report.html

    result = doctest.testmod(medseg.report.html)
    assert result.attempted > 0 and result.failed == 0
