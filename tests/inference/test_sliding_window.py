"""Sliding window: Gaussian weights, exact reconstruction, mirroring, and MONAI as a peer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg.inference import flip_combinations, gaussian_importance, sliding_window_inference
from medseg.nets import UNet


def identity(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


# ---------------------------------------------------------------- Gaussian importance


@pytest.mark.parametrize("patch", [(5,), (6, 7), (4, 9, 8), (64, 64, 64)])
def test_gaussian_is_positive_with_max_one_at_the_centre(patch: tuple[int, ...]) -> None:
    w = gaussian_importance(patch)
    assert tuple(w.shape) == patch
    assert float(w.max()) == pytest.approx(1.0)
    assert bool((w > 0).all())
    centre = tuple(p // 2 for p in patch)
    assert float(w[centre]) == pytest.approx(1.0)
    for axis in range(len(patch)):  # symmetric: a flipped tile gets the same weights
        assert torch.equal(w, w.flip(axis))


def test_gaussian_decreases_away_from_the_centre() -> None:
    line = gaussian_importance((9,))
    assert torch.all(line[:4] < line[1:5]) and torch.all(line[4:-1] > line[5:])


def test_gaussian_replaces_underflow_by_the_smallest_non_zero_value() -> None:
    w = gaussian_importance((64, 64), sigma_scale=0.01)  # sigma 0.64 voxels: corners underflow
    x = torch.arange(64, dtype=torch.float64) - 31.5
    line = torch.exp(-(x**2) / (2 * 0.64**2))
    raw = (line[:, None] * line[None, :] / line.max() ** 2).float()
    assert bool((raw == 0).any()) and bool((w > 0).all())
    assert torch.equal(w[raw == 0], torch.full_like(w[raw == 0], float(raw[raw > 0].min())))
    assert torch.equal(w[raw > 0], raw[raw > 0])


def test_gaussian_rejects_non_positive_sigma() -> None:
    with pytest.raises(ValueError, match="sigma_scale"):
        gaussian_importance((4, 4), sigma_scale=0)


def test_flip_combinations_list_every_subset() -> None:
    assert flip_combinations(None, 3) == [()]
    assert len(flip_combinations((0, 1, 2), 3)) == 8
    with pytest.raises(ValueError, match="mirror_axes"):
        flip_combinations((3,), 3)


# ---------------------------------------------------------------- exact reconstruction


CASES = [
    ((1, 2, 23, 17), (8, 8)),  # not divisible by the stride
    ((2, 1, 5, 6), (8, 8)),  # smaller than the patch
    ((1, 3, 9, 40), (16, 8)),  # smaller along one axis only
    ((1, 1, 10, 13, 7), (4, 6, 4)),
    ((1, 2, 3, 20, 11), (5, 8, 8)),
    ((1, 1, 16, 16, 16), (16, 16, 16)),  # exactly one tile
]


@pytest.mark.parametrize("shape,patch", CASES)
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.7])
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_identity_predictor_reproduces_the_input(shape, patch, overlap, mode) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape)
    y = sliding_window_inference(
        x, identity, patch, overlap=overlap, mode=mode, output="logits", sw_batch_size=3
    )
    assert y.shape == x.shape
    torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,patch", CASES[:4])
def test_probability_output_is_the_softmax_of_identity_logits(shape, patch) -> None:
    x = torch.randn(shape)
    y = sliding_window_inference(x, identity, patch)
    torch.testing.assert_close(y, torch.softmax(x, 1), rtol=1e-5, atol=1e-6)


def test_images_smaller_than_the_patch_are_padded_symmetrically_with_zero() -> None:
    seen = []

    def record(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return t

    x = torch.randn(1, 1, 3, 5) + 10
    sliding_window_inference(x, record, (6, 8), output="logits")
    expected = F.pad(x, (1, 2, 1, 2))  # (8-5) -> 1 before, 2 after; (6-3) -> 1 before, 2 after
    torch.testing.assert_close(seen[0], expected)


def test_batch_items_are_predicted_independently() -> None:
    x = torch.randn(3, 2, 20, 12)

    def mix(t: torch.Tensor) -> torch.Tensor:  # depends on the tile's content only
        return t * t.mean(dim=(1, 2, 3), keepdim=True)

    together = sliding_window_inference(x, mix, (8, 8), output="logits", sw_batch_size=5)
    alone = torch.cat(
        [sliding_window_inference(x[i : i + 1], mix, (8, 8), output="logits") for i in range(3)]
    )
    torch.testing.assert_close(together, alone)


def test_output_is_a_normal_tensor_the_caller_may_edit() -> None:
    y = sliding_window_inference(torch.randn(1, 1, 8, 8), identity, (4, 4))
    y.mul_(2)  # an inference tensor would refuse this outside inference mode
    assert not y.is_inference()


def test_tile_size_may_differ_from_the_training_patch() -> None:
    torch.manual_seed(0)
    net = UNet(2, 1, 3, features=(4, 8, 16)).eval()  # "trained" on, say, 32x32
    x = torch.randn(1, 1, 24, 40)
    for patch in [(8, 16), (16, 16), (24, 40), (32, 48)]:
        y = sliding_window_inference(x, net, patch)
        assert y.shape == (1, 3, 24, 40)
        torch.testing.assert_close(y.sum(1), torch.ones(1, 24, 40))
    with torch.no_grad():
        whole = torch.softmax(net(x), 1)
    torch.testing.assert_close(
        sliding_window_inference(x, net, (24, 40)), whole, rtol=1e-5, atol=1e-6
    )


# ---------------------------------------------------------------- mirroring


def test_mirroring_a_flip_equivariant_predictor_changes_nothing() -> None:
    x = torch.randn(1, 2, 12, 10, 14)

    def smooth(t: torch.Tensor) -> torch.Tensor:  # symmetric kernel, zero padding: flip-equivariant
        return F.avg_pool3d(t, 3, stride=1, padding=1)

    plain = sliding_window_inference(x, smooth, (8, 8, 8))
    mirrored = sliding_window_inference(x, smooth, (8, 8, 8), mirror_axes=(0, 1, 2))
    torch.testing.assert_close(mirrored, plain, rtol=1e-5, atol=1e-6)


def test_mirroring_averages_the_flipped_predictions() -> None:
    x = torch.randn(1, 1, 6, 8)
    ramp_y = torch.arange(6.0).reshape(6, 1).expand(6, 8)
    ramp_x = torch.arange(8.0).reshape(1, 8).expand(6, 8)

    def add_ramps(t: torch.Tensor) -> torch.Tensor:  # not flip-equivariant
        return t + ramp_y + 10 * ramp_x

    # one tile (patch = image), so only the mirroring averages: flipping axis 0 turns
    # ramp_y into its mirror image, so the average is the constant mean of the ramp
    y = sliding_window_inference(x, add_ramps, (6, 8), output="logits", mirror_axes=(0,))
    torch.testing.assert_close(y[0, 0], x[0, 0] + 2.5 + 10 * ramp_x)
    y = sliding_window_inference(x, add_ramps, (6, 8), output="logits", mirror_axes=(0, 1))
    torch.testing.assert_close(y[0, 0], x[0, 0] + 2.5 + 10 * 3.5)


# ---------------------------------------------------------------- rejected inputs


def test_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match="spatial axes"):
        sliding_window_inference(torch.zeros(1, 8, 8), identity, (4, 4))


@pytest.mark.parametrize(
    "option,match",
    [
        ({"overlap": 1.0}, "overlap"),
        ({"mode": "box"}, "mode"),
        ({"output": "argmax"}, "output"),
        ({"sw_batch_size": 0}, "sw_batch"),
        ({"mirror_axes": (2,)}, "mirror_axes"),
    ],
)
def test_rejects_bad_options(option, match) -> None:
    with pytest.raises(ValueError, match=match):
        sliding_window_inference(torch.zeros(1, 1, 8, 8), identity, (4, 4), **option)


def test_rejects_a_predictor_returning_a_list() -> None:
    with pytest.raises(TypeError, match="eval"):
        sliding_window_inference(torch.zeros(1, 1, 8, 8), lambda t: [t], (4, 4))


def test_rejects_a_predictor_changing_the_tile_size() -> None:
    with pytest.raises(ValueError, match="expected"):
        sliding_window_inference(torch.zeros(1, 1, 8, 8), lambda t: t[..., :2], (4, 4))


# ---------------------------------------------------------------- MONAI as a peer


@pytest.mark.parametrize(
    "shape,patch",
    [((2, 1, 16, 24, 32), (16, 16, 16)), ((1, 2, 48, 64), (32, 32)), ((1, 1, 10, 40), (16, 16))],
)
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_matches_monai_sliding_window_inference(shape, patch, mode) -> None:
    inferers = pytest.importorskip("monai.inferers")
    torch.manual_seed(0)
    net = UNet(len(patch), shape[1], 3, features=(4, 8)).eval()
    x = torch.randn(shape)
    ours = sliding_window_inference(
        x, net, patch, overlap=0.5, mode=mode, output="logits", sw_batch_size=4
    )
    weights = gaussian_importance(patch) if mode == "gaussian" else None
    with torch.inference_mode():
        theirs = inferers.sliding_window_inference(
            x, patch, 4, net, overlap=0.5, mode=mode, roi_weight_map=weights
        )
    torch.testing.assert_close(
        ours, theirs.as_tensor() if hasattr(theirs, "as_tensor") else theirs, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("patch", [(16, 16, 16), (7, 12)])
def test_gaussian_matches_monai_importance_map_above_its_clamp(patch) -> None:
    data_utils = pytest.importorskip("monai.data.utils")
    theirs = data_utils.compute_importance_map(patch, mode="gaussian", sigma_scale=0.125)
    theirs = theirs / theirs.max()
    ours = gaussian_importance(patch)
    unclamped = theirs > 2e-3  # MONAI raises every weight below 1e-3 to 1e-3
    torch.testing.assert_close(ours[unclamped], theirs[unclamped], rtol=1e-5, atol=1e-7)
