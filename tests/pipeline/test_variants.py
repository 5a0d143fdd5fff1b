"""Variants side by side on a tiny 2D phantom: ``2d`` and ``2d-attn`` (attention U-Net), folds 0
and 1 of each, then predict both by name, pool a variant's folds, compare them in the report
and train a variant through the CLI."""

from __future__ import annotations

import json
import shutil
from html import unescape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.data.phantoms import PhantomConfig, generate_dataset
from medseg.errors import ConfigError
from medseg.inference.checkpoints import find_checkpoints
from medseg.inference.resume import RUN_FILE, models_fingerprint
from medseg.pipeline import plan, predict, prepare_cascade, preprocess, report, train
from medseg.pipeline.steps import evaluate_cross_validation
from medseg.planning.choices import PlanChoices
from medseg.training import model_from_checkpoint

pytestmark = pytest.mark.slow

SMALL = PhantomConfig(fov_mm=(64.0, 64.0), spacing=(1.0, 1.0))
PLANS = ("2d", "2d-attn")
FOLDS = (0, 1)
FAST = {"epochs": 1, "steps_per_epoch": 2, "num_workers": 0, "progress": False}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("variants")
    data = generate_dataset(root / "data", spatial_dims=2, num_cases=6, seed=0, config=SMALL)
    test = generate_dataset(root / "test", spatial_dims=2, num_cases=2, seed=1, config=SMALL)
    results = root / "results"
    plan(data, results, memory_gb=0.25, progress=False)
    plan(
        data,
        results,
        memory_gb=0.25,
        progress=False,
        variant="attn",
        choices=PlanChoices(network="attention_unet"),
    )
    preprocess(results, jobs=1, progress=False)
    for name in PLANS:
        for fold in FOLDS:
            train(results, name, fold, precision="fp32", **FAST)
    return {"data": data, "test": test / "imagesTr", "results": results}


def _fingerprint(results: Path, configurations: list[str]) -> str:
    paths = find_checkpoints(results, configurations=configurations)
    return models_fingerprint([model_from_checkpoint(path) for path in paths])


def test_the_variant_trains_in_its_own_folder_on_the_shared_data(trained: dict) -> None:
    results = trained["results"]
    plans = json.loads((results / "plans.json").read_text(encoding="utf-8"))["configurations"]
    assert plans["2d-attn"]["network"] == "attention_unet" and plans["2d"]["network"] == "unet"
    for name in PLANS:
        for fold in FOLDS:
            folder = results / name / f"fold_{fold}"
            assert (folder / "checkpoint_best.pt").is_file()
            assert (folder / "evaluation" / "summary.json").is_file()
    assert (results / "preprocessed" / "2d").is_dir()
    assert not (results / "preprocessed" / "2d-attn").exists()
    _, variant = model_from_checkpoint(results / "2d-attn" / "fold_0" / "checkpoint_best.pt")
    assert (variant.name, variant.configuration, variant.network) == (
        "2d-attn",
        "2d",
        "attention_unet",
    )


def test_predict_ensembles_both_plans_by_name(trained: dict, tmp_path: Path) -> None:
    results = trained["results"]
    both = predict(
        trained["test"], tmp_path / "both", results, configurations=list(PLANS), mirror=False
    )
    assert len(both) == 2 and all(path.is_file() for path in both)
    record = json.loads((tmp_path / "both" / RUN_FILE).read_text(encoding="utf-8"))
    assert record["models"] == _fingerprint(results, list(PLANS))  # 2 folds x 2 plans
    assert record["models"] != _fingerprint(results, ["2d"])

    # the default ensemble is the configurations only: a variant is used when named
    predict(trained["test"], tmp_path / "default", results, mirror=False)
    default = json.loads((tmp_path / "default" / RUN_FILE).read_text(encoding="utf-8"))
    assert default["models"] == _fingerprint(results, ["2d"])


def test_cross_validation_pools_a_variants_folds(trained: dict) -> None:
    results = trained["results"]
    summary = evaluate_cross_validation(results, "2d-attn")
    folds = [
        json.loads((results / "2d-attn" / f"fold_{k}" / "evaluation" / "summary.json").read_text())
        for k in FOLDS
    ]
    assert summary["n_cases"] == sum(f["n_cases"] for f in folds)
    assert (results / "evaluation" / "2d-attn" / "summary.json").is_file()


def test_prepare_cascade_refuses_a_variant_that_is_no_cascade_stage(trained: dict) -> None:
    with pytest.raises(ConfigError, match="2d-attn is not a cascade stage"):
        prepare_cascade(trained["results"], "2d-attn", progress=False)


def test_the_report_compares_both_plans_with_their_fold_spread(trained: dict) -> None:
    html = report(trained["results"], overwrite=True).read_text(encoding="utf-8")
    section = unescape(html.split('<section id="comparison">', 1)[1].split("</section>", 1)[0])
    for name in PLANS:
        assert f"<tr><td>{name}</td>" in section or f"<td>{name} \u2605 best</td>" in section
    assert "attention_unet" in section and "\u00b1" in section and "\u2605 best" in section
    assert "fold std" in section  # the verdict under the table


def test_cli_trains_a_variant_by_name(trained: dict, tmp_path: Path) -> None:
    results = tmp_path / "results"  # a copy: the other tests keep their checkpoints
    shutil.copytree(trained["results"], results)
    runner = CliRunner()
    args = ["--epochs", "1", "--steps-per-epoch", "1", "--workers", "0", "--no-validate"]
    result = runner.invoke(
        app,
        [
            "train",
            str(results),
            "--config",
            "2d-attn",
            "--fold",
            "all",
            *args,
            "--precision",
            "fp32",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (results / "2d-attn" / "fold_all" / "checkpoint_latest.pt").is_file()

    unplanned = runner.invoke(app, ["train", str(results), "--config", "2d-big", *args])
    assert unplanned.exit_code == 1
    assert isinstance(unplanned.exception, ConfigError)
    assert "'2d-attn'" in str(unplanned.exception) and "2d-big" in str(unplanned.exception)
