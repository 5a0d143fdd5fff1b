"""Interactive fine-tuning prompts: clicks inside objects and errors, per-proposal losses."""

from __future__ import annotations

import torch

from medseg.losses import build_loss
from medseg.prompt.finetune_config import PromptConfig
from medseg.prompt.finetune_data import PromptSamples
from medseg.prompt.finetune_prompts import (
    PromptBatch,
    correction_clicks,
    interactive_loss,
    mask_losses,
    prompt_batches,
    random_voxel,
)
from medseg.prompt.model import build_promptable


def _samples() -> PromptSamples:
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[0, 4:12, 4:20] = True
    masks[1, 16:30, 2:9] = True
    masks[2, 20:24, 20:30] = True
    return PromptSamples(torch.randn(3, 1, 32, 32), masks, torch.arange(3), ["a", "b", "c"])


def test_random_voxels_fall_inside_their_masks():
    samples = _samples()
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        points = random_voxel(samples.masks, generator).long()
        assert all(samples.masks[i][tuple(points[i])] for i in range(3))


def test_prompt_batches_mix_boxes_and_clicks_by_the_fraction():
    samples = _samples()
    boxes_only = PromptConfig(dataset="d", point_fraction=0.0, steps_per_epoch=20, batch_size=4)
    assert all(
        b.points is None and b.boxes.shape == (4, 4) for b in prompt_batches(boxes_only, samples, 0)
    )
    clicks_only = PromptConfig(dataset="d", point_fraction=1.0, steps_per_epoch=20, batch_size=4)
    for batch in prompt_batches(clicks_only, samples, 0):
        assert batch.boxes is None and batch.points.shape == (4, 1, 2)
        for i, point in zip(batch.index, batch.points[:, 0].long(), strict=True):
            assert samples.masks[i][tuple(point)]
    half = PromptConfig(dataset="d", point_fraction=0.5, steps_per_epoch=200, batch_size=1)
    kinds = [b.points is not None for b in prompt_batches(half, samples, 3)]
    assert 60 < sum(kinds) < 140
    again = [b.points is not None for b in prompt_batches(half, samples, 3)]
    assert kinds == again  # seeded by the epoch


def test_correction_click_goes_to_the_larger_error_region():
    truth = torch.zeros(1, 10, 10, dtype=torch.bool)
    truth[0, 2:8, 2:8] = True
    missed_more = truth.clone()
    missed_more[0, 2:8, 2:5] = False  # 18 voxels missed
    missed_more[0, 0, 0] = True  # 1 false voxel
    point, label = correction_clicks(missed_more, truth)
    assert label.tolist() == [1] and truth[0][tuple(point[0].long())]
    assert not missed_more[0][tuple(point[0].long())]
    false_more = truth.clone()
    false_more[0, 8:10, :] = True  # 20 false voxels
    point, label = correction_clicks(false_more, truth)
    assert label.tolist() == [0] and not truth[0][tuple(point[0].long())]
    point, label = correction_clicks(truth.clone(), truth)  # perfect: a positive click inside
    assert label.tolist() == [1] and truth[0][tuple(point[0].long())]


def test_mask_losses_equal_dice_ce_per_object_and_iou_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.rand(2, 8, 8) > 0.5
    losses, iou = mask_losses(logits, target)
    reference = build_loss("dice_ce", activation="sigmoid")
    for b in range(2):
        for m in range(3):
            expected = reference(logits[b : b + 1, m : m + 1], target[b : b + 1, None].float())
            assert torch.isclose(losses[b, m], expected, atol=1e-5)
            pred = logits[b, m] > 0
            hand = (pred & target[b]).sum() / (pred | target[b]).sum()
            assert torch.isclose(iou[b, m], hand.float())


def test_interactive_loss_trains_the_decoder_and_the_iou_head():
    torch.manual_seed(0)
    model = build_promptable(2, preset="tiny", image_size=(32, 32))
    samples = _samples()
    embedding = model.embed(samples.images).detach()
    click = PromptBatch(torch.arange(3), None, random_voxel(samples.masks)[:, None])
    boxes = torch.tensor([[4.0, 4, 11, 19], [16, 2, 29, 8], [20, 20, 23, 29]])
    # the click step trains the positive-point embedding, the box step the box corners
    for batch, used in ((click, 1), (PromptBatch(torch.arange(3), boxes, None), 2)):
        model.zero_grad()
        loss = interactive_loss(model, embedding, batch, samples.masks, clicks=2)
        loss.backward()
        assert torch.isfinite(loss)
        assert model.mask_decoder.iou_prediction_head.layers[-1].weight.grad.abs().sum() > 0
        assert model.prompt_encoder.point_embeddings[used].weight.grad.abs().sum() > 0
