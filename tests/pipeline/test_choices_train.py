"""Every registered segmentation network and loss trains through ``medseg train`` (one short
epoch on a small phantom plan), each chosen with ``medseg plan --network/--loss``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.data.phantoms import PhantomConfig, generate_dataset
from medseg.losses import list_losses
from medseg.nets import plannable_networks
from medseg.planning.plan import Plans
from medseg.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

SMALL = PhantomConfig(fov_mm=(64.0, 64.0), spacing=(1.0, 1.0))
# narrow networks keep each run to a few seconds
NARROW = "network_config.features=[4, 8, 16, 16, 16]"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("choices_train")
    return generate_dataset(root / "data", spatial_dims=2, num_cases=5, config=SMALL)


def plan_and_train(phantoms: Path, results: Path, *choice: str) -> Plans:
    runner = CliRunner()
    planned = runner.invoke(
        app, ["plan", str(phantoms), "-o", str(results), "--memory-gb", "0.1", *choice]
    )
    assert planned.exit_code == 0, planned.output
    assert runner.invoke(app, ["preprocess", str(results), "-c", "2d", "-j", "1"]).exit_code == 0
    trained = runner.invoke(
        app,
        [
            "train",
            str(results),
            "--config",
            "2d",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--workers",
            "0",
            "--precision",
            "fp32",
            "--no-validate",
        ],
    )
    assert trained.exit_code == 0, trained.output
    return Plans.from_json(results / "plans.json")


def trained_loss(results: Path) -> float:
    checkpoint = load_checkpoint(results / "2d" / "fold_0" / "checkpoint_latest.pt")
    return float(checkpoint["log"][-1]["train_loss"])


@pytest.mark.parametrize("network", plannable_networks())
def test_every_network_trains_through_medseg_train(
    phantoms: Path, tmp_path: Path, network: str
) -> None:
    # fcn and highres3dnet are narrow already (no `features` option); the transformers'
    # default build is their small `cpu` preset
    narrow_already = ("fcn", "transunet", "swin_unet", "unetr", "highres3dnet")
    narrow = () if network in narrow_already else ("--set", NARROW)
    if network == "segnet":
        narrow = ("--set", "network_config.features=[4, 8, 16, 16]")
    plans = plan_and_train(phantoms, tmp_path / "r", "--network", network, *narrow)
    assert plans["2d"].network == network
    loss = trained_loss(tmp_path / "r")
    assert loss == loss and abs(loss) < 1e6  # finite
    if network == "vae_unet":  # Dice-CE + 0.1 L2 + 0.1 KL: the VAE terms made it in
        assert "0.1 KL" in plans["2d"].reasons["loss"]


@pytest.mark.parametrize("loss", list_losses("segmentation"))
def test_every_loss_trains_through_medseg_train(phantoms: Path, tmp_path: Path, loss: str) -> None:
    plans = plan_and_train(phantoms, tmp_path / "r", "--loss", loss, "--set", NARROW)
    assert plans["2d"].loss == loss
    value = trained_loss(tmp_path / "r")
    assert torch.isfinite(torch.tensor(value))
