"""``medseg robustness``: a model that thresholds intensity loses Dice as image noise grows.

The model is a fixed function of intensity (class 1 where the z-scored intensity is positive),
so the expected behaviour is provable: on a bright square, level 0 is segmented exactly and
noise flips background voxels past the threshold more often the stronger it is. The checkpoint
on disk is an ordinary (untrained) U-Net of the plan, so ``find_checkpoints`` and the plan
loading run for real; only the network that ``model_from_checkpoint`` returns is replaced.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import medseg.training
from medseg.cli.main import app
from medseg.errors import ConfigError, DatasetError, OverwriteError
from medseg.evaluation.robustness import case_rng, robustness
from medseg.evaluation.robustness_summary import (
    CSV_COLUMNS,
    load_robustness,
    summarize_robustness,
)
from medseg.io import Image, write_image
from medseg.planning.plan import Plan
from medseg.training.checkpoint import build_model, save_checkpoint


class IntensityThreshold(nn.Module):
    """Class 1 where the (z-scored) input is above 0, with a steep logistic: ``(B, 2, ...)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x[:, :1]), 50.0 * x[:, :1]], dim=1)


def _plan() -> Plan:
    return Plan(
        configuration="2d",
        spatial_dims=2,
        spacing=(1.0, 1.0),
        median_shape=(32, 32),
        patch_size=(32, 32),
        batch_size=2,
        normalization=("zscore",),
        intensity={},
        num_classes=2,
        in_channels=1,
        labels={"background": 0, "organ": 1},
        network_config={
            "features": [4, 8],
            "strides": [[1, 1], [2, 2]],
            "norm": "instance",
            "deep_supervision": True,
        },
    )


@pytest.fixture()
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Two 32x32 cases (a bright square on a dark background) and a results folder."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        label = np.zeros((32, 32), np.uint8)
        label[8 + k : 24, 6 : 22 + k] = 1
        image = label.astype(np.float32) + rng.normal(0.0, 0.02, label.shape).astype(np.float32)
        write_image(Image(image, (1.0, 1.0)), images / f"case_{k}_0000.nii.gz", overwrite=False)
        write_image(Image(label, (1.0, 1.0)), labels / f"case_{k}.nii.gz", overwrite=False)
    plan = _plan()
    results = tmp_path / "results"
    save_checkpoint(
        results / "2d" / "fold_0" / "checkpoint_best.pt",
        network_state=build_model(plan).state_dict(),
        plan=plan.to_dict(),
        epoch=0,
        step=0,
        fold=0,
        configuration="2d",
    )
    real = medseg.training.model_from_checkpoint
    monkeypatch.setattr(
        medseg.training,
        "model_from_checkpoint",
        lambda path: (IntensityThreshold().eval(), real(path)[1]),
    )
    return {"images": images, "labels": labels, "results": results, "out": tmp_path / "out"}


def _dice(summary: dict, perturbation: str) -> list[float]:
    return [
        entry["labels"]["1"]["dice"]["mean"]
        for entry in summary["perturbations"][perturbation]["levels"]
    ]


