"""Every network exports to ONNX and onnxruntime reproduces the torch output (1e-4)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

NAMES = [
    "unet",
    "residual_unet",
    "attention_unet",
    "unet_plusplus",
    "dilated_unet",
    "fcn",
    "segnet",
    "multiscale_unet",
    "vae_unet",
]


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_matches_torch(small_network, name: str, spatial_dims: int) -> None:
    net = small_network(name, spatial_dims, in_channels=2, out_channels=3).eval()
    x = torch.randn(1, 2, *([16] * spatial_dims))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy (TorchScript) exporter deprecation notices
        torch.onnx.export(net, (x,), buffer, dynamo=False, opset_version=17)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)
