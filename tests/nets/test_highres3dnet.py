"""HighRes3DNet: full-resolution shapes in 2D/3D, the paper's parameter count and receptive
field, zero-padded shortcuts, ONNX, ``medseg plan --network highres3dnet`` and a phantom
learnt through the training engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medseg.errors import ConfigError
from medseg.losses import DiceCELoss
from medseg.nets import build_network, count_parameters, network_task
from medseg.nets.highres3dnet import HighRes3DNet, PreActResidualUnit
from medseg.training.engine import Task, run_training

TINY = {"channels": (4, 8, 8), "head_channels": 8}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_output_keeps_any_input_size(spatial_dims: int) -> None:
    net = build_network(
        "highres3dnet", spatial_dims=spatial_dims, in_channels=2, out_channels=3, **TINY
    ).eval()
    shape = (7, 10, 9)[:spatial_dims]
    with torch.no_grad():
        out = net(torch.randn(2, 2, *shape))
    assert out.shape == (2, 3, *shape) and torch.isfinite(out).all()
    assert net.required_divisor == (1,) * spatial_dims
    assert network_task("highres3dnet") == "segmentation"


def test_default_3d_build_has_the_papers_size() -> None:
    # Li et al. 2017, Table 1: HighRes3DNet has 0.81 M parameters
    net = build_network("highres3dnet", spatial_dims=3, in_channels=1, out_channels=160)
    assert 0.80e6 < count_parameters(net) < 0.83e6
    assert net.receptive_field == 87  # 3 + 2 * 3 units * 2 convolutions * (1 + 2 + 4)
    assert len(net.units) == 9


def test_receptive_field_is_what_the_gradient_reaches() -> None:
    net = HighRes3DNet(2, 1, 1, units_per_group=1, norm="none", **TINY).eval()
    assert net.receptive_field == 31  # 3 + 2 * 1 * 2 * 7
    x = torch.randn(1, 1, 41, 41, requires_grad=True)
    net(x)[0, 0, 20, 20].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    assert int(rows.max() - rows.min()) + 1 == 31


def test_widening_unit_pads_the_shortcut_with_zero_channels() -> None:
    unit = PreActResidualUnit(3, 2, 5, dilation=2, norm="batch", act="relu").eval()
    for conv in unit.body:
        if isinstance(conv, torch.nn.Conv3d):
            torch.nn.init.zeros_(conv.weight)
    x = torch.randn(1, 2, 4, 5, 6)
    y = unit(x)
    assert torch.equal(y[:, :2], x) and torch.equal(y[:, 2:], torch.zeros(1, 3, 4, 5, 6))
    with pytest.raises(ConfigError, match="must not shrink"):
        HighRes3DNet(2, 1, 2, channels=(8, 4, 4))
    with pytest.raises(ConfigError, match="one dilation per channel group"):
        HighRes3DNet(2, 1, 2, channels=(8, 8), dilations=(1, 2, 4))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_onnx_export_matches_torch(assert_onnx_matches, spatial_dims: int) -> None:
    net = HighRes3DNet(spatial_dims, 2, 3, **TINY).eval()
    assert_onnx_matches(net, torch.randn(1, 2, *([12] * spatial_dims)))


def test_plan_accepts_highres3dnet_and_builds_it() -> None:
    from medseg.planning.choices import network_config_for

    planned = {"features": [32, 64, 128], "strides": [[1, 1], [2, 2], [2, 2]], "norm": "instance"}
    config = network_config_for("highres3dnet", planned)
    assert config == {"norm": "instance"}  # U-Net stage settings do not apply
    net = build_network("highres3dnet", spatial_dims=2, in_channels=1, out_channels=2, **config)
    assert net(torch.zeros(1, 1, 24, 20)).shape == (1, 2, 24, 20)


def _disc(spatial_dims: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    grid = torch.stack(torch.meshgrid(*[torch.arange(size)] * spatial_dims, indexing="ij"))
    label = ((grid - size / 2 + 0.5) ** 2).sum(0) <= (size / 4) ** 2
    noise = 0.2 * torch.randn(label.shape, generator=torch.Generator().manual_seed(0))
    return (label.float() + noise)[None, None], label.long()[None, None]


@pytest.mark.parametrize(("spatial_dims", "size"), [(2, 24), (3, 12)])
def test_learns_a_phantom_through_the_engine(tmp_path: Path, spatial_dims: int, size: int) -> None:
    torch.manual_seed(0)
    image, label = _disc(spatial_dims, size)
    net = HighRes3DNet(spatial_dims, 1, 2, units_per_group=1, **TINY)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = DiceCELoss()
    task = Task(
        model=net,
        optimizer=optimizer,
        batches=lambda epoch: [(image, label)] * 30,
        loss=lambda batch: loss_fn(net(batch[0]), batch[1]),
        validate=lambda use_bf16, rows: {},
        score=lambda row: -row["train_loss"],
        set_learning_rate=lambda step, fraction: None,
    )
    result = run_training(task, tmp_path / "run", epochs=2, use_bf16=False, progress=False)
    assert result.steps == 60
    with torch.no_grad():
        pred = net.eval()(image).argmax(1, keepdim=True)
    dice = 2 * ((pred == 1) & (label == 1)).sum() / ((pred == 1).sum() + (label == 1).sum())
    assert dice > 0.95
