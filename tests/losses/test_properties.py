"""Properties of every registered loss: 2D/3D, binary/multi-class, perfect predictions,
optimisation, ignore_index, focal(gamma=0) = CE, errors."""

from __future__ import annotations

import pytest
import torch

from medseg.errors import ConfigError
from medseg.losses import (
    BoundaryLoss,
    CrossEntropyLoss,
    FocalLoss,
    build_loss,
    list_losses,
    one_hot_target,
    signed_distance_map,
)

NAMES = [
    "ce",
    "weighted_ce",
    "dice",
    "milletari_dice",
    "generalized_dice",
    "focal",
    "tversky",
    "boundary",
    "dice_ce",
]


def random_target(spatial_dims: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, (2, 1, *([6] * spatial_dims)), generator=gen)
    target[0, 0, (0,) * spatial_dims] = 0
    target[1, 0, (1,) * spatial_dims] = num_classes - 1  # every class present in the batch
    return target


def perfect_logits(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    onehot, _ = one_hot_target(target, num_classes)
    return 30.0 * (2 * onehot - 1)


def test_registry_lists_every_required_loss() -> None:
    assert set(NAMES) <= set(list_losses())


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_loss_is_a_finite_scalar_with_gradients(name: str, spatial_dims: int) -> None:
    target = random_target(spatial_dims, 3)
    logits = torch.randn(2, 3, *target.shape[2:], requires_grad=True)
    loss = build_loss(name)(logits, target)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("target_form", ["labels", "onehot"])
@pytest.mark.parametrize("name", NAMES)
def test_one_hot_target_gives_the_same_loss_as_labels(name: str, target_form: str) -> None:
    labels = random_target(2, 3)
    logits = torch.randn(2, 3, 6, 6)
    reference = build_loss(name)(logits, labels)
    target = labels if target_form == "labels" else one_hot_target(labels, 3)[0]
    torch.testing.assert_close(build_loss(name)(logits, target), reference)


@pytest.mark.parametrize("name", NAMES)
def test_binary_single_channel_sigmoid_works(name: str) -> None:
    target = random_target(3, 2)
    logits = torch.randn(2, 1, *target.shape[2:])
    assert torch.isfinite(build_loss(name, activation="sigmoid")(logits, target))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "boundary"])
def test_loss_is_zero_at_a_perfect_prediction(name: str) -> None:
    target = random_target(3, 3)
    assert build_loss(name)(perfect_logits(target, 3), target).item() == pytest.approx(
        0.0, abs=1e-4
    )


def test_boundary_loss_is_minimal_at_a_perfect_prediction() -> None:
    target = random_target(2, 3)
    loss = BoundaryLoss()
    perfect = loss(perfect_logits(target, 3), target)
    onehot, _ = one_hot_target(target, 3)
    minimum = signed_distance_map(onehot)[:, 1:].clamp(max=0).sum(dim=1).mean()
    assert perfect.item() == pytest.approx(minimum.item(), abs=1e-4)
    for seed in range(5):
        other = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(seed)) * 5
        assert loss(other, target) > perfect


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_loss_decreases_along_gradient_descent(name: str, spatial_dims: int) -> None:
    target = random_target(spatial_dims, 3)
    logits = torch.zeros(2, 3, *target.shape[2:], requires_grad=True)
    loss_fn = build_loss(name)
    optimiser = torch.optim.Adam([logits], lr=0.1)
    values = []
    for _ in range(30):
        loss = loss_fn(logits, target)
        values.append(loss.item())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert values[-1] < values[0] - 0.1 * abs(values[0]) - 1e-3
    assert values[-1] <= min(values[:10])


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_focal_with_gamma_zero_equals_cross_entropy(activation: str) -> None:
    target = random_target(3, 3)
    logits = torch.randn(2, 3, *target.shape[2:])
    focal = FocalLoss(gamma=0.0, activation=activation)(logits, target)
    torch.testing.assert_close(focal, CrossEntropyLoss(activation=activation)(logits, target))


@pytest.mark.parametrize("name", NAMES)
def test_ignored_voxels_do_not_change_the_loss(name: str) -> None:
    target = random_target(2, 3)
    logits = torch.randn(2, 3, 6, 6)
    ignored = target.clone()
    ignored[..., 4:] = 255
    loss_fn = build_loss(name, ignore_index=255)
    changed = logits.clone()
    changed[..., 4:] = 100 * torch.randn_like(changed[..., 4:])
    torch.testing.assert_close(loss_fn(changed, ignored), loss_fn(logits, ignored))
    assert not torch.allclose(loss_fn(logits, ignored), build_loss(name)(logits, target))


@pytest.mark.parametrize("name", ["dice", "generalized_dice", "tversky"])
def test_batch_dice_pools_samples(name: str) -> None:
    target = random_target(2, 3)
    logits = torch.randn(2, 3, 6, 6)
    pooled = build_loss(name, batch_dice=True)(logits, target)
    assert not torch.allclose(pooled, build_loss(name, batch_dice=False)(logits, target))
    both, twice = torch.cat([target, target]), torch.cat([logits, logits])
    exact = build_loss(name, batch_dice=True, smooth=0.0)  # duplicating the batch changes nothing
    torch.testing.assert_close(exact(twice, both), exact(logits, target))


def test_smooth_zero_gives_zero_dice_for_an_absent_class() -> None:
    target = torch.zeros(1, 1, 4, 4, dtype=torch.long)  # class 1 absent
    logits = torch.stack([torch.full((4, 4), 30.0), torch.zeros(4, 4)])[None]  # predicts none of it
    assert build_loss("dice", smooth=0.0)(logits, target).item() == pytest.approx(1.0, abs=1e-6)
    assert build_loss("dice", smooth=1.0)(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_unknown_loss_and_option_are_refused() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'dice'"):
        build_loss("dise")
    with pytest.raises(ConfigError, match=r"no option\(s\) \['gama'\].*gamma"):
        build_loss("focal", gama=2)
    with pytest.raises(ConfigError, match="squared_denominator"):
        build_loss("milletari_dice", squared_denominator=False)


@pytest.mark.parametrize(
    ("logits_shape", "target", "message"),
    [
        ((1, 3, 4, 4), torch.full((1, 1, 4, 4), 3), r"labels span \[3, 3\].*\[0, 2\]"),
        ((1, 3, 4, 4), torch.zeros(1, 2, 4, 4), "expected labels"),
        ((1, 3, 4, 4), torch.zeros(1, 1, 4, 5, dtype=torch.long), "does not match logits"),
        ((1, 1, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long), "use activation='sigmoid'"),
    ],
)
def test_bad_inputs_are_refused(logits_shape: tuple, target: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_loss("dice_ce")(torch.zeros(logits_shape), target)


def test_ignore_index_needs_label_targets() -> None:
    with pytest.raises(ValueError, match="ignore_index needs an integer label target"):
        build_loss("dice", ignore_index=255)(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
