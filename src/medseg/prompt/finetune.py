"""Fine-tuning a promptable model as MedSAM (and SAM) do, a trainer on the shared engine.

Boxes come from the ground truth with a random jitter of up to ``box_jitter`` voxels per
coordinate, clicks from inside the objects and from the errors of the previous mask; the loss
is Dice + binary cross-entropy plus the IoU head's error (:mod:`.finetune_prompts`). With the image
encoder frozen (the default) every image is embedded once before training and the cached
embeddings feed the prompt encoder and mask decoder, the only parts that train; the encoder's
weights stay bit-identical. Validation: mean Dice of the held-out objects with exact boxes,
which picks ``checkpoint_best.pt``. Cases are split once (seeded) and the split is written to
``split.json``, so evaluation uses cases the model never saw.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medseg.data.dataset import load_dataset
from medseg.device import autocast, bf16_supported, resolve_device
from medseg.errors import ConfigError
from medseg.prompt.finetune_config import PromptConfig
from medseg.prompt.finetune_data import PromptSamples, load_samples, mask_box
from medseg.prompt.finetune_model import CONFIG_KEY, ENCODER_PLAN_KEY, build_prompt_model
from medseg.prompt.finetune_prompts import PromptBatch, interactive_loss, prompt_batches
from medseg.training.engine import RunResult, Task, run_training
from medseg.training.schedule import run_lr_factor

EMBED_BATCH = 4  # images per encoder call while filling the embedding cache


def split_cases(case_ids: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Training and validation case ids: a seeded permutation, the last ``val_fraction``
    (at least one case when there are two or more) held out.

    Example:
        >>> ids = [f"c{i}" for i in range(10)]
        >>> train, val = split_cases(ids, 0.2, 0)
        >>> len(train), len(val), sorted(train + val) == sorted(ids)
        (8, 2, True)
    """
    order = np.random.default_rng(seed).permutation(len(case_ids))
    count = (
        0 if val_fraction == 0 or len(case_ids) < 2 else max(1, round(val_fraction * len(case_ids)))
    )
    held = {case_ids[i] for i in order[len(case_ids) - count :]}
    return [c for c in case_ids if c not in held], [c for c in case_ids if c in held]


@torch.no_grad()
def embed_all(model: nn.Module, images: Tensor, device: torch.device) -> Tensor:
    """Embeddings of ``images`` ``(N, C, *image_size)`` by the (frozen) image encoder, on the
    CPU in float32: ``(N, embed_dim, *grid)``."""
    was_training = model.image_encoder.training
    model.image_encoder.eval()
    parts = [
        model.embed(images[i : i + EMBED_BATCH].to(device)).float().cpu()
        for i in range(0, len(images), EMBED_BATCH)
    ]
    model.image_encoder.train(was_training)
    return torch.cat(parts)


@dataclass
class PromptData:
    """Training and validation objects, their embeddings when the encoder is frozen."""

    train: PromptSamples
    val: PromptSamples | None
    train_embeddings: Tensor | None
    val_embeddings: Tensor | None
    split: dict[str, list[str]]


def prompt_data(config: PromptConfig, model: nn.Module, device: torch.device) -> PromptData:
    """Read and split the dataset, and fill the embedding cache for a frozen encoder."""
    dataset = load_dataset(config.dataset)
    train_ids, val_ids = split_cases(
        [c.case_id for c in dataset.cases], config.val_fraction, config.seed
    )
    options: dict[str, Any] = dict(
        image_size=config.image_size,
        intensity=config.resolved_intensity,
        labels=config.labels or None,
        objects=config.objects,
        slices_per_case=config.slices_per_case,
    )
    train = load_samples(dataset, case_ids=train_ids, **options)
    val = load_samples(dataset, case_ids=val_ids, **options) if val_ids else None
    frozen = config.freeze == "image_encoder"
    return PromptData(
        train,
        val,
        embed_all(model, train.images, device) if frozen else None,
        embed_all(model, val.images, device) if frozen and val is not None else None,
        {"train": train_ids, "val": val_ids},
    )


def _embeddings(
    model: nn.Module,
    samples: PromptSamples,
    embeddings: Tensor | None,
    index: Tensor,
    device: torch.device,
) -> Tensor:
    """The image embeddings of objects ``index``: from the cache, or computed (an encoder
    that trains)."""
    images = samples.image_of[index]
    if embeddings is not None:
        return embeddings[images].to(device)
    return model.embed(samples.images[images].to(device))


