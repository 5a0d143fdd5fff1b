"""Colour transforms for RGB pathology tiles: HED stain, jitter, grey, Sobel, the preset."""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import color

from medseg.transforms import (
    RandomColourJitter,
    RandomGrey,
    RandomHEDStain,
    RandomSobel,
    build_transform,
)
from medseg.transforms.colour import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    sobel_magnitude,
)


def rgb_batch(batch: int = 4, size: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 255


def label_batch(batch: int = 4, size: int = 12) -> torch.Tensor:
    return torch.randint(0, 3, (batch, 1, size, size), generator=torch.Generator().manual_seed(1))


# (class, options that change the image, options whose parameters are the identity)
CASES: list[tuple[type, dict[str, Any], dict[str, Any]]] = [
    (RandomHEDStain, {}, {"sigma_alpha": 0.0, "sigma_beta": 0.0}),
    (RandomColourJitter, {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1}, {}),
    (RandomGrey, {}, {"p": 0.0}),
    (RandomSobel, {}, {"mode": "blend", "blend": (0.0, 0.0)}),
]


@pytest.mark.parametrize(("cls", "changing", "identity"), CASES)
def test_identity_parameters_and_labels_untouched(cls, changing, identity) -> None:
    image, label = rgb_batch(), label_batch()
    same, same_label = cls(seed=0, **identity)(image, label)
    assert same.equal(image) and same_label.equal(label)
    out, out_label = cls(seed=0, **changing)(image, label)
    assert not out.equal(image)
    assert out_label.equal(label) and out.shape == image.shape and out.dtype == image.dtype
    assert out.min() >= 0 and out.max() <= 255
    again, _ = cls(seed=0, **changing)(image, label)
    assert again.equal(out)  # same seed, same result
    assert image.equal(rgb_batch())  # input not modified in place


@pytest.mark.parametrize(("cls", "changing", "identity"), CASES)
def test_wrong_channels_and_range_name_the_problem(cls, changing, identity) -> None:
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels.*got 1"):
        cls(**changing)(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*got \[0, 200\]"):
        cls(value_range=1.0, **changing)(
            torch.full((2, 3, 8, 8), 200.0).index_fill(2, torch.tensor([0]), 0.0)
        )
    with pytest.raises(ValueError, match=r"must lie in \[0, 255\]"):
        cls(**changing)(-rgb_batch())


def test_hed_stain_equals_skimage_deconvolution() -> None:
    image = rgb_batch(2, 6)
    alpha = torch.tensor([[1.04, 0.97, 1.01], [0.96, 1.02, 1.0]], dtype=torch.float64)
    beta = torch.tensor([[0.01, -0.02, 0.03], [-0.01, 0.0, 0.02]], dtype=torch.float64)
    out = RandomHEDStain().function(image / 255, {"alpha": alpha, "beta": beta}) * 255
    for b in range(2):
        rgb = image[b].permute(1, 2, 0).double().numpy() / 255
        density = np.log(np.maximum(rgb, 1e-6)) / np.log(1e-6)
        hed = density @ color.hed_from_rgb * alpha[b].numpy() + beta[b].numpy()
        expected = np.clip(color.combine_stains(hed, color.rgb_from_hed), 0, 1) * 255
        np.testing.assert_allclose(out[b].permute(1, 2, 0).numpy(), expected, atol=1e-3)


def test_jitter_functions_hand_values() -> None:
    x = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone()
    torch.testing.assert_close(adjust_brightness(x, torch.tensor([1.5])), (x * 1.5).clamp(0, 1))
    grey = 0.299 * 0.2 + 0.587 * 0.5 + 0.114 * 0.9
    torch.testing.assert_close(adjust_saturation(x, torch.tensor([0.0])), torch.full_like(x, grey))
    torch.testing.assert_close(adjust_contrast(x, torch.tensor([0.0])), torch.full_like(x, grey))
    torch.testing.assert_close(adjust_contrast(x, torch.tensor([0.5])), 0.5 * x + 0.5 * grey)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    green = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(adjust_hue(red, 1 / 3), green, atol=1e-6, rtol=0)


def test_hue_full_turn_is_identity_and_matches_colorsys() -> None:
    x = rgb_batch(2, 5) / 255
    torch.testing.assert_close(adjust_hue(x, 1.0), x, atol=1e-5, rtol=0)
    shifted = adjust_hue(x, torch.tensor([0.1, -0.3]))
    for b, shift in enumerate((0.1, -0.3)):
        pixels = x[b].reshape(3, -1).T.tolist()
        got = shifted[b].reshape(3, -1).T
        for i, (r, g, bl) in enumerate(pixels):
            h, s, v = colorsys.rgb_to_hsv(r, g, bl)
            expected = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
            np.testing.assert_allclose(got[i].tolist(), expected, atol=1e-5)


def test_jitter_zero_ranges_is_identity_and_options_checked() -> None:
    image = rgb_batch()
    out, _ = RandomColourJitter(brightness=0, contrast=0, saturation=0, hue=0)(image)
    assert out.equal(image)
    with pytest.raises(ValueError, match="hue range must lie in"):
        RandomColourJitter(hue=0.7)
    with pytest.raises(ValueError, match="brightness must be >= 0"):
        RandomColourJitter(brightness=-1)


def test_grey_equals_luma() -> None:
    image = rgb_batch(2, 4)
    out, _ = RandomGrey(p=1.0)(image)
    luma = 0.299 * image[:, 0] + 0.587 * image[:, 1] + 0.114 * image[:, 2]
    for c in range(3):
        torch.testing.assert_close(out[:, c], luma)


def test_sobel_step_edge_hand_values_and_scipy() -> None:
    step = torch.zeros(1, 1, 5, 6)
    step[..., 3:] = 1.0  # step between columns 2 and 3
    expected = torch.zeros(5, 6)
    expected[:, 2:4] = 4.0  # (x[i+1] - x[i-1]) = 1, smoothed by [1, 2, 1] -> 4
    torch.testing.assert_close(sobel_magnitude(step)[0, 0], expected)
    for shape in ((7, 9), (4, 5, 6)):
        field = np.random.default_rng(0).random(shape)
        reference = np.sqrt(sum(ndimage.sobel(field, axis=a) ** 2 for a in range(len(shape))))
        got = sobel_magnitude(torch.from_numpy(field)[None, None])[0, 0].numpy()
        np.testing.assert_allclose(got, reference, atol=1e-10)


def test_random_sobel_replace_and_blend() -> None:
    image = torch.zeros(1, 3, 5, 6)
    image[..., 3:] = 255.0
    out, _ = RandomSobel(mode="replace")(image)
    expected = torch.zeros_like(image)
    expected[..., 2:4] = 255.0  # step of full height -> full edge value
    torch.testing.assert_close(out, expected)
    blended, _ = RandomSobel(mode="blend", blend=(0.25, 0.25))(image)
    torch.testing.assert_close(blended, 0.25 * expected + 0.75 * image)


def test_channels_option_leaves_other_channels() -> None:
    image = torch.cat([rgb_batch(), torch.randn(4, 1, 12, 12)], dim=1)  # + a mask channel
    out, _ = RandomHEDStain(channels=(0, 1, 2), sigma_alpha=0.2, seed=0)(image)
    assert out[:, 3].equal(image[:, 3]) and not out[:, :3].equal(image[:, :3])


def test_pathology_preset_keeps_labels_and_range() -> None:
    image, label = rgb_batch(8, 16), label_batch(8, 16)
    pipeline = build_transform(
        "pathology", spatial_dims=2, mirror_axes=None, p_elastic=0.0, p=1.0, seed=0
    )
    out, out_label = pipeline(image, label)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 255.5
    assert set(out_label.unique().tolist()) <= set(label.unique().tolist())
    names = [type(t).__name__ for t in pipeline.transforms]
    assert names[:3] == ["RandomHEDStain", "RandomColourJitter", "RandomGrey"]
    assert "RandomFlip" in names and "RandomRot90" in names
