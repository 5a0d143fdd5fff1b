"""Checkpoint discovery knows variants (``<configuration>-<variant>``): found by name, left out
of the default ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.errors import ConfigError
from medseg.inference.checkpoints import find_checkpoints, is_plan_name, trained_plans


def _results(root: Path, planned: list[str], trained: dict[str, list[str]]) -> Path:
    """A results folder whose plans.json names ``planned`` and whose ``trained`` plans have a
    ``checkpoint_best.pt`` per fold (discovery looks at the files only)."""
    root.mkdir()
    plans = {"dataset_name": "tiny", "dataset_path": "ds", "configurations": dict.fromkeys(planned)}
    (root / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    for name, folds in trained.items():
        for fold in folds:
            (root / name / f"fold_{fold}").mkdir(parents=True)
            (root / name / f"fold_{fold}" / "checkpoint_best.pt").write_bytes(b"")
    (root / "2d" / "fold_9").mkdir(parents=True, exist_ok=True)  # no checkpoint: not trained
    (root / "evaluation" / "fold_0").mkdir(parents=True)  # not a plan's folder
    (root / "evaluation" / "fold_0" / "checkpoint_best.pt").write_bytes(b"")
    return root


def _names(paths: list[Path], results: Path) -> list[str]:
    return [p.parent.relative_to(results).as_posix() for p in paths]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return _results(
        tmp_path / "results",
        ["2d", "3d_fullres", "2d-attn", "3d_fullres-dice"],
        {"2d-attn": ["0", "1"], "3d_fullres": ["0"], "2d": ["0", "1"], "3d_fullres-dice": ["0"]},
    )


def test_plan_names_are_configurations_and_their_variants() -> None:
    assert is_plan_name("2d") and is_plan_name("3d_cascade_fullres-big_patch")
    assert not any(map(is_plan_name, ["evaluation", "preprocessed", "2d-", "2d-Attn", "4d-x"]))


def test_trained_plans_lists_configurations_then_variants(results: Path) -> None:
    assert trained_plans(results) == {
        "2d": ["0", "1"],
        "3d_fullres": ["0"],
        "2d-attn": ["0", "1"],
        "3d_fullres-dice": ["0"],
    }


def test_default_ensemble_is_the_configurations_without_variants(results: Path) -> None:
    assert _names(find_checkpoints(results), results) == [
        "2d/fold_0",
        "2d/fold_1",
        "3d_fullres/fold_0",
    ]


def test_a_variant_named_is_ensembled(results: Path) -> None:
    paths = find_checkpoints(results, configurations=["2d", "2d-attn"], folds=[1])
    assert _names(paths, results) == ["2d/fold_1", "2d-attn/fold_1"]
    assert _names(find_checkpoints(results, configurations=["2d-attn"]), results) == [
        "2d-attn/fold_0",
        "2d-attn/fold_1",
    ]


def test_an_unplanned_name_lists_the_planned_ones(results: Path) -> None:
    with pytest.raises(ConfigError, match=r"'2d-big' is not in plans.json \(planned: 2d, 2d-attn"):
        find_checkpoints(results, configurations=["2d", "2d-big"])


def test_with_only_variants_trained_the_default_says_to_name_one(tmp_path: Path) -> None:
    results = _results(tmp_path / "results", ["2d", "2d-attn"], {"2d-attn": ["0"]})
    with pytest.raises(ConfigError, match="2d-attn/fold_0.*variants are used only when named"):
        find_checkpoints(results)
