"""Tiny configurations of every registered network, so tests run in milliseconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from medseg.nets import build_network

SMALL: dict[str, dict[str, Any]] = {
    "unet": {"features": (4, 8, 16)},
    "residual_unet": {"features": (4, 8, 16)},
    "attention_unet": {"features": (4, 8, 16)},
    "unet_plusplus": {"features": (4, 8, 16)},
    "dilated_unet": {"features": (4, 8, 16, 16)},
    "fcn": {"channels": (4, 8, 16, 8)},
    "segnet": {"features": (4, 8, 16)},
    "multiscale_unet": {"features": (4, 8, 16)},
    "vae_unet": {"features": (4, 8, 16), "blocks_per_stage": 1},
    "transunet": {"image_size": 16},
    "swin_unet": {},
    "unetr": {"image_size": 16},
    "highres3dnet": {"channels": (4, 8, 8), "head_channels": 8},
}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from threads, and under ``pytest -n 2`` or a busy machine
    OpenMP threads only wait for each other: run each test on one thread, then restore."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_network() -> Callable[..., nn.Module]:
    """``small_network(name, spatial_dims, in_channels=1, out_channels=2, **overrides)``."""

    def build(
        name: str, spatial_dims: int, in_channels: int = 1, out_channels: int = 2, **overrides: Any
    ) -> nn.Module:
        torch.manual_seed(0)
        config = {**SMALL[name], **overrides}
        return build_network(
            name,
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            **config,
        )

    return build


@pytest.fixture
def assert_onnx_matches() -> Callable[[nn.Module, torch.Tensor], None]:
    """``assert_onnx_matches(net, x)``: export ``net`` (legacy exporter, opset 17), run it in
    onnxruntime on ``x`` and compare with torch to 1e-4 (skips without onnx/onnxruntime)."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    def check(net: nn.Module, x: torch.Tensor) -> None:
        import io
        import warnings

        import numpy as np

        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy (TorchScript) exporter deprecation notices
            torch.onnx.export(net, (x,), buffer, dynamo=False, opset_version=17)
        session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            expected = net(x).numpy()
        np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)

    return check
