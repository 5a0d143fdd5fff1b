"""Training a detector on the shared engine: CenterNet boxes or watershed instances.

Cases are split once (seeded, ``split.json``); the held-out cases' AP50 (CenterNet; ties
broken by mAP@[.5:.95]) or panoptic quality (watershed) after each epoch picks
``checkpoint_best.pt``; a watershed run then picks its marker settings on the same cases
(:mod:`.tune`). Each step draws ``batch_size`` training images (seeded by the epoch),
optionally a random ``patch_size`` crop of each, and builds its targets from the crop's
instance map:

* ``centernet``: Gaussian centre heatmaps + corner distances (:mod:`.centernet`); loss =
  penalty-reduced focal loss + ``size_weight`` x L1 at centres (:mod:`medseg.losses.heatmap`);
* ``watershed``: foreground (BCE + soft Dice) and the per-instance normalised distance map
  (:func:`medseg.detect.instances.distance_target`, squared error of its sigmoid).

AdamW with a cosine decay to the end of the epochs or the time budget.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.data.case import read_case
from medseg.data.dataset import Dataset, load_dataset
from medseg.detect.centernet import centernet_targets
from medseg.detect.config import CONFIG_KEY, DetectConfig, build_detector, required_divisor
from medseg.detect.data import DetectionSample, load_detection_samples, object_values
from medseg.detect.heads import centernet_detections, watershed_label_map
from medseg.detect.instances import distance_target
from medseg.detect.tune import TUNED_FILE, tune_watershed
from medseg.device import bf16_supported, resolve_device
from medseg.errors import ConfigError, DatasetError
from medseg.losses.heatmap import heatmap_focal_loss, size_l1_loss
from medseg.metrics.boxes import boxes_from_labels
from medseg.metrics.detection import coco_map, panoptic_quality
from medseg.prompt.finetune import split_cases
from medseg.training.checkpoint import load_checkpoint
from medseg.training.engine import RunResult, Task, run_training
from medseg.training.schedule import run_lr_factor


def resolve_config(config: DetectConfig, dataset: Dataset) -> DetectConfig:
    """``config`` with ``spatial_dims``, ``in_channels`` and ``num_classes`` from the data
    (read from the first case); a one-number ``image_size`` / ``patch_size`` applies to every
    axis."""
    if not dataset.cases:
        raise DatasetError(f"{dataset.root}: no labelled cases")
    image, _ = read_case(dataset.cases[0], num_channels=dataset.num_channels)
    classes = len(object_values(dataset, config))
    dims = image.spatial_dims
    resolved = replace(
        config,
        image_size=tuple(config.image_size) * dims
        if len(config.image_size) == 1
        else config.image_size,
        patch_size=tuple(config.patch_size) * dims
        if len(config.patch_size) == 1
        else config.patch_size,
        spatial_dims=dims,
        in_channels=image.num_channels,
        num_classes=classes,
    )
    divisor = required_divisor(resolved)
    for name, size in (("image_size", resolved.image_size), ("patch_size", resolved.patch_size)):
        if size and any(s % d for s, d in zip(size, divisor, strict=True)):
            raise ConfigError(f"{name} {tuple(size)} is not a multiple of {divisor}")
    return resolved


def _every_axis(size: tuple[int, ...], dims: int) -> tuple[int, ...]:
    return tuple(size) * dims if len(size) == 1 else tuple(size)


def _crop(sample: DetectionSample, size: tuple[int, ...], rng: np.random.Generator) -> tuple:
    """A random crop ``(slices)`` of ``size`` (the whole image when empty or larger)."""
    shape = sample.instances.shape
    slices = []
    for n, s in zip(shape, size or shape, strict=True):
        s = min(s, n)
        start = int(rng.integers(0, n - s + 1))
        slices.append(slice(start, start + s))
    return tuple(slices)


def _centernet_batch(
    samples: list[DetectionSample], config: DetectConfig, stride: tuple[int, ...], rng: Any
) -> dict[str, Tensor]:
    images, heat, size, mask = [], [], [], []
    for sample in samples:
        window = _crop(sample, config.patch_size, rng)
        inst = sample.instances[window]
        boxes, ids = boxes_from_labels(inst, config.spatial_dims)
        t = centernet_targets(boxes, sample.class_of[ids], inst.shape, config.num_classes, stride)
        images.append(sample.image[(slice(None), *window)])
        heat.append(torch.from_numpy(t.heatmap))
        size.append(torch.from_numpy(t.size))
        mask.append(torch.from_numpy(t.mask))
    return {
        "image": torch.stack(images),
        "heatmap": torch.stack(heat),
        "size": torch.stack(size),
        "mask": torch.stack(mask),
    }


def _watershed_batch(
    samples: list[DetectionSample], config: DetectConfig, distances: dict[str, np.ndarray], rng: Any
) -> dict[str, Tensor]:
    images, fg, dist = [], [], []
    for sample in samples:
        window = _crop(sample, config.patch_size, rng)
        images.append(sample.image[(slice(None), *window)])
        fg.append(torch.from_numpy(sample.instances[window] > 0).float()[None])
        dist.append(torch.from_numpy(distances[sample.case_id][window]).float()[None])
    return {
        "image": torch.stack(images),
        "foreground": torch.stack(fg),
        "distance": torch.stack(dist),
    }


def _batches(
    samples: list[DetectionSample], config: DetectConfig, epoch: int, make: Any
) -> Iterator[dict[str, Tensor]]:
    rng = np.random.default_rng([config.seed, epoch])
    for _ in range(config.steps_per_epoch):
        index = rng.choice(
            len(samples), size=config.batch_size, replace=len(samples) < config.batch_size
        )
        yield make([samples[i] for i in index], rng)


def centernet_loss(model: nn.Module, batch: dict[str, Tensor], size_weight: float) -> Tensor:
    """Focal heatmap loss + ``size_weight`` x L1 of the sizes at centres."""
    out = model(batch["image"])
    return heatmap_focal_loss(out["heatmap"], batch["heatmap"]) + size_weight * size_l1_loss(
        out["size"], batch["size"], batch["mask"]
    )


def watershed_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Foreground BCE + soft Dice, plus the squared error of the sigmoid distance map."""
    out = model(batch["image"]).float()
    fg_logit, fg = out[:, :1], batch["foreground"]
    prob = torch.sigmoid(fg_logit)
    dice = 1 - (2 * (prob * fg).sum() + 1) / (prob.sum() + fg.sum() + 1)
    bce = F.binary_cross_entropy_with_logits(fg_logit, fg)
    return bce + dice + 4 * F.mse_loss(torch.sigmoid(out[:, 1:]), batch["distance"])


