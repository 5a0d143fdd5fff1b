"""build_report: one self-contained HTML file, every section, missing pieces stated."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from medseg.errors import ConfigError, OverwriteError
from medseg.evaluation import evaluate_folders
from medseg.report import build_report, load_results

CONFIG = "3d_fullres"
PNG_URI = "data:image/png;base64,"


def _summary(results: Path) -> dict:
    return json.loads(
        (results / "evaluation" / CONFIG / "summary.json").read_text(encoding="utf-8")
    )


@pytest.fixture(scope="module")
def report(shared_results: Path) -> str:
    """The report of the module's shared folder (for tests that only read it)."""
    return build_report(shared_results, overwrite=True).read_text(encoding="utf-8")


def test_report_is_written_as_the_only_new_file_in_results(results: Path) -> None:
    before = {p for p in results.rglob("*")}
    path = build_report(results)
    assert path == results / "report.html"
    assert {p for p in results.rglob("*")} - before == {path}


def test_report_refers_to_nothing_outside_itself(report: str) -> None:
    assert 'src="http' not in report and 'href="http' not in report
    assert "<link" not in report and "<script" not in report and "url(" not in report
    sources = re.findall(r'src="([^"]*)"', report)
    assert sources and all(s.startswith(PNG_URI) for s in sources)


def test_figures_are_inline_png(shared_results: Path, report: str) -> None:
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', report)
    # one boxplot, one training-curve figure, three overlays (best, median, worst), and one
    # Bland-Altman plot of predicted against reference volume per label
    assert len(uris) == 5 + len(_summary(shared_results)["per_label"])
    assert "Bland-Altman" in report
    assert all(base64.b64decode(u)[:8] == b"\x89PNG\r\n\x1a\n" for u in uris)


def test_metric_table_shows_the_summary_statistics(shared_results: Path, report: str) -> None:
    summary = _summary(shared_results)
    for stats in [*summary["per_label"].values(), summary["overall"]]:
        dice = stats["dice"]
        assert f"{dice['mean']:.3f} &#177; {dice['std']:.3f}" in report
        assert f"{dice['median']:.3f}" in report
    assert f"{summary['overall']['hd95']['mean']:.2f}" in report
    assert "<td>1 (organ)</td>" in report and "<td>all labels</td>" in report


def test_nan_counts_are_reported(shared_results: Path, report: str) -> None:
    # case_001 predicts no lesion: its lesion HD95 is NaN (empty prediction)
    nan_count = _summary(shared_results)["per_label"]["2"]["hd95"]["nan_count"]
    assert nan_count == 1
    assert re.search(r"HD95 \(mm\)</th>", report)
    # label 2's row: Dice (3 cells), IoU (3 cells), then HD95 mean, median and NaN count
    assert re.search(
        r'<td>2 \(lesion\)</td>(<td class="num">[^<]*</td>){8}<td class="num">1</td>', report
    )


def test_best_median_and_worst_cases_are_named_with_their_dice(report: str) -> None:
    assert "best: case_000, mean Dice 1.000 (1 (organ): 1.000, 2 (lesion): 1.000)" in report
    assert "median: case_001" in report
    assert "worst: case_002" in report


def test_header_names_dataset_version_and_trained_configurations(report: str) -> None:
    from medseg import __version__

    assert "tiny" in report
    assert f"<td>{__version__}</td>" in report
    assert f"{CONFIG} (folds 0)" in report


def test_plan_table_shows_patch_and_reasons_in_details(shared_results: Path, report: str) -> None:
    plan = json.loads((shared_results / "plans.json").read_text(encoding="utf-8"))[
        "configurations"
    ][CONFIG]
    patch = " &#215; ".join(str(v) for v in plan["patch_size"])
    assert patch in report
    assert "<details><summary>Why these choices (3d_fullres)</summary>" in report
    assert len(plan["reasons"]) > 0


def test_training_table_summarises_the_log(report: str) -> None:
    # the fake log's EMA Dice rises 0.15 per epoch over 4 epochs; 4 x 3.5 s = 0.2 min
    assert '<td class="num">0.600</td>' in report
    assert '<td class="num">0.2</td>' in report
    assert "fold_0" in report


