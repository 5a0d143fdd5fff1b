"""Prompt fine-tuning data: image preparation, objects, boxes, splits, coordinate mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError
from medseg.prompt.apply import check_prompt, to_model_coordinates
from medseg.prompt.finetune import split_cases
from medseg.prompt.finetune_config import PromptConfig
from medseg.prompt.finetune_data import (
    SAM_MEAN,
    SAM_STD,
    jitter_box,
    load_samples,
    mask_box,
    object_masks,
    prepare_image,
)


def test_prepare_image_normalisations_by_hand():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    z = prepare_image(image, (4, 4), "zscore")
    assert torch.allclose(z, torch.as_tensor((image - image.mean()) / image.std(ddof=1)), atol=1e-5)
    unit = prepare_image(image, (4, 4), "minmax")
    assert float(unit.min()) == 0.0 and float(unit.max()) == 1.0
    sam = prepare_image(image, (4, 4), "sam")
    assert sam.shape == (3, 4, 4)  # grey replicated to RGB
    for c in range(3):  # the brightest voxel is 255 before SAM's mean and std
        assert float(sam[c, 3, 3]) == pytest.approx((255 - SAM_MEAN[c]) / SAM_STD[c], rel=1e-5)
    assert prepare_image(image, (8, 2), "minmax").shape == (1, 8, 2)
    assert torch.equal(prepare_image(image, (4, 4), "medsam"), unit.expand(3, 4, 4))


def test_object_masks_by_label_and_by_component():
    label = np.zeros((10, 10), dtype=np.uint8)
    label[1:3, 1:3] = 1
    label[6:9, 6:9] = 1  # a second component of label 1
    label[1:3, 6:8] = 2
    by_label = object_masks(label, [1, 2, 3], "label")
    assert [int(m.sum()) for m in by_label] == [4 + 9, 4]  # label 3 absent: no object
    by_component = object_masks(label, [1, 2], "component")
    assert sorted(int(m.sum()) for m in by_component) == [4, 4, 9]


def test_mask_box_and_jitter_stay_inside_and_ordered():
    mask = torch.zeros(20, 30, dtype=torch.bool)
    mask[5:10, 12:20] = True
    box = mask_box(mask)
    assert box.tolist() == [5, 12, 9, 19]
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        moved = jitter_box(box, (20, 30), 6, generator)
        assert (moved[:2] <= moved[2:]).all()
        assert (moved >= 0).all() and moved[0] <= 19 and moved[3] <= 29
        assert (moved - box).abs().max() <= 6
    assert torch.equal(jitter_box(box, (20, 30), 0, generator), box)
    with pytest.raises(ConfigError, match="empty mask"):
        mask_box(torch.zeros(3, 3, dtype=torch.bool))


def test_load_samples_slices_3d_cases_for_a_2d_model(tiny_dataset):
    samples = load_samples(tiny_dataset, image_size=(16, 16), intensity="zscore", min_voxels=1)
    # tiny cases are (6, 8, 10) with label 1 on slices 1-4 and label 2 on slices 2-3
    assert samples.images.shape[1:] == (1, 16, 16)
    assert len(samples.case_ids) == 3 * 4 and samples.case_ids[0] == "case_000@1"
    assert len(samples) == 3 * (4 + 2)
    assert (
        samples.masks.shape[1:] == (16, 16) and samples.image_of.max() == len(samples.case_ids) - 1
    )
    only_two = load_samples(
        tiny_dataset,
        image_size=(16, 16),
        intensity="zscore",
        labels=[2],
        case_ids=["case_001"],
        min_voxels=1,
    )
    assert len(only_two) == 2 and all(c.startswith("case_001@") for c in only_two.case_ids)
    volumes = load_samples(tiny_dataset, image_size=(8, 8, 8), intensity="minmax", min_voxels=1)
    assert volumes.images.shape == (3, 1, 8, 8, 8) and len(volumes) == 6
    with pytest.raises(ConfigError, match="no object"):
        load_samples(tiny_dataset, image_size=(16, 16), intensity="zscore", labels=[7])


def test_split_cases_is_seeded_and_disjoint():
    ids = [f"c{i}" for i in range(9)]
    train, val = split_cases(ids, 0.25, seed=3)
    assert (train, val) == split_cases(ids, 0.25, seed=3)
    assert len(val) == 2 and not set(train) & set(val) and sorted(train + val) == sorted(ids)
    assert split_cases(ids, 0.0, seed=3) == (ids, [])
    assert split_cases(["only"], 0.5, seed=0) == (["only"], [])


def test_model_coordinates_map_voxel_centres():
    # voxel i of a 4-voxel axis covers [i, i + 1); its centre in an 8-voxel axis is 2 i + 0.5
    coords = to_model_coordinates(torch.tensor([[0.0], [3.0]]), (4,), (8,))
    assert coords.flatten().tolist() == [0.5, 6.5]
    assert to_model_coordinates(torch.tensor([[2.0, 5.0]]), (6, 6), (6, 6)).tolist() == [[2, 5]]


@pytest.mark.parametrize(
    ("box", "points", "message"),
    [
        (None, None, "no prompt"),
        ([5, 5, 2, 8], None, "inverted"),
        ([0, 0, 10, 3], None, "outside"),
        ([0, 0, 3], None, "4 numbers"),
        (None, [[2, 10]], "outside"),
        (None, [[2, 3, 4]], "2 coordinates"),
    ],
)
def test_bad_prompts_are_refused_clearly(box, points, message):
    with pytest.raises(ConfigError, match=message):
        check_prompt((10, 10), box, points)


def test_prompt_config_checks_its_source_and_round_trips():
    with pytest.raises(ConfigError, match="--weights"):
        PromptConfig(dataset="d", source="sam")
    with pytest.raises(ConfigError, match="freeze"):
        PromptConfig(dataset="d", freeze="decoder")
    with pytest.raises(ConfigError, match="axes"):
        PromptConfig(dataset="d", image_size=(64, 64, 64))
    config = PromptConfig(dataset="d", labels=(1, 2), source="medsam", weights="w.pth")
    assert PromptConfig.from_dict(config.to_dict()) == config
    assert config.resolved_intensity == "medsam"