def validate(
    model: nn.Module, config: DetectConfig, samples: list[DetectionSample], use_bf16: bool
) -> dict[str, float]:
    """``val_ap50`` and ``val_map`` (CenterNet: means over classes) or ``val_pq``
    (watershed) of ``samples``."""
    if not samples:
        if config.head == "centernet":
            return {"val_ap50": math.nan, "val_map": math.nan}
        return {"val_pq": math.nan}
    if config.head == "watershed":
        pq = [
            panoptic_quality(
                watershed_label_map(model, config, s.image, use_bf16=use_bf16), s.instances
            )["PQ"]
            for s in samples
        ]
        return {"val_pq": float(np.mean(pq))}
    found = [centernet_detections(model, config, s.image, use_bf16=use_bf16) for s in samples]
    truth = [boxes_from_labels(s.instances, config.spatial_dims) for s in samples]
    aps = []
    for k in range(config.num_classes):
        gt = [
            torch.as_tensor(b[s.class_of[i] == k]) for (b, i), s in zip(truth, samples, strict=True)
        ]
        if sum(len(g) for g in gt) == 0:
            continue
        aps.append(
            coco_map(
                [d.boxes[d.classes == k] for d in found],
                [d.scores[d.classes == k] for d in found],
                gt,
            )
        )
    if not aps:
        return {"val_ap50": math.nan, "val_map": math.nan}
    return {key: float(np.mean([ap[name] for ap in aps])) for key, name in _AP_KEYS}


_AP_KEYS = (("val_ap50", "AP50"), ("val_map", "mAP"))


def _score(row: dict[str, Any], metric: str) -> float:
    """Checkpoint choice: the held-out AP50 (CenterNet; ties broken by mAP@[.5:.95]) or PQ;
    without held-out cases, the lowest training loss."""
    if not math.isfinite(row[metric]):
        return -row["train_loss"]
    return row[metric] + 0.01 * row.get("val_map", 0.0)


