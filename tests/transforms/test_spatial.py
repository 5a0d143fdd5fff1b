"""Spatial transforms: one grid keeps image and label aligned; flips and quarter turns are exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.transforms import (
    CropOrPad,
    RandomCropResize,
    RandomFlip,
    RandomRot90,
    RandomSpatial,
)
from medseg.transforms.grid import centre_start, crop_or_pad, resample, sampling_grid

SHAPES = {2: (30, 36), 3: (14, 16, 18)}
EVERYTHING = dict(
    p_rotation=1.0,
    p_scale=1.0,
    p_shear=1.0,
    p_translation=1.0,
    p_elastic=1.0,
    translation_vox=(-3.0, 3.0),
)


def blocks(shape: tuple[int, ...], *, size: int = 4, classes: int = 5) -> torch.Tensor:
    """A labelled grid: blocks of ``size`` voxels with values 0..classes-1."""
    idx = torch.meshgrid(*[torch.arange(n) // size for n in shape], indexing="ij")
    return sum(i * (d + 3) for d, i in enumerate(idx)) % classes


def batch(dims: int, b: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    label = blocks(SHAPES[dims])[None, None].repeat(b, 1, *[1] * dims)
    image = label.float() * 10 + torch.randn(
        label.shape, generator=torch.Generator().manual_seed(0)
    )
    return image, label


@pytest.mark.parametrize("dims", [2, 3])
def test_combined_grid_moves_one_hot_image_exactly_like_linear_label(dims: int) -> None:
    label = blocks(SHAPES[dims])[None, None].repeat(2, 1, *[1] * dims)
    onehot = torch.cat([(label == k).float() for k in range(5)], dim=1)
    t = RandomSpatial(**EVERYTHING, label_mode="linear", seed=3)
    image_out, label_out = t(onehot, label)
    inside = image_out.sum(1, keepdim=True) > 1 - 1e-5
    assert inside.float().mean() > 0.5
    assert torch.equal(image_out.argmax(1, keepdim=True)[inside], label_out[inside])
    assert not torch.equal(label_out, label)


@pytest.mark.parametrize("dims", [2, 3])
def test_nearest_label_follows_the_affine_computed_independently(dims: int) -> None:
    image, label = batch(dims, b=2)
    t = RandomSpatial(p_rotation=1.0, p_scale=1.0, p_shear=1.0, p_translation=1.0, seed=5)
    params = t.sample_parameters(2, dims, torch.Generator().manual_seed(11))
    _, label_out = t(image, label, generator=torch.Generator().manual_seed(11))
    shape = np.array(SHAPES[dims])
    centre = (shape - 1) / 2
    out_idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(
        -1, dims
    )
    for b in range(2):
        rot = np.eye(dims)
        planes = [(i, j) for i in range(dims) for j in range(i + 1, dims)]
        for p, (i, j) in enumerate(planes):
            r = np.eye(dims)
            c, s = math.cos(params["angles"][b, p]), math.sin(params["angles"][b, p])
            r[i, i], r[j, j], r[i, j], r[j, i] = c, c, -s, s
            rot = rot @ r
        shear = np.eye(dims) + params["shear"][b].numpy() * (1 - np.eye(dims))
        content = rot * params["scale"][b].numpy()[None, :] @ shear
        src = (
            np.linalg.inv(content) @ (out_idx - centre - params["translation"][b].numpy()).T
        ).T + centre
        near = np.floor(src + 0.5).astype(int)
        valid = np.all((near >= 0) & (near < shape), axis=1)
        ties = np.any(
            np.abs(src - np.round(src) - 0.5 * np.sign(src - np.round(src))) < 1e-3, axis=1
        )
        expected = np.zeros(len(out_idx), dtype=np.int64)
        expected[valid] = label[b, 0].numpy()[tuple(near[valid].T)]
        got = label_out[b, 0].numpy().reshape(-1)
        assert np.mean((expected != got) & ~ties) < 1e-3


@pytest.mark.parametrize("dims", [2, 3])
def test_rotation_by_90_degrees_matches_rot90(dims: int) -> None:
    shape = (6, 6) if dims == 2 else (4, 6, 6)
    image = torch.arange(math.prod(shape), dtype=torch.float32).view(1, 1, *shape)
    ranges = [(90.0, 90.0)] if dims == 2 else [(0.0, 0.0), (0.0, 0.0), (90.0, 90.0)]
    out, _ = RandomSpatial(p_rotation=1.0, rotation_deg=ranges, seed=0)(image)
    assert torch.allclose(out, torch.rot90(image, 1, dims=(-2, -1)), atol=1e-4)


def test_scale_above_one_enlarges_the_content() -> None:
    image = torch.zeros(1, 1, 40, 40)
    image[..., 15:25, 15:25] = 1.0
    out, _ = RandomSpatial(p_scale=1.0, scale=(2.0, 2.0), seed=0)(image)
    assert out.sum().item() == pytest.approx(4 * image.sum().item(), rel=0.05)


def test_integer_translation_shifts_content_by_whole_voxels() -> None:
    image = torch.randn(1, 2, 12, 10)
    out, _ = RandomSpatial(p_translation=1.0, translation_vox=(3.0, 3.0), seed=0)(image)
    assert torch.allclose(out[..., 3:, 3:], image[..., :-3, :-3], atol=1e-5)
    assert torch.allclose(out[..., :3, :], torch.zeros(1, 2, 3, 10), atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("label_mode", ["nearest", "linear"])
def test_labels_keep_only_their_original_values_and_the_fill(dims: int, label_mode: str) -> None:
    image, label = batch(dims)
    label = label.to(torch.int8) * 3  # values 0, 3, 6, 9, 12
    _, out = RandomSpatial(**EVERYTHING, label_mode=label_mode, label_fill=-1, seed=1)(image, label)
    assert out.dtype == torch.int8
    assert set(out.unique().tolist()) <= {-1, 0, 3, 6, 9, 12}
    assert (out == -1).any()


@pytest.mark.parametrize("dims", [2, 3])
def test_identity_parameters_are_exact_noops(dims: int) -> None:
    image, label = batch(dims)
    t = RandomSpatial(
        p_rotation=1.0,
        rotation_deg=(0.0, 0.0),
        p_scale=1.0,
        scale=(1.0, 1.0),
        p_translation=1.0,
        translation_vox=(0.0, 0.0),
        p_shear=1.0,
        shear=(0.0, 0.0),
        p_elastic=1.0,
        elastic_std_vox=(0.0, 0.0),
        seed=0,
    )
    out_image, out_label = t(image, label)
    assert torch.equal(out_image, image) and torch.equal(out_label, label)


@pytest.mark.parametrize("dims", [2, 3])
def test_probability_zero_never_resamples(dims: int) -> None:
    image, label = batch(dims)
    out_image, out_label = RandomSpatial(**EVERYTHING, p=0.0, seed=0)(image, label)
    assert torch.equal(out_image, image) and torch.equal(out_label, label)


@pytest.mark.parametrize("dims", [2, 3])
def test_probability_one_changes_every_sample(dims: int) -> None:
    image, label = batch(dims, b=6)
    out_image, _ = RandomSpatial(p_rotation=1.0, rotation_deg=(10.0, 20.0), seed=0)(image, label)
    assert all(not torch.equal(out_image[b], image[b]) for b in range(6))


def test_some_samples_change_and_the_others_stay_exact_at_half_probability() -> None:
    image, label = batch(2, b=16)
    out_image, out_label = RandomSpatial(p_rotation=0.5, rotation_deg=(10.0, 20.0), seed=0)(
        image, label
    )
    same = [
        torch.equal(out_image[b], image[b]) and torch.equal(out_label[b], label[b])
        for b in range(16)
    ]
    assert 0 < sum(same) < 16


def test_same_seed_repeats_and_other_seed_differs() -> None:
    image, label = batch(3)
    runs = [RandomSpatial(**EVERYTHING, seed=s)(image, label) for s in (7, 7, 8)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])


def test_channels_of_a_multichannel_image_move_together() -> None:
    base = torch.randn(2, 1, 20, 22)
    image = torch.cat([base, 2 * base, -base], dim=1)
    out, _ = RandomSpatial(**EVERYTHING, seed=2)(image)
    out, _ = RandomFlip(p=0.5, seed=2)(out)
    assert torch.allclose(out[:, 1], 2 * out[:, 0], atol=1e-5)
    assert torch.allclose(out[:, 2], -out[:, 0], atol=1e-5)


def test_output_size_without_transform_is_the_exact_centre_crop_or_pad() -> None:
    image, label = batch(3)
    size = (9, 20, 13)
    out_image, out_label = RandomSpatial(output_size=size, p_rotation=1.0, p=0.0)(image, label)
    start = centre_start(image.shape[2:], size)
    assert torch.equal(out_image, crop_or_pad(image, start, size))
    assert torch.equal(out_label, crop_or_pad(label, start, size))


@pytest.mark.parametrize("size", [(7, 10), (9, 13), (12, 12)])
def test_identity_grid_samples_exactly_what_the_centre_crop_cuts(size: tuple[int, int]) -> None:
    image = torch.randn(1, 1, 10, 12)
    grid = sampling_grid(torch.eye(2)[None].double(), torch.zeros(1, 2).double(), (10, 12), size)
    out, _ = resample(image, None, grid)
    expected = crop_or_pad(image, centre_start((10, 12), size), size)
    assert torch.allclose(out, expected, atol=1e-5)


def test_elastic_deformation_moves_voxels_smoothly() -> None:
    image, label = batch(2, b=2)
    t = RandomSpatial(p_elastic=1.0, elastic_std_vox=(3.0, 3.0), elastic_control_points=6, seed=0)
    out_image, out_label = t(image, label)
    changed = (out_label != label).float().mean()
    assert 0.02 < changed < 0.6
    assert set(out_label.unique().tolist()) <= set(label.unique().tolist())


def test_label_none_stays_none() -> None:
    image, _ = batch(2)
    out_image, out_label = RandomSpatial(**EVERYTHING, seed=0)(image, None)
    assert out_label is None and out_image.shape == image.shape


@pytest.mark.parametrize("dims", [2, 3])
def test_flip_twice_with_one_seed_is_identity_and_matches_torch_flip(dims: int) -> None:
    image, label = batch(dims, b=4)
    once, once_label = RandomFlip(p=1.0)(image, label)
    assert torch.equal(once, image.flip(list(range(2, 2 + dims))))
    assert torch.equal(once_label, label.flip(list(range(2, 2 + dims))))
    twice, twice_label = RandomFlip(p=1.0)(once, once_label)
    assert torch.equal(twice, image) and torch.equal(twice_label, label)


def test_flip_only_touches_the_configured_axes() -> None:
    image, label = batch(3, b=8)
    out, out_label = RandomFlip(axes=[0], p=1.0)(image, label)
    assert torch.equal(out, image.flip(2)) and torch.equal(out_label, label.flip(2))


def test_flip_at_probability_zero_returns_the_input() -> None:
    image, label = batch(3, b=8)
    out, out_label = RandomFlip(p=0.0)(image, label)
    assert out is image and out_label is label


def test_rot90_four_quarter_turns_are_identity_and_match_torch_rot90() -> None:
    image = torch.randn(5, 2, 6, 6)
    out, _ = RandomRot90(p=1.0, seed=4)(image)
    matches = [
        any(torch.equal(out[b], torch.rot90(image[b], k, dims=(1, 2))) for k in (1, 2, 3))
        for b in range(5)
    ]
    assert all(matches)
    assert torch.equal(RandomRot90(p=0.0)(image)[0], image)


def test_rot90_on_a_non_square_plane_only_half_turns() -> None:
    image = torch.randn(3, 1, 4, 6)
    out, _ = RandomRot90(p=1.0, seed=0)(image)
    assert torch.equal(out, torch.rot90(image, 2, dims=(2, 3)))


def test_crop_or_pad_centres_and_fills() -> None:
    image, label = torch.ones(2, 1, 4, 6), torch.ones(2, 1, 4, 6, dtype=torch.long)
    out, out_label = CropOrPad((6, 4), image_fill=-5.0, label_fill=-1)(image, label)
    assert out.shape == (2, 1, 6, 4)
    assert torch.equal(out[0, 0, 0], torch.full((4,), -5.0)) and torch.equal(
        out[0, 0, 1], torch.ones(4)
    )
    assert (out_label[:, :, [0, 5]] == -1).all()


def test_random_crop_or_pad_keeps_the_patch_inside_the_image() -> None:
    image = torch.arange(100.0).view(1, 1, 10, 10).repeat(20, 1, 1, 1)
    out, _ = CropOrPad((4, 4), mode="random", seed=0)(image)
    assert out.shape == (20, 1, 4, 4)
    assert len({float(o[0, 0, 0]) for o in out}) > 5
    assert all(torch.equal(o[0, 1:, 0] - o[0, :-1, 0], torch.full((3,), 10.0)) for o in out)


def test_crop_resize_outputs_the_size_with_original_label_values() -> None:
    image, label = batch(2, b=4)
    out, out_label = RandomCropResize((16, 16), scale=(0.4, 0.8), seed=0)(image, label)
    assert out.shape == (4, 1, 16, 16) and out_label.shape == (4, 1, 16, 16)
    assert set(out_label.unique().tolist()) <= set(label.unique().tolist())


def test_crop_resize_at_probability_zero_and_same_size_is_identity() -> None:
    image, label = batch(2)
    out, out_label = RandomCropResize(SHAPES[2], p=0.0)(image, label)
    assert torch.equal(out, image) and torch.equal(out_label, label)


def test_inputs_are_never_modified_in_place() -> None:
    image, label = batch(2)
    before = image.clone(), label.clone()
    for t in (RandomSpatial(**EVERYTHING, p=0.5), RandomFlip(p=0.5), RandomRot90(p=0.5)):
        t(image, label)
    assert torch.equal(image, before[0]) and torch.equal(label, before[1])


@pytest.mark.parametrize(
    ("image", "label", "match"),
    [
        (torch.zeros(1, 1, 4, 4, dtype=torch.long), None, "floating point"),
        (torch.zeros(1, 4, 4), None, "spatial axes"),
        (torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), r"\(B, 1, \*spatial\)"),
        (torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5), "does not match"),
    ],
)
def test_malformed_batches_are_rejected(
    image: torch.Tensor, label: torch.Tensor | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        RandomFlip()(image, label)


def test_probability_outside_unit_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="p_rotation must be a probability"):
        RandomSpatial(p_rotation=1.5)


def test_wrong_number_of_rotation_ranges_is_rejected() -> None:
    with pytest.raises(ValueError, match="3-D needs 3"):
        RandomSpatial(p_rotation=1.0, rotation_deg=[(0, 1), (0, 1)])(torch.zeros(1, 1, 4, 4, 4))


@pytest.mark.gpu
def test_pipeline_runs_on_cuda_and_stays_there() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    image, label = (t.cuda() for t in batch(3))
    out, out_label = RandomSpatial(**EVERYTHING, seed=0)(image, label)
    out, out_label = RandomFlip(p=0.5, seed=0)(out, out_label)
    assert out.is_cuda and out_label.is_cuda
    assert set(out_label.unique().tolist()) <= set(label.unique().tolist())
    cpu, _ = RandomSpatial(**EVERYTHING, seed=0)(image.cpu(), label.cpu())
    gpu, _ = RandomSpatial(**EVERYTHING, seed=0)(image, label)
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-3)
