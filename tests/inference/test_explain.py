"""Grad-CAM and saliency: localisation on a trained phantom classifier, exact small cases,
a hand-written reference, hooks and modes left as found, errors, and the overlay PNG."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from scipy import ndimage
from torch import nn

from medseg.errors import ConfigError, GeometryError, OverwriteError
from medseg.inference.explain import (
    find_cam_layer,
    grad_cam,
    mass_inside,
    peak_slice,
    saliency,
    save_overlay,
)

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


class TinyCNN(nn.Module):
    """``backbone`` (conv stack, one stride-2 step) then ``head`` (global average pool + linear)."""

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        classes: int = 2,
        *,
        norm: bool = False,
        width: int = 8,
    ) -> None:
        super().__init__()
        conv = CONV[spatial_dims]
        bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial_dims]

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [
                conv(cin, cout, 3, stride=stride, padding=1),
                bn(cout) if norm else nn.Identity(),
                nn.ReLU(),
            ]

        self.backbone = nn.Sequential(
            *block(in_channels, width, 1),
            *block(width, 2 * width, 2),
            *block(2 * width, 2 * width, 1),
        )
        self.head = nn.Sequential(
            POOL[spatial_dims](1), nn.Flatten(), nn.Linear(2 * width, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def no_hooks_left(model: nn.Module) -> bool:
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return all(not getattr(m, kind) for m in model.modules() for kind in kinds)


# ----------------------------------------------------- localisation on a trained phantom classifier

SIZE = 48
SQUARE = 4
REGION = (6, 22)  # class 1: a bright 4x4 square somewhere in rows and columns [6, 22)
BAR_ROWS = (
    30,
    44,
)  # every image: a bright 2x16 bar somewhere in these rows (does not depend on the class)


def phantoms(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images (n, 1, 48, 48), labels (n,), square masks (n, 48, 48))``, alternating labels
    0, 1."""
    images = 0.5 * torch.randn(n, 1, SIZE, SIZE, generator=generator)
    labels = torch.arange(n) % 2
    squares = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=generator))

    for i in range(n):
        r, c = draw(*BAR_ROWS), draw(4, SIZE - 20)
        images[i, 0, r : r + 2, c : c + 16] += 2.0
        if labels[i]:
            r, c = draw(REGION[0], REGION[1] - SQUARE + 1), draw(REGION[0], REGION[1] - SQUARE + 1)
            images[i, 0, r : r + SQUARE, c : c + SQUARE] += 2.0
            squares[i, r : r + SQUARE, c : c + SQUARE] = True
    return images, labels, squares


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny BatchNorm CNN trained 400 steps (about 5 s on one CPU thread) on the phantoms.

    Returns the model (eval mode), the held-out class-1 images and their square masks; the
    held-out accuracy is checked here (it was 1.0 when written).
    """
    threads = torch.get_num_threads()  # module scope: set up before conftest's one-thread fixture
    torch.set_num_threads(1)
    try:
        return _train_phantom_classifier()
    finally:
        torch.set_num_threads(threads)


def _train_phantom_classifier() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train_x, train_y, _ = phantoms(512, generator)
    test_x, test_y, test_squares = phantoms(128, generator)
    model = TinyCNN(2, norm=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(400):
        batch = torch.randint(0, len(train_x), (32,), generator=generator)
        loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(test_x).argmax(1) == test_y).float().mean())
    assert accuracy > 0.9
    model.zero_grad(set_to_none=True)
    positive = test_y == 1
    return model, test_x[positive], test_squares[positive]


def region_mask(dilation: int) -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[
        REGION[0] - dilation : REGION[1] + dilation, REGION[0] - dilation : REGION[1] + dilation
    ] = True
    return mask


def shares(heatmaps: torch.Tensor, masks: torch.Tensor | list[torch.Tensor]) -> np.ndarray:
    return np.array([mass_inside(h, m) for h, m in zip(heatmaps, masks, strict=True)])


def dilated(squares: torch.Tensor, pixels: int = 2) -> list[torch.Tensor]:
    square = np.ones((3, 3), bool)
    return [
        torch.from_numpy(ndimage.binary_dilation(s.numpy(), square, iterations=pixels))
        for s in squares
    ]


def test_grad_cam_puts_most_mass_on_the_region_that_decides_the_class(trained) -> None:
    model, images, squares = trained
    cams = grad_cam(model, images, target=1)
    region = region_mask(2)  # 20 x 20 of 48 x 48
    area = float(region.float().mean())  # 0.174
    in_region = shares(cams, [region] * len(cams))
    # measured (torch 2.13 CPU, 64 held-out class-1 images): mean 0.86, worst image 0.72
    assert in_region.mean() > 0.75 and in_region.min() > 0.5
    assert in_region.mean() > 4 * area
    in_square = shares(
        cams, dilated(squares)
    )  # the square itself, dilated by 2: 8 x 8 = 0.028 of the image
    # measured: mean 0.60 (21 x the area), worst image 0.52
    assert in_square.mean() > 0.4
    bar = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    bar[BAR_ROWS[0] - 2 : BAR_ROWS[1] + 4] = True  # where the distractor can be (0.42 of the image)
    # measured: mean 0.10
    assert shares(cams, [bar] * len(cams)).mean() < 0.2


def test_saliency_and_smoothgrad_concentrate_on_the_deciding_square(trained) -> None:
    model, images, squares = trained
    masks = dilated(squares)
    area = float(masks[0].float().mean())  # 0.028
    plain = shares(saliency(model, images, target=1), masks)
    smooth = shares(
        saliency(
            model,
            images,
            target=1,
            smooth_samples=8,
            noise=0.1,
            generator=torch.Generator().manual_seed(0),
        ),
        masks,
    )
    # measured: plain mean 0.17 (6 x the area), SmoothGrad 0.15 (input gradients are noisy
    # everywhere)
    assert plain.mean() > 3 * area
    assert smooth.mean() > 3 * area
    in_region = shares(saliency(model, images, target=1), [region_mask(2)] * len(images))
    # measured: mean 0.31 against an area of 0.17
    assert in_region.mean() > 1.4 * float(region_mask(2).float().mean())


# ---------------------------------------------------------------- exact values


def reference_grad_cam(model: TinyCNN, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Grad-CAM written out on the backbone/head split, without hooks."""
    model.eval()
    features = model.backbone(x).detach().requires_grad_(True)
    scores = model.head(features)[torch.arange(len(x)), target].sum()
    (grads,) = torch.autograd.grad(scores, features)
    cam = F.relu(
        (grads.mean(dim=tuple(range(2, x.ndim)), keepdim=True) * features).sum(1, keepdim=True)
    )
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[x.ndim - 2]
    cam = F.interpolate(cam, size=x.shape[2:], mode=mode, align_corners=False)[:, 0].detach()
    top = cam.flatten(1).amax(1).reshape(-1, *[1] * (x.ndim - 2))
    return torch.where(top > 0, cam / top.clamp_min(1e-30), 0.0)