def detection_task(
    config: DetectConfig,
    model: nn.Module,
    train: list[DetectionSample],
    val: list[DetectionSample],
    split: dict[str, list[str]],
    dev: torch.device,
) -> Task:
    """The detection task on the engine."""
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    total_steps = config.epochs * config.steps_per_epoch
    metric = "val_ap50" if config.head == "centernet" else "val_pq"
    if config.head == "centernet":

        def make(chosen: list[DetectionSample], rng: Any) -> dict[str, Tensor]:
            return _centernet_batch(chosen, config, model.stride, rng)

        def loss(batch: dict[str, Tensor]) -> Tensor:
            return centernet_loss(model, batch, config.size_weight)

    else:
        distances = {s.case_id: np.asarray(distance_target(s.instances)) for s in train}

        def make(chosen: list[DetectionSample], rng: Any) -> dict[str, Tensor]:
            return _watershed_batch(chosen, config, distances, rng)

        def loss(batch: dict[str, Tensor]) -> Tensor:
            return watershed_loss(model, batch)

    def set_learning_rate(step: int, fraction: float | None) -> None:
        factor = run_lr_factor(step, total_steps, "cosine", fraction)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * factor

    return Task(
        model=model,
        optimizer=optimizer,
        batches=lambda epoch: _batches(train, config, epoch, make),
        loss=loss,
        validate=lambda use_bf16, _: validate(model, config, val, use_bf16),
        score=lambda row: _score(row, metric),
        set_learning_rate=set_learning_rate,
        prepare=lambda batch: {k: v.to(dev) for k, v in batch.items()},
        checkpoint={CONFIG_KEY: config.to_dict()},
        compatible=lambda checkpoint: _same_run(checkpoint.get(CONFIG_KEY), config),
        files={"config.json": config.to_dict(), "split.json": split},
        device=dev,
        curves=(("loss", ("train_loss",), "linear"), (metric, (metric,), "unit")),
        progress_keys=("train_loss", metric),
    )


def _same_run(saved: Any, config: DetectConfig) -> bool:
    if not isinstance(saved, dict):
        return False
    return {**saved, "epochs": config.epochs} == config.to_dict()


RUN_FILES = ("checkpoint_latest.pt", "checkpoint_best.pt", "log.csv", "curves.png")


def _remove_run(out: Path) -> None:
    """Delete the files a training run writes (and only those) from ``out``."""
    for name in (*RUN_FILES, "config.json", "split.json", TUNED_FILE):
        (out / name).unlink(missing_ok=True)


def fit_detector(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: DetectConfig | None = None,
    *,
    time_budget_s: float | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Train a detector on ``dataset`` into the run folder ``out`` (checkpoints, ``log.csv``,
    ``curves.png``, ``config.json``, ``split.json``).

    Args:
        dataset: a dataset folder with instance (or semantic, ``instances="components"``)
            label maps.
        out: the run folder.
        config: settings (default ``DetectConfig(dataset)``); its ``dataset`` is replaced by
            ``dataset``.
        overwrite: delete an earlier run's files in ``out`` first (else such a run is
            refused unless ``resume``).

    Raises:
        ConfigError: bad settings; DatasetError: unreadable or unlabelled data.
    """
    config = replace(config or DetectConfig(str(dataset)), dataset=str(dataset))
    data = load_dataset(dataset)
    config = resolve_config(config, data)
    if overwrite and not resume:
        _remove_run(Path(out))
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    model = build_detector(config).to(dev)
    train_ids, val_ids = split_cases(
        [c.case_id for c in data.cases], config.val_fraction, config.seed
    )
    divisor = required_divisor(config)
    train = load_detection_samples(data, config, train_ids, divisor)
    val = load_detection_samples(data, config, val_ids, divisor)
    if config.batch_size > 1 and not config.patch_size and len({s.image.shape for s in train}) > 1:
        raise ConfigError(
            "training images differ in size: set image_size (resize) or patch_size (crops)"
        )
    task = detection_task(config, model, train, val, {"train": train_ids, "val": val_ids}, dev)
    result = run_training(
        task,
        Path(out),
        epochs=config.epochs,
        use_bf16=bf16_supported(dev),
        time_budget_s=time_budget_s,
        resume=resume,
        progress=progress,
        description=f"detect {config.head}",
        resume_hint="the same `medseg detect train` command plus --resume",
    )
    if config.head == "watershed" and val:
        best = load_checkpoint(Path(out) / "checkpoint_best.pt", kind="weights")
        model.load_state_dict(best["network_state"])
        tune_watershed(model, config, val, Path(out))
    return result
