"""Scores of a promptable model on a dataset's held-out objects: Dice from one box prompt
(MedSAM's protocol) and Dice/IoU per simulated click with NoC@85/90 (RITM's, SAM's).

Objects are scored on the model's input grid (each image resized to ``image_size``, as the
model sees it), not resampled back to the original voxels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.prompt.clicks import evaluate_clicks
from medseg.prompt.finetune import embed_all, validation_dice
from medseg.prompt.finetune_config import PromptConfig
from medseg.prompt.finetune_data import load_samples


def run_split(run: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The ``split.json`` a fine-tuning run wrote (empty lists when absent)."""
    path = Path(run) / "split.json"
    if not path.is_file():
        return {"train": [], "val": []}
    return json.loads(path.read_text(encoding="utf-8"))


@torch.no_grad()
def evaluate_prompt_model(
    model: nn.Module,
    config: PromptConfig,
    dataset: str | os.PathLike[str],
    *,
    case_ids: list[str] | None = None,
    max_clicks: int = 10,
) -> dict[str, Any]:
    """Box-prompt Dice and the simulated-click curve of ``model`` on ``case_ids`` of
    ``dataset`` (default: every case), with the run's own objects and preprocessing.

    Returns:
        ``objects``, ``box_dice`` (mean over objects, exact ground-truth boxes), and
        :func:`~medseg.prompt.clicks.evaluate_clicks`'s ``mean_dice``/``mean_iou`` per click,
        ``noc85``, ``noc90``, ``nof85``, ``nof90`` (0 clicks: ``max_clicks`` = 0 skips them).
    """
    samples = load_samples(
        dataset,
        case_ids=case_ids,
        image_size=config.image_size,
        intensity=config.resolved_intensity,
        labels=config.labels or None,
        objects=config.objects,
        slices_per_case=config.slices_per_case,
    )
    device = next(model.parameters()).device
    model.eval()
    embeddings = embed_all(model, samples.images, device)
    box = validation_dice(model, samples, embeddings, device, use_bf16=False)["val_dice"]
    summary: dict[str, Any] = {"objects": len(samples), "box_dice": box}
    if max_clicks > 0:
        images = [samples.images[int(i)] for i in samples.image_of]
        truths = [mask.numpy() for mask in samples.masks]
        summary.update(evaluate_clicks(model, images, truths, max_clicks=max_clicks))
    return summary