def test_dice_falls_as_noise_grows_and_the_outputs_agree(setup) -> None:
    summary = robustness(
        setup["results"],
        setup["images"],
        setup["labels"],
        setup["out"],
        perturbations=["noise", "blur"],
        mirror=False,
        device="cpu",
    )
    noise = _dice(summary, "noise")
    assert noise[0] == 1.0  # the threshold segments the clean squares exactly
    assert noise[0] > noise[2] > noise[4], noise
    assert summary["perturbations"]["noise"]["levels"][4]["labels"]["1"]["dice_drop"] == (
        pytest.approx(1.0 - noise[4])
    )
    assert _dice(summary, "blur")[0] == 1.0  # level 0 is shared by every perturbation
    with open(setup["out"] / "robustness.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 2 * 5 * 2  # perturbations x levels x cases (one label)
    level4 = [float(r["dice"]) for r in rows if r["perturbation"] == "noise" and r["level"] == "4"]
    assert np.mean(level4) == pytest.approx(noise[4])
    assert {r["parameter"] for r in rows if r["perturbation"] == "noise"} == {
        "0.0",
        "0.05",
        "0.1",
        "0.15000000000000002",
        "0.2",
    }
    stored = load_robustness(setup["out"] / "robustness.json")
    assert _dice(stored, "noise") == pytest.approx(noise)
    assert (setup["out"] / "robustness.png").read_bytes()[:4] == b"\x89PNG"


def test_the_run_is_reproducible_from_its_seed(setup) -> None:
    options = {"perturbations": ["noise"], "levels": 3, "mirror": False, "device": "cpu"}
    first = robustness(setup["results"], setup["images"], setup["labels"], setup["out"], **options)
    again = robustness(
        setup["results"],
        setup["images"],
        setup["labels"],
        setup["out"],
        overwrite=True,
        **options,
    )
    assert _dice(first, "noise") == _dice(again, "noise")
    a = case_rng(0, "case_0", "noise", 1).random(3)
    assert not np.array_equal(a, case_rng(0, "case_1", "noise", 1).random(3))
    np.testing.assert_array_equal(a, case_rng(0, "case_0", "noise", 1).random(3))


def test_existing_outputs_unknown_perturbations_and_missing_references_are_refused(
    setup,
) -> None:
    args = (setup["results"], setup["images"], setup["labels"], setup["out"])
    with pytest.raises(ConfigError, match="noise"):
        robustness(*args, perturbations=["nosie"])
    (setup["labels"] / "case_1.nii.gz").unlink()
    with pytest.raises(DatasetError, match="case_1"):
        robustness(*args, perturbations=["noise"])
    setup["out"].mkdir()
    (setup["out"] / "robustness.json").write_text("{}", encoding="utf-8")
    with pytest.raises(OverwriteError, match="robustness.json"):
        robustness(*args, perturbations=["noise"])


def test_summary_averages_labels_per_case_before_cases() -> None:
    rows = [
        {"perturbation": "blur", "level": level, "parameter": level, "case": case,
         "label": label, "dice": dice, "hd95": hd95}
        for level, case, label, dice, hd95 in [
            (0, "a", "1", 1.0, 0.0), (0, "a", "2", 0.5, 2.0), (0, "b", "1", 0.8, 1.0),
            (0, "b", "2", math.nan, math.nan),
            (1, "a", "1", 0.5, 1.0), (1, "a", "2", 0.25, math.inf), (1, "b", "1", 0.4, 3.0),
            (1, "b", "2", 0.2, 4.0),
        ]
    ]  # fmt: skip
    levels = summarize_robustness(rows)["blur"]["levels"]
    everything = levels[0]["labels"]["all"]["dice"]
    assert everything["mean"] == pytest.approx((0.75 + 0.8) / 2)  # case means 0.75 and 0.8
    assert levels[0]["labels"]["2"]["dice"]["nan_count"] == 1
    assert levels[1]["labels"]["2"]["hd95"] == {"mean": 4.0, "std": 0.0, "n": 1, "nan_count": 1}
    assert levels[1]["labels"]["1"]["dice_drop"] == pytest.approx(0.9 - 0.45)


def test_the_cli_runs_end_to_end_and_prints_the_table(setup) -> None:
    result = CliRunner().invoke(
        app,
        [
            "robustness",
            str(setup["results"]),
            "-i",
            str(setup["images"]),
            "--ref",
            str(setup["labels"]),
            "--perturb",
            "noise,contrast",
            "--levels",
            "3",
            "--cases",
            "1",
            "--no-mirror",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "noise" in result.output and "contrast" in result.output
    out = setup["results"] / "robustness"  # the default output folder
    summary = json.loads((out / "robustness.json").read_text(encoding="utf-8"))
    assert summary["cases"] == ["case_0"] and summary["options"]["levels"] == 3
    again = CliRunner().invoke(
        app,
        ["robustness", str(setup["results"]), "-i", str(setup["images"]), "--ref",
         str(setup["labels"]), "--perturb", "noise"],
    )  # fmt: skip
    # the console script turns this MedsegError into one line and exit code 1 (cli.main.run)
    assert isinstance(again.exception, OverwriteError) and "already exists" in str(again.exception)
