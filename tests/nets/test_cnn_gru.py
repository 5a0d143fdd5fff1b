"""CNN + bidirectional GRU over slices/frames: shapes for sequences of 2D and 3D images,
per-element outputs, an encoder reused from the classifier zoo, order sensitivity, ONNX and
an order-dependent task learnt through the training engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.nets import build_network, network_task
from medseg.nets.cnn_gru import CNNGRU
from medseg.training.engine import Task, run_training

SMALL = {"encoder_config": {"features": (4, 8)}, "hidden_size": 8}


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("per_element", [False, True])
def test_shapes(spatial_dims: int, per_element: bool) -> None:
    net = build_network(
        "cnn_gru",
        spatial_dims=spatial_dims,
        in_channels=2,
        out_channels=3,
        per_element=per_element,
        **SMALL,
    )
    x = torch.randn(2, 2, 5, *([8] * spatial_dims))
    out = net(x)
    assert out.shape == ((2, 3, 5) if per_element else (2, 3))
    assert network_task("cnn_gru") == "classification"


def test_encoder_from_the_classifier_zoo_and_bad_inputs() -> None:
    net = CNNGRU(2, 1, 2, encoder="resnet18", hidden_size=4)
    assert net.encoder.num_features == 512 and net.gru.input_size == 512
    assert net(torch.randn(1, 1, 3, 32, 32)).shape == (1, 2)
    with pytest.raises(ValueError, match=r"\(B, C, T, \*spatial\)"):
        net(torch.randn(1, 1, 32, 32))
    plain = CNNGRU(2, 1, 2, encoder_config={"features": (4, 8, 16)})  # two 2x2 poolings
    assert plain(torch.randn(1, 1, 2, 4, 4)).shape == (1, 2)
    with pytest.raises(ValueError, match="too small"):
        plain(torch.randn(1, 1, 2, 3, 4))
    with pytest.raises(ConfigError, match="not 'plain' or a registered classifier"):
        CNNGRU(2, 1, 2, encoder="unet")


def test_bidirectional_outputs_see_later_frames_forward_only_ones_do_not() -> None:
    torch.manual_seed(0)
    net = CNNGRU(2, 1, 2, per_element=True, **SMALL).eval()
    x = torch.randn(1, 1, 6, 8, 8)
    with torch.no_grad():
        out = net(x)
        changed_last = x.clone()
        changed_last[:, :, -1] += 5
        out_changed = net(changed_last)
    # bidirectional: changing the last frame changes the first frame's output too
    assert not torch.allclose(out[..., 0], out_changed[..., 0])
    seq = CNNGRU(2, 1, 2, bidirectional=False, per_element=True, **SMALL).eval()
    with torch.no_grad():
        a, b = seq(x), seq(changed_last)
    torch.testing.assert_close(a[..., :-1], b[..., :-1])  # forward-only: the past only
    assert not torch.allclose(a[..., -1], b[..., -1])


def _sequences(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sequences of 4 noisy 8x8 frames with one bright frame; class 1 when the bright frame
    comes after the first half. Also per-frame labels (1 = the bright frame)."""
    generator = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(n, 1, 4, 8, 8, generator=generator)
    where = torch.arange(n) % 4
    x[torch.arange(n), 0, where] += 1.0
    return x, (where >= 2).long(), F.one_hot(where, 4)


@pytest.mark.parametrize("per_element", [False, True])
def test_learns_where_the_bright_frame_is_through_the_engine(
    tmp_path: Path, per_element: bool
) -> None:
    torch.manual_seed(0)
    x, sequence_label, frame_label = _sequences(16)
    y = frame_label if per_element else sequence_label
    net = CNNGRU(2, 1, 2, per_element=per_element, **SMALL)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    task = Task(
        model=net,
        optimizer=optimizer,
        batches=lambda epoch: [(x, y)] * 40,
        loss=lambda batch: F.cross_entropy(net(batch[0]), batch[1]),
        validate=lambda use_bf16, rows: {},
        score=lambda row: -row["train_loss"],
        set_learning_rate=lambda step, fraction: None,
    )
    result = run_training(task, tmp_path / "run", epochs=2, use_bf16=False, progress=False)
    with torch.no_grad():
        accuracy = (net.eval()(x).argmax(1) == y).float().mean()
    assert accuracy == 1.0 and result.steps == 80


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_onnx_export_matches_torch(assert_onnx_matches, spatial_dims: int) -> None:
    net = CNNGRU(spatial_dims, 1, 3, **SMALL).eval()
    assert_onnx_matches(net, torch.randn(2, 1, 4, *([8] * spatial_dims)))
