"""Presets and the transform registry."""

from __future__ import annotations

import pickle

import pytest
import torch

from medseg.errors import ConfigError
from medseg.transforms import (
    TRANSFORMS,
    Compose,
    RandomFlip,
    RandomGamma,
    RandomSpatial,
    build_transform,
    light,
    nnunet_default,
)


def probabilities(pipeline: Compose) -> list[tuple[str, float]]:
    return [(type(t).__name__, t.p) for t in pipeline.transforms]


def test_nnunet_default_lists_nnunets_transforms_with_their_probabilities() -> None:
    pipeline = nnunet_default(3)
    assert probabilities(pipeline) == [
        ("RandomSpatial", 1.0),
        ("RandomGaussianNoise", 0.1),
        ("RandomGaussianBlur", 0.2),
        ("RandomBrightness", 0.15),
        ("RandomContrast", 0.15),
        ("RandomLowResolution", 0.25),
        ("RandomGamma", 0.1),
        ("RandomGamma", 0.3),
        ("RandomFlip", 0.5),
    ]
    spatial = pipeline.transforms[0]
    assert (spatial.p_rotation, spatial.p_scale, spatial.scale) == (0.2, 0.2, (0.7, 1.4))
    assert spatial.rotation_deg == [(-30.0, 30.0)]
    assert nnunet_default(2).transforms[0].rotation_deg == [(-180.0, 180.0)]
    assert [t.invert for t in pipeline.transforms if isinstance(t, RandomGamma)] == [True, False]


def test_nnunet_default_with_p_one_sets_every_probability_to_one() -> None:
    pipeline = nnunet_default(3, p=1.0)
    for t in pipeline.transforms:
        assert t.p == 1.0
        assert getattr(t, "p_per_channel", 1.0) == 1.0
    spatial = pipeline.transforms[0]
    assert spatial.p_rotation == spatial.p_scale == 1.0


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("preset", [nnunet_default, light])
def test_presets_run_and_crop_to_the_patch_size(dims: int, preset) -> None:
    shape = (20, 22) if dims == 2 else (10, 12, 14)
    patch = (16, 16) if dims == 2 else (8, 8, 8)
    image = torch.randn(3, 2, *shape)
    label = torch.randint(0, 3, (3, 1, *shape))
    out, out_label = preset(dims, 1.0, patch_size=patch, seed=0)(image, label)
    assert out.shape == (3, 2, *patch) and out_label.shape == (3, 1, *patch)
    assert set(out_label.unique().tolist()) <= {0, 1, 2}


def test_presets_are_repeatable_with_a_seed() -> None:
    image, label = torch.randn(2, 1, 16, 16), torch.randint(0, 2, (2, 1, 16, 16))
    first = nnunet_default(2, 1.0, seed=4)(image, label)
    second = nnunet_default(2, 1.0, seed=4)(image, label)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_mirror_axes_restrict_or_remove_flipping() -> None:
    flips = [t for t in nnunet_default(2, mirror_axes=[0]).transforms if isinstance(t, RandomFlip)]
    assert flips[0].axes == (0,)
    assert not any(isinstance(t, RandomFlip) for t in light(2, mirror_axes=()).transforms)


def test_presets_reject_other_dimensions() -> None:
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        nnunet_default(4)


def test_registry_builds_presets_and_single_transforms_by_name() -> None:
    assert {"nnunet_default", "light", "spatial", "flip", "gamma", "erasing"} <= set(
        TRANSFORMS.names()
    )
    assert isinstance(build_transform("nnunet_default", spatial_dims=3), Compose)
    gamma = build_transform("gamma", p=0.5, gamma=(0.8, 1.2))
    assert isinstance(gamma, RandomGamma) and gamma.p == 0.5
    assert isinstance(build_transform("spatial", p_elastic=1.0), RandomSpatial)


def test_unknown_transform_name_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'gamma'"):
        build_transform("gama")


def test_a_pickled_pipeline_continues_the_same_random_stream() -> None:
    pipeline = nnunet_default(2, 1.0, seed=3)
    image = torch.randn(2, 1, 12, 12)
    pipeline(image)
    copy = pickle.loads(pickle.dumps(pipeline))
    assert torch.equal(pipeline(image)[0], copy(image)[0])


def test_registry_refuses_an_unknown_option_and_describes_every_entry() -> None:
    with pytest.raises(ConfigError, match=r"transform 'gamma' has no option\(s\) \['gama'\]"):
        build_transform("gamma", gama=(0.8, 1.2))
    assert all(TRANSFORMS.description(name) for name in TRANSFORMS.names())
    assert "mirror_axes" in TRANSFORMS.options("light")
