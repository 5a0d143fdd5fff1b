"""Explaining a segmentation: maps in the input geometry, label names checked, Grad-CAM mass in
the predicted region of a network whose answer is known."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.inference.explain import mass_inside
from medseg.inference.explain_segmentation import (
    explain_prediction,
    explain_segmentation,
    segmentation_cam_layer,
)
from medseg.io import Image, read_image
from medseg.nets.unet import UNet

from .conftest import make_plan


class BrightIsOrgan(nn.Module):
    """A hand-set segmentation network: features ``relu(x)`` and ``relu(-x)``; the organ logit is
    ``2 relu(x)``, the background's ``2 relu(-x)``, the lesion's -10. It predicts organ exactly
    where the normalised image is positive, and only those voxels feed the organ logit."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv3d(1, 2, 3, padding=1, bias=False)
        head = nn.Conv3d(2, 3, 1)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1, 1] = 1.0
            conv.weight[1, 0, 1, 1, 1] = -1.0
            head.weight.zero_()
            head.weight[0, 1] = 2.0
            head.weight[1, 0] = 2.0
            head.bias.copy_(torch.tensor([0.0, 0.0, -10.0]))
        self.features = nn.Sequential(conv, nn.ReLU())
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _bright_cube_image() -> tuple[Image, np.ndarray]:
    array = np.ones((8, 16, 16), np.float32)
    cube = np.zeros(array.shape, bool)
    cube[2:6, 4:10, 6:12] = True
    array[cube] = 5.0
    return Image(array, (1.0, 1.0, 1.0), (3.0, -2.0, 7.0)), cube


def test_gradcam_and_saliency_mass_lies_in_the_known_region() -> None:
    image, cube = _bright_cube_image()
    result = explain_prediction(BrightIsOrgan(), make_plan(), image, 1, mirror=False, device="cpu")
    assert result.layer == "features"
    np.testing.assert_array_equal(result.region.array, cube)
    assert mass_inside(result.gradcam.array, cube) > 0.99
    assert mass_inside(result.saliency.array, cube) > 0.99
    assert result.gradcam.same_grid(image) and not result.whole_image


def test_empty_prediction_explains_the_whole_image_with_a_warning() -> None:
    image, _ = _bright_cube_image()
    with pytest.warns(UserWarning, match="whole image"):
        result = explain_prediction(
            BrightIsOrgan(), make_plan(), image, 2, mirror=False, device="cpu"
        )
    assert result.whole_image and not result.region.array.any()


def test_default_layer_of_a_unet_is_its_full_resolution_decoder_stage() -> None:
    strides = [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    net = UNet(3, 1, 3, features=[4, 8, 16], strides=strides, deep_supervision=True).eval()
    x = torch.zeros(1, 1, 8, 8, 8)
    name = segmentation_cam_layer(net, x)
    assert name == "decoder.stages.1"  # the decoder runs deepest first: the last stage is finest
    with torch.no_grad():
        full_resolution = net.decoder(net.encoder(x))[0]
    assert full_resolution.shape == (1, 4, 8, 8, 8)  # what that stage returns


def test_explain_command_writes_maps_in_input_geometry(
    phantom_results: dict[str, Path], tmp_path: Path
) -> None:
    image_path = sorted(phantom_results["images"].iterdir())[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained model may predict nothing
        written = explain_segmentation(
            phantom_results["results"],
            image_path,
            tmp_path / "out",
            label="organ",
            configuration="3d_fullres",
            fold=0,
            mirror=False,
            device="cpu",
        )
    case = image_path.name.removesuffix("_0000.nii.gz")
    assert [p.name for p in written] == [
        f"{case}_gradcam_organ.nii.gz",
        f"{case}_saliency_organ.nii.gz",
        f"{case}_gradcam_organ.png",
        f"{case}_saliency_organ.png",
    ]
    source = read_image(image_path)
    for path in written[:2]:
        heat = read_image(path)
        assert heat.same_grid(source)
        assert 0.0 <= heat.array.min() and heat.array.max() <= 1.0
    assert all(p.stat().st_size > 0 for p in written[2:])


def test_unknown_label_name_lists_the_plan_labels(
    phantom_results: dict[str, Path], tmp_path: Path
) -> None:
    image_path = sorted(phantom_results["images"].iterdir())[0]
    with pytest.raises(
        ConfigError, match="'liver' is not a foreground label.*organ, lesion, vessel"
    ):
        explain_segmentation(
            phantom_results["results"],
            image_path,
            tmp_path / "out",
            label="liver",
            configuration="3d_fullres",
            fold=0,
        )
