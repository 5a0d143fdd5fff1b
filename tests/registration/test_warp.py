"""warp, flow units, velocity integration and composition against hand-made references and
scipy's map_coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.errors import ConfigError, GeometryError
from medseg.registration import compose, flow_mm, flow_voxels, integrate_velocity, warp


def _image(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand((1, 1, *shape), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", [(7, 9), (5, 6, 7)])
def test_a_zero_flow_is_the_identity(shape: tuple[int, ...]) -> None:
    image = _image(shape)
    flow = torch.zeros(1, len(shape), *shape)
    assert torch.equal(warp(image, flow, mode="nearest"), image)
    torch.testing.assert_close(warp(image, flow), image, atol=1e-6, rtol=0)  # float32 rounding
    double = image.double()
    torch.testing.assert_close(warp(double, flow.double()), double, atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape", [(8, 10), (6, 7, 8)])
def test_a_constant_integer_flow_is_an_exact_shift(shape: tuple[int, ...]) -> None:
    image = _image(shape, seed=1)
    shift = [2, -1, 1][: len(shape)]
    flow = torch.tensor(shift, dtype=torch.float32).view(1, -1, *[1] * len(shape))
    flow = flow.expand(1, len(shape), *shape).contiguous()
    # out(p) = image(p + shift): compare where p + shift stays inside
    out_index = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(shift, shape, strict=True))
    in_index = tuple(slice(max(0, s), n + min(0, s)) for s, n in zip(shift, shape, strict=True))
    expected = image[(..., *in_index)]
    assert torch.equal(warp(image, flow, mode="nearest")[(..., *out_index)], expected)
    torch.testing.assert_close(warp(image, flow)[(..., *out_index)], expected, atol=1e-6, rtol=0)


def test_linear_warp_equals_scipy_map_coordinates_order_1() -> None:
    shape = (9, 10, 11)
    image = _image(shape, seed=2)
    flow = 1.5 * torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(3))
    ours = warp(image, flow)[0, 0].numpy()
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    ref = ndimage.map_coordinates(
        image[0, 0].numpy(), grid + flow[0].numpy(), order=1, mode="nearest"
    )
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_a_label_map_is_refused_in_linear_mode_and_kept_integer_in_nearest() -> None:
    labels = torch.randint(0, 3, (1, 1, 6, 6), generator=torch.Generator().manual_seed(0))
    flow = torch.full((1, 2, 6, 6), 0.4)
    with pytest.raises(ConfigError, match="label map"):
        warp(labels, flow)
    moved = warp(labels, flow, mode="nearest")
    assert moved.dtype == labels.dtype and torch.equal(moved, labels)  # 0.4 rounds to 0


def test_a_flow_with_the_wrong_channels_is_refused() -> None:
    with pytest.raises(ConfigError, match="3 channels for 2 spatial axes"):
        warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(GeometryError, match="same grid"):
        warp(torch.zeros(1, 1, 4, 5), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ConfigError, match="mode"):
        warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), mode="cubic")


def test_flow_units_convert_per_array_axis_and_back() -> None:
    flow = torch.randn(2, 3, 4, 4, 4)
    spacing = (2.5, 1.0, 0.5)
    mm = flow_mm(flow, spacing)
    torch.testing.assert_close(mm[:, 0], 2.5 * flow[:, 0])
    torch.testing.assert_close(mm[:, 2], 0.5 * flow[:, 2])
    torch.testing.assert_close(flow_voxels(mm, spacing), flow)
    with pytest.raises(ConfigError, match="positive"):
        flow_mm(flow, (1.0, 1.0))


def test_compose_matches_warping_twice() -> None:
    shape = (24, 24)
    image = torch.from_numpy(ndimage.gaussian_filter(np.random.default_rng(0).random(shape), 3))
    image = image.float()[None, None]
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    a = torch.stack([torch.sin(xx / 5), torch.cos(yy / 6)])[None]
    b = torch.stack([0.8 * torch.cos(xx / 7), 0.5 * torch.sin(yy / 4)])[None]
    twice = warp(warp(image, a), b)
    once = warp(image, compose(a, b))
    inner = (..., slice(3, -3), slice(3, -3))
    assert (twice - once)[inner].abs().max() < 0.01


def test_integrating_a_velocity_gives_an_invertible_map() -> None:
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    v = torch.stack([3 * torch.sin(xx / 6), 3 * torch.cos(yy / 5)])[None]
    forward, backward = integrate_velocity(v), integrate_velocity(-v)
    round_trip = compose(forward, backward)  # should be ~0 inside
    assert round_trip[..., 6:-6, 6:-6].abs().max() < 0.1
    constant = torch.full((1, 2, 8, 8), 1.5)
    torch.testing.assert_close(integrate_velocity(constant), constant)
    with pytest.raises(ConfigError, match="steps"):
        integrate_velocity(v, steps=-1)


def test_warping_a_phantom_by_its_known_warp_then_its_inverse_returns_it(phantom_2d) -> None:
    import json

    from medseg.io import read_image
    from medseg.registration.scores import mean_label_dice

    pair = json.loads((phantom_2d / "pairs.json").read_text())["pairs"][0]

    def volume(folder: str, name: str) -> torch.Tensor:
        return torch.from_numpy(read_image(phantom_2d / folder / name).array)[None, None]

    fixed = volume("imagesTr", f"{pair['fixed']}_0000.nii.gz")
    moving = volume("imagesTr", f"{pair['moving']}_0000.nii.gz")
    fixed_labels = volume("labelsTr", f"{pair['fixed']}.nii.gz").long()
    moving_labels = volume("labelsTr", f"{pair['moving']}.nii.gz").long()
    forward = torch.from_numpy(np.load(phantom_2d / pair["forward"]))[None]
    inverse = torch.from_numpy(np.load(phantom_2d / pair["inverse"]))[None]
    assert forward.abs().max() > 2.0  # a real deformation
    inner = (..., slice(4, -4), slice(4, -4))
    assert compose(forward, inverse)[inner].abs().max() < 0.15  # v undoes u
    round_trip = warp(warp(fixed, forward), inverse)
    assert (round_trip - fixed)[inner].abs().mean() < 0.3 * (moving - fixed)[inner].abs().mean()
    # the stored moving case is the fixed one pulled by u (up to the added noise)
    assert (warp(fixed, forward) - moving)[inner].abs().mean() < 0.035
    before = mean_label_dice(fixed_labels[0, 0].numpy(), moving_labels[0, 0].numpy())
    after = warp(moving_labels, inverse, mode="nearest")[0, 0].numpy()
    assert mean_label_dice(fixed_labels[0, 0].numpy(), after) > max(0.95, before + 0.05)
