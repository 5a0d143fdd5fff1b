"""Every network exports to ONNX and onnxruntime reproduces the torch output (1e-4)."""

from __future__ import annotations

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
    "transunet",
    "swin_unet",
    "unetr",
    "highres3dnet",
]


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_matches_torch(
    small_network, assert_onnx_matches, name: str, spatial_dims: int
) -> None:
    net = small_network(name, spatial_dims, in_channels=2, out_channels=3).eval()
    assert_onnx_matches(net, torch.randn(1, 2, *([16] * spatial_dims)))
