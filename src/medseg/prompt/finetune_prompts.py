"""Prompts and losses of prompt fine-tuning: MedSAM's jittered boxes, and SAM's interactive
training (a click, then correction clicks with the previous mask fed back).

One step is a *box step* (every object prompted by its jittered box, single-mask output) or
a *click step* (one positive click drawn uniformly inside each object; SAM's 3 proposals, the
loss of the best one only, as SAM). Then ``clicks`` correction rounds: a click drawn uniformly
in the larger error region of the previous mask (positive in a missed part, negative in a
false one), the previous low-resolution logits as the mask prompt, single-mask output. The IoU
head learns each proposal's true IoU (mean squared error), so ``refine`` and
``best_mask`` can trust it. Without click steps and rounds (``point_fraction=0``,
``clicks=0``) this is MedSAM's recipe.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.prompt.finetune_config import PromptConfig
from medseg.prompt.finetune_data import PromptSamples, jitter_box, mask_box


@dataclass(frozen=True)
class PromptBatch:
    """Objects ``index`` ``(B,)`` of one step and their first prompt: ``boxes`` ``(B, 2D)``
    or one positive click per object, ``points`` ``(B, 1, D)``."""

    index: Tensor
    boxes: Tensor | None
    points: Tensor | None


def random_voxel(masks: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One voxel drawn uniformly from each non-empty mask ``(B, *spatial)`` -> ``(B, D)``
    float indices (array order).

    Example:
        >>> m = torch.zeros(1, 4, 4, dtype=torch.bool); m[0, 2, 3] = True
        >>> random_voxel(m).tolist()
        [[2.0, 3.0]]
    """
    flat = masks.flatten(1).float()
    choice = torch.multinomial(flat, 1, generator=generator)[:, 0]
    return torch.stack(torch.unravel_index(choice, masks.shape[1:]), dim=1).float()


def prompt_batches(config: PromptConfig, train: PromptSamples, epoch: int) -> Iterator[PromptBatch]:
    """The steps of one epoch, seeded by it: objects drawn with replacement, a click step with
    probability ``point_fraction``, else a box step (boxes jittered by ``box_jitter``)."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    shape = tuple(train.masks.shape[1:])
    for _ in range(config.steps_per_epoch):
        index = torch.randint(len(train), (config.batch_size,), generator=generator)
        if float(torch.rand((), generator=generator)) < config.point_fraction:
            yield PromptBatch(index, None, random_voxel(train.masks[index], generator)[:, None])
            continue
        boxes = [
            jitter_box(mask_box(train.masks[i]), shape, config.box_jitter, generator) for i in index
        ]
        yield PromptBatch(index, torch.stack(boxes), None)


def mask_losses(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per object and proposal: soft Dice + binary cross-entropy ``(B, M)`` of ``logits``
    ``(B, M, *spatial)`` against ``target`` ``(B, *spatial)``, and the proposals' true IoU
    ``(B, M)`` (thresholded at logit 0, no gradient)."""
    logits = logits.float().flatten(2)
    truth = target.float().flatten(1)[:, None].expand_as(logits)
    probs = logits.sigmoid()
    dice = 1 - (2 * (probs * truth).sum(2) + 1e-5) / (probs.sum(2) + truth.sum(2) + 1e-5)
    bce = F.binary_cross_entropy_with_logits(logits, truth, reduction="none").mean(2)
    with torch.no_grad():
        pred = logits > 0
        inter = (pred & (truth > 0)).sum(2).float()
        union = (pred | (truth > 0)).sum(2).float()
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    return dice + bce, iou


def correction_clicks(pred: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """One click per object in the larger error region of ``pred`` vs ``truth`` (both
    ``(B, *spatial)`` bool): ``(points (B, D), labels (B,))``, label 1 in a missed part,
    0 in a false one; an object without errors gets a positive click inside it."""
    missed, false = truth & ~pred, pred & ~truth
    positive = missed.flatten(1).sum(1) >= false.flatten(1).sum(1)
    region = torch.where(positive.view(-1, *[1] * (pred.ndim - 1)), missed, false)
    empty = region.flatten(1).sum(1) == 0
    region[empty] = truth[empty]
    positive = positive | empty
    return random_voxel(region), positive.long()


def interactive_loss(
    model: nn.Module, embedding: Tensor, batch: PromptBatch, target: Tensor, clicks: int
) -> Tensor:
    """The step's loss: the first prompt's (best proposal of three for a click), then
    ``clicks`` correction rounds with the previous mask fed back; each round adds its Dice +
    BCE and the IoU head's squared error, averaged over rounds."""
    device = embedding.device
    points = batch.points.to(device) if batch.points is not None else None
    labels = (
        None if points is None else torch.ones(points.shape[:2], dtype=torch.long, device=device)
    )
    boxes = batch.boxes.to(device) if batch.boxes is not None else None
    multimask = boxes is None
    mask_prompt = None
    total = embedding.new_zeros(())
    for round_ in range(clicks + 1):
        result = model.predict(
            embedding,
            points=points,
            point_labels=labels,
            box=boxes,
            mask_logits=mask_prompt,
            multimask=multimask,
        )
        losses, iou = mask_losses(result.logits, target)
        best = losses.detach().argmin(1)  # SAM: only the best proposal learns
        rows = torch.arange(len(best), device=device)
        total = total + losses[rows, best].mean() + F.mse_loss(result.iou.float(), iou)
        if round_ == clicks:
            break
        with torch.no_grad():
            pred = result.logits[rows, best] > 0
            mask_prompt = result.low_res_logits[rows, best][:, None].detach()
            click, label = correction_clicks(pred.cpu(), target.cpu() > 0)
        new_points = click.to(device)[:, None]
        points = new_points if points is None else torch.cat([points, new_points], 1)
        new_labels = label.to(device)[:, None]
        labels = new_labels if labels is None else torch.cat([labels, new_labels], 1)
        multimask = False
    return total / (clicks + 1)