@torch.no_grad()
def validation_dice(
    model: nn.Module,
    samples: PromptSamples | None,
    embeddings: Tensor | None,
    device: torch.device,
    use_bf16: bool,
) -> dict[str, float]:
    """Mean Dice of the validation objects prompted by their exact boxes."""
    if samples is None:
        return {"val_dice": math.nan}
    model.eval()
    scores = []
    for start in range(0, len(samples), 8):
        index = torch.arange(start, min(start + 8, len(samples)))
        boxes = torch.stack([mask_box(samples.masks[i]) for i in index])
        with autocast(device, use_bf16):
            embedding = _embeddings(model, samples, embeddings, index, device)
            result = model.predict(embedding, box=boxes.to(device), multimask=False)
        pred, truth = result.logits[:, 0].float().cpu() > 0, samples.masks[index]
        inter = (pred & truth).flatten(1).sum(1).float()
        total = (pred.flatten(1).sum(1) + truth.flatten(1).sum(1)).float()
        scores.append(2 * inter / total.clamp_min(1))
    return {"val_dice": float(torch.cat(scores).mean())}


def prompt_task(
    config: PromptConfig,
    model: nn.Module,
    data: PromptData,
    dev: torch.device,
    encoder_plan: dict[str, Any] | None,
) -> Task:
    """The fine-tuning task on the engine: AdamW on the trainable parts, the interactive loss
    of :mod:`medseg.prompt.finetune_prompts`, cosine decay to the end of the epochs or
    budget."""
    frozen = config.freeze == "image_encoder"
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.resolved_learning_rate, weight_decay=config.weight_decay
    )
    total_steps = config.epochs * config.steps_per_epoch

    def loss(batch: PromptBatch) -> Tensor:
        embedding = _embeddings(model, data.train, data.train_embeddings, batch.index, dev)
        target = data.train.masks[batch.index].to(dev)
        return interactive_loss(model, embedding, batch, target, config.clicks)

    def set_learning_rate(step: int, fraction: float | None) -> None:
        factor = run_lr_factor(step, total_steps, "cosine", fraction)
        for group in optimizer.param_groups:
            group["lr"] = config.resolved_learning_rate * factor

    def train_mode() -> None:
        model.train()
        if frozen:  # a frozen encoder keeps its normalisation statistics
            model.image_encoder.eval()

    return Task(
        model=model,
        optimizer=optimizer,
        batches=lambda epoch: prompt_batches(config, data.train, epoch),
        loss=loss,
        validate=lambda use_bf16, _: validation_dice(
            model, data.val, data.val_embeddings, dev, use_bf16
        ),
        score=lambda row: row["val_dice"] if math.isfinite(row["val_dice"]) else -row["train_loss"],
        set_learning_rate=set_learning_rate,
        train_mode=train_mode,
        checkpoint={CONFIG_KEY: config.to_dict(), ENCODER_PLAN_KEY: encoder_plan},
        compatible=lambda checkpoint: _same_run(checkpoint.get(CONFIG_KEY), config),
        files={"config.json": config.to_dict(), "split.json": data.split},
        device=dev,
        curves=(("loss", ("train_loss",), "linear"), ("validation Dice", ("val_dice",), "unit")),
        progress_keys=("train_loss", "val_dice"),
    )


def _same_run(saved: Any, config: PromptConfig) -> bool:
    """May a run of ``config`` resume from a checkpoint with config ``saved``: the same
    settings but perhaps more epochs."""
    if not isinstance(saved, dict):
        return False
    return {**saved, "epochs": config.epochs} == config.to_dict()


def finetune_prompt(
    config: PromptConfig,
    run_dir: str | os.PathLike[str],
    *,
    time_budget_s: float | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Fine-tune the config's promptable model into ``run_dir`` (checkpoints, ``log.csv``,
    ``curves.png``, ``config.json``, ``split.json``).

    Raises:
        ConfigError: a bad source, dataset or prompt setting (see :class:`PromptConfig`).
    """
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    model, encoder_plan = build_prompt_model(config)
    if tuple(model.image_size) != tuple(config.image_size):
        raise ConfigError(
            f"the {config.source} model takes {tuple(model.image_size)} inputs, the config says "
            f"{tuple(config.image_size)} (--image-size)"
        )
    if config.freeze == "image_encoder":
        model.image_encoder.requires_grad_(False)
    model.to(dev)
    task = prompt_task(config, model, prompt_data(config, model, dev), dev, encoder_plan)
    return run_training(
        task,
        Path(run_dir),
        epochs=config.epochs,
        use_bf16=bf16_supported(dev),
        time_budget_s=time_budget_s,
        resume=resume,
        progress=progress,
        description="prompt finetune",
        resume_hint="the same `medseg prompt finetune` command plus --resume",
    )
