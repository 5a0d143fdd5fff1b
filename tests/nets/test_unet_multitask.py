"""U-Net + bottleneck classifier: both outputs in 2D/3D, deep supervision, the multitask loss
against its two terms computed apart, ONNX (both outputs), and a phantom whose masks and
classes are both learnt through the training engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.losses import DiceCELoss, build_loss
from medseg.losses.multitask import MultitaskLoss
from medseg.nets import build_network, network_task
from medseg.nets.unet_multitask import MultitaskOutput, UNetMultitask, split_outputs
from medseg.training.engine import Task, run_training

SMALL = {"features": (4, 8, 16), "head_hidden": (8,)}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_both_outputs_have_their_shapes(spatial_dims: int) -> None:
    net = build_network(
        "unet_multitask",
        spatial_dims=spatial_dims,
        in_channels=2,
        out_channels=3,
        num_classes=4,
        **SMALL,
    )
    out = net(torch.randn(2, 2, *([16] * spatial_dims)))
    assert isinstance(out, MultitaskOutput) and network_task("unet_multitask") == "segmentation"
    assert out.segmentation.shape == (2, 3, *([16] * spatial_dims))
    assert out.classification.shape == (2, 4)
    seg, cls = split_outputs(out)
    assert seg is out.segmentation and cls is out.classification
    plain = torch.zeros(1)
    assert split_outputs(plain) == (plain, None)


def test_deep_supervision_and_divisibility() -> None:
    net = UNetMultitask(2, 1, 2, deep_supervision=True, **SMALL)
    out = net.train()(torch.randn(2, 1, 16, 16))
    assert [o.shape[-1] for o in out.segmentation] == [16, 8]
    assert net.eval()(torch.randn(1, 1, 16, 16)).segmentation.shape == (1, 2, 16, 16)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 1, 15, 16))


def test_multitask_loss_is_the_weighted_sum_of_its_terms() -> None:
    torch.manual_seed(0)
    out = MultitaskOutput(torch.randn(2, 3, 8, 8), torch.randn(2, 4))
    seg_target = torch.randint(0, 3, (2, 1, 8, 8))
    cls_target = torch.tensor([1, 3])
    loss = build_loss("multitask", weights=[0.7, 0.2])
    expected = 0.7 * DiceCELoss()(out.segmentation, seg_target) + 0.2 * F.cross_entropy(
        out.classification, cls_target
    )
    torch.testing.assert_close(loss(out, (seg_target, cls_target)), expected)
    assert set(loss.last_terms) == {"seg_loss", "cls_loss"}
    custom = MultitaskLoss(torch.nn.CrossEntropyLoss(), "classification_ce", (1.0, 0.0))
    torch.testing.assert_close(
        custom(out, (seg_target[:, 0], cls_target)),
        F.cross_entropy(out.segmentation, seg_target[:, 0]),
    )
    for weights in [(1.0,), (-1.0, 1.0), (0.0, 0.0)]:
        with pytest.raises(ConfigError, match="multitask weights"):
            MultitaskLoss(weights=weights)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_onnx_exports_both_outputs(spatial_dims: int) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import io
    import warnings

    net = UNetMultitask(spatial_dims, 1, 2, num_classes=3, **SMALL).eval()
    x = torch.randn(1, 1, *([16] * spatial_dims))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buffer, dynamo=False, opset_version=17)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    seg, cls = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = net(x)
    torch.testing.assert_close(torch.from_numpy(seg), expected.segmentation, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.from_numpy(cls), expected.classification, atol=1e-4, rtol=0)


def _phantoms() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four 16x16 images: a disc (class 0) or a square (class 1), at two positions."""
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    masks, classes = [], []
    for cy, cx in [(5, 5), (10, 9)]:
        masks.append((yy - cy) ** 2 + (xx - cx) ** 2 <= 9)
        masks.append(((yy - cy).abs() <= 3) & ((xx - cx).abs() <= 3))
        classes += [0, 1]
    label = torch.stack(masks)[:, None].long()
    noise = 0.1 * torch.randn(label.shape, generator=torch.Generator().manual_seed(0))
    return label.float() + noise, label, torch.tensor(classes)


def test_joint_model_learns_masks_and_classes_through_the_engine(tmp_path: Path) -> None:
    torch.manual_seed(0)
    image, label, classes = _phantoms()
    net = UNetMultitask(2, 1, 2, num_classes=2, norm="batch", **SMALL)
    loss_fn = MultitaskLoss(weights=(1.0, 1.0))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    task = Task(
        model=net,
        optimizer=optimizer,
        batches=lambda epoch: [(image, (label, classes))] * 50,
        loss=lambda batch: loss_fn(net(batch[0]), batch[1]),
        validate=lambda use_bf16, rows: {},
        score=lambda row: -row["train_loss"],
        set_learning_rate=lambda step, fraction: None,
    )
    result = run_training(task, tmp_path / "run", epochs=2, use_bf16=False, progress=False)
    with torch.no_grad():
        out = net.eval()(image)
    pred = out.segmentation.argmax(1, keepdim=True)
    dice = 2 * ((pred == 1) & (label == 1)).sum() / ((pred == 1).sum() + (label == 1).sum())
    assert dice > 0.9
    assert torch.equal(out.classification.argmax(1), classes)
    assert result.steps == 100