def test_dataset_name_is_escaped(results: Path) -> None:
    plans_path = results / "plans.json"
    plans = json.loads(plans_path.read_text(encoding="utf-8"))
    plans["dataset_name"] = "<script>alert(1)</script>"
    plans_path.write_text(json.dumps(plans), encoding="utf-8")
    report = build_report(results).read_text(encoding="utf-8")
    assert "<script>" not in report
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report


def test_file_is_ascii_with_character_references(report: str) -> None:
    assert report.isascii()
    assert "&#177;" in report  # the mean +- std sign


def test_missing_evaluation_and_folds_are_stated(planned: Path) -> None:
    report = build_report(planned).read_text(encoding="utf-8")
    assert "No evaluation yet" in report
    assert "No trained folds" in report
    assert PNG_URI not in report


def test_missing_plans_is_stated(tmp_path: Path) -> None:
    report = build_report(tmp_path).read_text(encoding="utf-8")
    assert "No plans:" in report
    assert "No evaluation yet" in report


def test_corrupt_plans_file_is_stated_not_raised(planned: Path) -> None:
    (planned / "plans.json").write_text("{not json", encoding="utf-8")
    report = build_report(planned).read_text(encoding="utf-8")
    assert "plans.json: could not be read" in report


def test_missing_image_still_draws_contours_with_a_note(results: Path, dataset: Path) -> None:
    shutil.rmtree(dataset / "imagesTr")
    report = build_report(results).read_text(encoding="utf-8")
    assert "image not found in the dataset folder" in report
    assert report.count(PNG_URI) == 5 + len(_summary(results)["per_label"])


def test_missing_predictions_are_stated(results: Path) -> None:
    shutil.rmtree(results / CONFIG / "fold_0" / "validation")
    report = build_report(results).read_text(encoding="utf-8")
    assert "no overlay: prediction not found" in report


def test_existing_report_is_kept_without_overwrite(results: Path) -> None:
    path = build_report(results)
    path.write_text("keep me", encoding="utf-8")
    with pytest.raises(OverwriteError, match="overwrite"):
        build_report(results)
    assert path.read_text(encoding="utf-8") == "keep me"
    assert (
        build_report(results, overwrite=True)
        .read_text(encoding="utf-8")
        .startswith("<!DOCTYPE html>")
    )


def test_out_and_title_are_honoured(results: Path, tmp_path: Path) -> None:
    path = build_report(results, out=tmp_path / "elsewhere" / "r.html", title="My <run>")
    assert path.is_file() and not (results / "report.html").exists()
    assert "<title>My &lt;run&gt;</title>" in path.read_text(encoding="utf-8")


def test_extra_sections_appear_with_escaped_titles(results: Path) -> None:
    extra = [("Otsu <baseline>", "<table><tr><td>0.812</td></tr></table>")]
    report = build_report(results, extra_sections=extra).read_text(encoding="utf-8")
    assert "<h2>Otsu &lt;baseline&gt;</h2><table><tr><td>0.812</td></tr></table>" in report
    assert '<a href="#extra-1">' in report


@pytest.mark.parametrize("extra", [[("only a title",)], [("title", 3)], ["ab"]])
def test_malformed_extra_sections_are_rejected(planned: Path, extra: list) -> None:
    with pytest.raises(ConfigError, match="extra_sections"):
        build_report(planned, extra_sections=extra)
    assert not (planned / "report.html").exists()


def test_results_path_that_is_not_a_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such results folder"):
        build_report(tmp_path / "missing")


def test_evaluation_directly_in_evaluation_folder_is_read(results: Path, dataset: Path) -> None:
    shutil.rmtree(results / "evaluation")
    evaluate_folders(
        results / CONFIG / "fold_0" / "validation",
        dataset / "labelsTr",
        results / "evaluation",
        jobs=1,
    )
    loaded = load_results(results)
    assert [e.name for e in loaded.evaluations] == ["evaluation"]
    assert "worst: case_002" in build_report(results).read_text(encoding="utf-8")


def test_device_from_run_json_is_shown(results: Path) -> None:
    (results / CONFIG / "fold_0" / "run.json").write_text(
        json.dumps({"device": "cuda:0"}), encoding="utf-8"
    )
    assert "<th>Device</th><td>cuda:0</td>" in build_report(results).read_text(encoding="utf-8")