@pytest.mark.parametrize(
    "shape", [(3, 2, 20), (3, 2, 16, 13), (2, 1, 8, 12, 10)], ids=["1d", "2d", "3d"]
)
def test_grad_cam_matches_the_written_out_reference(shape: tuple[int, ...]) -> None:
    torch.manual_seed(1)
    model = TinyCNN(len(shape) - 2, in_channels=shape[1], classes=3, width=4)
    x = torch.randn(shape)
    target = torch.arange(shape[0]) % 3
    cam = grad_cam(model, x, target=target)
    assert cam.shape == (shape[0], *shape[2:])
    assert torch.allclose(cam, reference_grad_cam(model, x, target), atol=1e-6)
    assert float(cam.min()) >= 0 and float(cam.max()) <= 1
    assert find_cam_layer(model, x) == "backbone"


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (2, 2, 6, 10, 8)], ids=["2d", "3d"])
def test_shapes_and_range(shape: tuple[int, ...]) -> None:
    torch.manual_seed(2)
    model = TinyCNN(len(shape) - 2, in_channels=shape[1], classes=2, norm=True, width=4)
    x = torch.randn(shape)
    for heat in (grad_cam(model, x), saliency(model, x), saliency(model, x, smooth_samples=2)):
        assert heat.shape == (shape[0], *shape[2:]) and heat.dtype == torch.float32
        assert float(heat.min()) >= 0
        maxima = heat.flatten(1).amax(1)
        assert torch.all((maxima == 0) | torch.isclose(maxima, torch.tensor(1.0)))


