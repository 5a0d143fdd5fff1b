"""``medseg classify``: train -> predict -> evaluate -> explain -> report on the phantom set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.data import make_classification_phantoms
from medseg.errors import ConfigError, DatasetError, OverwriteError
from medseg.pipeline.classify import classify_predict, classify_train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("classify") / "data"
    make_classification_phantoms(root, n_per_class=80, n_test_per_class=30, spatial_dims=2, seed=3)
    return root


@pytest.fixture(scope="module")
def trained(phantoms: Path) -> Path:
    run = phantoms.parent / "run"
    torch.set_num_threads(2)
    result = CliRunner().invoke(
        app,
        ["classify", "train", str(phantoms), "-o", str(run), "--net", "resnet18", "--epochs", "8"],
    )
    assert result.exit_code == 0, result.output
    return run


def test_training_reaches_the_stated_accuracy_on_held_out_phantoms(trained: Path) -> None:
    summary = json.loads((trained / "run.json").read_text(encoding="utf-8"))
    # stated in docs/classification.md: resnet18, 128 training images, 8 epochs -> test
    # accuracy >= 0.85
    assert summary["test"]["accuracy"] >= 0.85, summary["test"]
    assert summary["test"]["roc_auc"] >= 0.9
    assert summary["validation"]["n"] == 32 and summary["test"]["n"] == 60
    for name in (
        "fold_0/checkpoint_best.pt",
        "fold_0/log.csv",
        "fold_0/curves.png",
        "test_predictions.csv",
        "evaluation/test/metrics.json",
        "evaluation/test/roc.png",
        "evaluation/test/confusion.png",
        "report.html",
    ):
        assert (trained / name).is_file(), name


def test_predict_evaluate_explain_and_report_from_the_cli(
    trained: Path, phantoms: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    csv = tmp_path / "pred.csv"
    result = runner.invoke(
        app, ["classify", "predict", str(trained), str(phantoms), "-o", str(csv)]
    )
    assert result.exit_code == 0, result.output
    # deterministic: the same inputs give the same table as the one training wrote
    assert csv.read_text(encoding="utf-8") == (trained / "test_predictions.csv").read_text(
        encoding="utf-8"
    )
    again = runner.invoke(app, ["classify", "predict", str(trained), str(phantoms), "-o", str(csv)])
    assert isinstance(again.exception, OverwriteError) and "--overwrite" in str(again.exception)
    result = runner.invoke(app, ["classify", "evaluate", str(csv)])
    assert result.exit_code == 0, result.output
    assert "macro" in result.output and (tmp_path / "roc.png").is_file()
    result = runner.invoke(
        app,
        [
            "classify",
            "explain",
            str(trained),
            str(phantoms),
            "-n",
            "4",
            "--layer",
            "backbone.layer3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(list((trained / "explain").glob("*.png"))) == 4
    result = runner.invoke(app, ["classify", "report", str(trained), "--overwrite"])
    assert result.exit_code == 0, result.output
    html = (trained / "report.html").read_text(encoding="utf-8")
    for text in (
        "Sensitivity",
        "Specificity",
        "NPV",
        "MCC",
        "ROC",
        "data:image/png;base64",
        "Where the network",
    ):
        assert text in html, text


def test_a_rerun_without_resume_refuses_and_resume_continues(trained: Path, phantoms: Path) -> None:
    with pytest.raises(ConfigError, match="--resume"):
        classify_train(phantoms, trained, network="resnet18", epochs=8, progress=False)
    summary = classify_train(
        phantoms, trained, network="resnet18", epochs=9, resume=True, progress=False
    )
    assert summary["folds"][0]["epochs"] == 9


def test_bad_inputs_are_one_clear_line(trained: Path, phantoms: Path, tmp_path: Path) -> None:
    rgb = tmp_path / "rgb.npz"
    np.savez(
        rgb, test_images=np.zeros((4, 64, 64, 3), np.uint8), test_labels=np.zeros((4, 1), np.uint8)
    )
    with pytest.raises(ConfigError, match="takes 1 channel.*images have 3"):
        classify_predict(trained, rgb, tmp_path / "p.csv")
    missing = tmp_path / "missing.npz"
    np.savez(missing, train_images=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="train_labels"):
        classify_train(missing, tmp_path / "run", epochs=1, progress=False)
    with pytest.raises(ConfigError, match="not a medseg classification checkpoint"):
        torch.save({"network_state": {}, "plan": {}}, tmp_path / "seg.pt")
        classify_predict(tmp_path / "seg.pt", phantoms, tmp_path / "q.csv")
    (tmp_path / "keep.csv").write_text("mine", encoding="utf-8")
    with pytest.raises(OverwriteError):
        classify_predict(trained, phantoms, tmp_path / "keep.csv")
    assert (tmp_path / "keep.csv").read_text(encoding="utf-8") == "mine"
    result = CliRunner().invoke(
        app, ["classify", "train", str(phantoms), "-o", str(tmp_path / "r"), "--net", "resnet99"]
    )
    assert isinstance(result.exception, ConfigError) and "resnet99" in str(result.exception)


def test_regression_from_a_csv_of_3d_volumes(tmp_path: Path) -> None:
    from medseg.io import Image, write_image

    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:16, :16, :16] - 7.5
    rows = ["path,target_radius,split"]
    for i in range(72):
        radius = rng.uniform(2.0, 7.0)
        volume = (np.sqrt(zz**2 + yy**2 + xx**2) < radius).astype(np.float32) + rng.normal(
            0, 0.1, zz.shape
        )
        write_image(Image(volume.astype(np.float32), (1.0, 1.0, 1.0)), tmp_path / f"v{i}.nii.gz")
        rows.append(f"v{i}.nii.gz,{radius:.4f},{'test' if i >= 56 else 'train'}")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    summary = classify_train(
        tmp_path / "data.csv",
        tmp_path / "run",
        network="unet_encoder",
        network_config={"features": (8, 16, 32)},
        loss="l1",
        epochs=15,
        batch_size=8,
        learning_rate=3e-3,
        augmentation="none",
        progress=False,
    )
    assert summary["task"] == "regression"
    targets = np.array([float(r.split(",")[1]) for r in rows[1:]])
    baseline = float(
        np.abs(targets[56:] - targets[:56].mean()).mean()
    )  # predicting the training mean
    assert summary["test"]["mae"] < 0.6 * baseline, (summary["test"], baseline)
    header = (tmp_path / "run" / "test_predictions.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "id,label,predicted,pred_0"
