"""The Cox survival head: one log-risk per image in 2D/3D, no bias (the partial likelihood
cannot train one), an encoder from the classifier zoo, ONNX, and risks learnt from images
through the training engine (C-index 1 on the training set)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medseg.losses import build_loss
from medseg.metrics.survival import concordance_index
from medseg.nets import build_network, network_task
from medseg.nets.cox_head import CoxHead
from medseg.training.engine import Task, run_training

SMALL = {"encoder_config": {"features": (4, 8)}}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_one_log_risk_per_image(spatial_dims: int) -> None:
    net = build_network(
        "cox_head", spatial_dims=spatial_dims, in_channels=2, out_channels=1, **SMALL
    )
    assert net(torch.randn(3, 2, *([8] * spatial_dims))).shape == (3, 1)
    assert net.features(torch.randn(1, 2, *([8] * spatial_dims))).shape[1] == 8
    assert net.head[-1].bias is None and network_task("cox_head") == "classification"
    with pytest.raises(ValueError, match="spatial axes"):
        net(torch.randn(3, 2, 8))


def test_reuses_a_classifier_backbone() -> None:
    net = CoxHead(2, 1, encoder="resnet18")
    assert net.head[-1].in_features == 512
    assert net.backbone is net.encoder.backbone
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 1)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_onnx_export_matches_torch(assert_onnx_matches, spatial_dims: int) -> None:
    net = CoxHead(spatial_dims, 1, **SMALL).eval()
    assert_onnx_matches(net, torch.randn(2, 1, *([8] * spatial_dims)))


def test_learns_risk_from_images_through_the_engine(tmp_path: Path) -> None:
    """Brighter images die sooner; 16 patients, a quarter censored."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    brightness = torch.linspace(0, 1, 16)[torch.randperm(16, generator=generator)]
    images = brightness.view(16, 1, 1, 1) + 0.05 * torch.randn(16, 1, 8, 8, generator=generator)
    time = 10 * (1.2 - brightness)
    event = (torch.arange(16) % 4 != 0).float()
    target = torch.stack([time, event], dim=1)
    net = CoxHead(2, 1, **SMALL)
    loss_fn = build_loss("cox")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    task = Task(
        model=net,
        optimizer=optimizer,
        batches=lambda epoch: [(images, target)] * 30,
        loss=lambda batch: loss_fn(net(batch[0]), batch[1]),
        validate=lambda use_bf16, rows: {},
        score=lambda row: -row["train_loss"],
        set_learning_rate=lambda step, fraction: None,
    )
    result = run_training(task, tmp_path / "run", epochs=2, use_bf16=False, progress=False)
    with torch.no_grad():
        risk = net.eval()(images)[:, 0]
    assert concordance_index(time.numpy(), risk.numpy(), event.numpy()) == 1.0
    assert result.steps == 60