def unit_cam_model() -> nn.Module:
    """cam for class 1 is ReLU(x) (weights +1/HW), for class 0 it is ReLU(-x) (weights -1/HW)."""
    conv = nn.Conv2d(1, 1, 1)
    linear = nn.Linear(1, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
        linear.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        linear.bias.zero_()
    return nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)


def test_grad_cam_of_a_unit_model_is_the_rectified_image_and_an_empty_map_stays_zero() -> None:
    x = torch.rand(1, 1, 5, 7) + 0.1  # positive: the class-0 map is all zero
    model = unit_cam_model()
    assert torch.allclose(grad_cam(model, x, target=1)[0], x[0, 0] / x.max(), atol=1e-6)
    zero = grad_cam(model, x, target=0)
    assert torch.equal(zero, torch.zeros_like(zero))
    assert math.isnan(mass_inside(zero[0], torch.ones(5, 7, dtype=torch.bool)))
    assert grad_cam(model, x).equal(
        grad_cam(model, x, target=1)
    )  # None = the predicted class (1 here)


def test_saliency_of_a_linear_model_is_its_weights_and_smoothgrad_changes_nothing() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(2 * 4 * 5, 3)
    )  # no convolution: saliency still works
    x = torch.randn(2, 2, 4, 5)
    expected = model[1].weight[2].detach().abs().reshape(2, 4, 5).amax(0)
    expected = expected / expected.max()
    plain = saliency(model, x, target=2)
    assert torch.allclose(plain, expected.expand(2, 4, 5), atol=1e-6)
    smooth = saliency(
        model, x, target=2, smooth_samples=3, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(smooth, plain, atol=1e-6)


def test_per_image_targets_match_separate_calls_and_regression_outputs_are_selected() -> None:
    torch.manual_seed(4)
    model = TinyCNN(
        2, classes=4, norm=True, width=4
    )  # 4 outputs: class logits or regression targets alike
    x = torch.randn(1, 1, 12, 12).expand(3, 1, 12, 12)
    both = grad_cam(model, x, target=torch.tensor([0, 2, 3]))
    for i, t in enumerate([0, 2, 3]):
        assert torch.allclose(both[i], grad_cam(model, x[:1], target=t)[0], atol=1e-6)
    assert torch.allclose(
        saliency(model, x, target=[0, 2, 3])[1], saliency(model, x[:1], target=2)[0], atol=1e-6
    )
    scalar = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 1),
        nn.Flatten(0),
    )  # (B,) output: one regression target
    assert grad_cam(scalar, x, target=0).shape == (3, 12, 12)


# ---------------------------------------------------------------- hooks, modes, gradients


def test_hooks_removed_modes_restored_and_no_parameter_grads() -> None:
    torch.manual_seed(5)
    model = TinyCNN(2, norm=True, width=4)
    model.head.append(nn.Dropout(0.5))
    model.train()
    model.backbone[1].eval()  # a mixed state must come back as it was
    x = torch.randn(2, 1, 12, 12)
    first = grad_cam(model, x)
    assert torch.equal(
        first, grad_cam(model, x)
    )  # eval mode inside: no dropout, running BN statistics
    saliency(model, x, smooth_samples=2)
    assert model.training and model.head.training and not model.backbone[1].training
    assert no_hooks_left(model)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ConfigError):
        grad_cam(model, x, layer="head.1")  # fails after the forward pass: hooks must still go
    assert no_hooks_left(model) and model.training


def test_works_under_no_grad_with_frozen_parameters_and_in_place_relu() -> None:
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    model.requires_grad_(False)
    x = torch.randn(2, 1, 10, 10)
    reference = grad_cam(model, x)
    with torch.no_grad():
        assert torch.equal(grad_cam(model, x), reference)
        assert saliency(model, x).shape == (2, 10, 10)
    assert find_cam_layer(model, x) == "3"  # the last activation before the pooling
    assert torch.equal(grad_cam(model, x, layer="2"), reference)  # in place: the same tensor
    with torch.inference_mode(), pytest.raises(ConfigError, match="inference_mode"):
        grad_cam(model, x)


def test_explicit_layer_by_name_or_module() -> None:
    torch.manual_seed(7)
    model = TinyCNN(2, classes=3, width=4)
    x = torch.randn(2, 1, 16, 16)
    auto = grad_cam(model, x, target=1)
    assert torch.equal(grad_cam(model, x, target=1, layer="backbone"), auto)
    assert torch.equal(grad_cam(model, x, target=1, layer=model.backbone[8]), auto)  # its last ReLU
    early = grad_cam(model, x, target=1, layer="backbone.2")  # full resolution, before the stride
    assert early.shape == auto.shape and not torch.allclose(early, auto)


# ---------------------------------------------------------------- errors


class PatchTransformer(nn.Module):
    """A ViT in miniature: 4x4 patches, one attention layer, mean token, linear head."""

    def __init__(self, conv_patches: bool) -> None:
        super().__init__()
        self.conv_patches = conv_patches
        self.embed = nn.Conv2d(1, 8, 4, stride=4) if conv_patches else nn.Linear(16, 8)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv_patches:
            tokens = self.embed(x).flatten(2).transpose(1, 2)
        else:
            tokens = self.embed(F.unfold(x, 4, stride=4).transpose(1, 2))
        tokens = tokens + self.attention(tokens, tokens, tokens)[0]
        return self.head(tokens.mean(1))


@pytest.mark.parametrize("conv_patches", [False, True], ids=["linear-patches", "conv-patches"])
def test_transformers_are_refused_by_grad_cam_and_explained_by_saliency(conv_patches: bool) -> None:
    torch.manual_seed(8)
    model = PatchTransformer(conv_patches)
    x = torch.randn(2, 1, 16, 16)
    with pytest.raises(ConfigError, match="saliency"):
        grad_cam(model, x)
    assert no_hooks_left(model)
    assert saliency(model, x).shape == (2, 16, 16)
    if conv_patches:  # asked for explicitly, the patch embedding can be explained
        assert grad_cam(model, x, layer="embed").shape == (2, 16, 16)


class AttentionPool(nn.Module):
    """Attention pooling of a CNN feature map (as CLIP's ResNet or attention-MIL): not a
    transformer."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(channels, 1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)
        query = tokens.mean(1, keepdim=True)
        return self.attention(query, tokens, tokens)[0][:, 0]


def test_a_cnn_with_attention_pooling_is_explained_on_its_feature_map() -> None:
    torch.manual_seed(10)
    model = TinyCNN(2, width=4)
    model.head = nn.Sequential(AttentionPool(8), nn.Linear(8, 2))
    x = torch.randn(2, 1, 12, 12)
    assert find_cam_layer(model, x) == "backbone"
    assert grad_cam(model, x).shape == (2, 12, 12)


def test_adaptive_pooling_to_a_fixed_size_belongs_to_the_head() -> None:
    model = TinyCNN(2, width=4)
    model.head = nn.Sequential(
        nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(8 * 9, 2)
    )  # as VGG's 7 x 7
    x = torch.randn(2, 1, 20, 20)
    assert find_cam_layer(model, x) == "backbone"
    assert torch.equal(grad_cam(model, x), grad_cam(model, x, layer="backbone"))


def test_unknown_layer_lists_valid_names() -> None:
    model = TinyCNN(2, width=4)
    with pytest.raises(ConfigError, match=r"'backbone\.layer4'.*'backbone'.*'head'"):
        grad_cam(model, torch.randn(1, 1, 8, 8), layer="backbone.layer4")
    with pytest.raises(ConfigError, match="did you mean 'backbone.2'"):
        grad_cam(model, torch.randn(1, 1, 8, 8), layer="backbone.2x")
    with pytest.raises(ConfigError, match="not a submodule"):
        grad_cam(model, torch.randn(1, 1, 8, 8), layer=nn.Conv2d(1, 1, 1))


@pytest.mark.parametrize(
    "shape, match",
    [
        ((8, 8), "(B, C, \\*spatial)"),
        ((1, 1, 1, 2, 2, 2), "(B, C, \\*spatial)"),
        ((0, 1, 8, 8), "B, C >= 1"),
        ((2, 8, 8), "2D convolutions"),
        ((1, 1, 4, 8, 8), "2D convolutions"),
    ],
)
def test_images_must_be_batch_channel_spatial(shape: tuple[int, ...], match: str) -> None:
    model = TinyCNN(2, width=4)
    for explain in (grad_cam, saliency):
        with pytest.raises(ConfigError, match=match):
            explain(model, torch.zeros(shape))


def test_bad_targets_and_outputs() -> None:
    model = TinyCNN(2, classes=3, width=4)
    x = torch.randn(2, 1, 8, 8)
    for target in (3, -1, [0, 1, 2], torch.tensor([0.5, 1.0])):
        with pytest.raises(ConfigError, match="target"):
            grad_cam(model, x, target=target)
    with pytest.raises(ConfigError, match="target"):
        saliency(model, x, target=5, smooth_samples=2)
    segmenter = nn.Conv2d(1, 3, 3, padding=1)  # (B, K, H, W): not a classifier
    with pytest.raises(ConfigError, match=r"\(B, K\)"):
        saliency(segmenter, x)
    with pytest.raises(ConfigError, match="smooth_samples"):
        saliency(model, x, smooth_samples=-1)


# ---------------------------------------------------------------- mass, slices, overlay


def test_mass_inside() -> None:
    heat = np.array([[3.0, 1.0], [0.0, 0.0]])
    assert mass_inside(heat, np.array([[True, False], [False, False]])) == 0.75
    assert mass_inside(torch.ones(4, 5), torch.arange(20).reshape(4, 5) < 5) == pytest.approx(
        0.25
    )  # area share
    assert math.isnan(mass_inside(np.zeros((2, 2)), np.ones((2, 2), bool)))
    with pytest.raises(ValueError, match="differ in shape"):
        mass_inside(heat, np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="non-negative"):
        mass_inside(-heat, np.ones((2, 2), bool))


def test_peak_slice() -> None:
    heat = np.zeros((5, 3, 3))
    heat[3, 1, 1] = 1.0
    heat[1] = 0.05  # more voxels, less mass
    assert peak_slice(heat) == 3
    assert peak_slice(np.zeros((5, 3, 3))) == 2
    assert peak_slice(heat[0]) is None


@pytest.mark.parametrize("spatial", [(20, 24), (6, 20, 24)], ids=["2d", "3d"])
def test_overlay_png_is_written_atomically_and_not_overwritten(
    tmp_path, spatial: tuple[int, ...]
) -> None:
    torch.manual_seed(9)
    image = torch.randn(2, *spatial)  # (C, *spatial): the first channel is shown
    heat = torch.rand(spatial)
    path = tmp_path / "out" / "cam.png"
    assert save_overlay(image, heat, path, title="case 1") == path
    with PILImage.open(path) as picture:
        assert picture.format == "PNG" and picture.size[0] > 100
    before = path.read_bytes()
    with pytest.raises(OverwriteError, match=str(path)):
        save_overlay(image[0], heat, path)
    assert path.read_bytes() == before
    save_overlay(
        image[0].numpy(), heat.numpy() * 0, path, overwrite=True
    )  # numpy and an all-zero map work too
    assert path.read_bytes() != before
    assert [p.name for p in path.parent.iterdir()] == ["cam.png"]  # no temporary file left
    with pytest.raises(GeometryError):
        save_overlay(image, heat[..., :-1], tmp_path / "bad.png")
    with pytest.raises(ConfigError, match="2D or 3D"):
        save_overlay(torch.rand(10), torch.rand(10), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
