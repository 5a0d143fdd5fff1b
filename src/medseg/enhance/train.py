"""Training a residual denoiser on the shared engine: ``fit_denoiser(data, out, config)``.

Two modes (``DenoiseConfig.mode``):

* ``supervised``: the clean image is the target; the noisy input is drawn afresh from the
  noise model for every crop of every step (so the network never sees the same noise twice);
* ``n2n`` (Noise2Noise, Lehtinen et al. 2018): each case is two independent noisy
  realisations; one (at random) is the input, the other the target, and with an L2 loss the
  minimiser is the clean image's expectation. The trainer only ever calls ``data.pair``:
  no clean image is read, in training or in validation (validation PSNR is against the
  second realisation, which ranks models as PSNR against the clean image would, up to the
  noise's constant). Identical realisations are refused.
* ``super_resolution``: the clean image is the target; the input is the crop averaged over
  ``sr_factor`` slices along ``sr_axis`` and interpolated back linearly
  (:func:`medseg.enhance.super_resolution.simulate_thick_slices`); validation PSNR of the
  input (``val_psnr_input``) is then the linear-interpolation baseline's.

Every step crops ``patch_size`` windows at random places (random flips), normalises each
by its whole image's intensity percentiles (as :mod:`medseg.enhance.apply` does at inference)
and minimises L1, L2, 1 - SSIM or their mix. After each epoch the held-out cases are
denoised whole and their mean PSNR (``val_psnr``; data range stated in the config:
``val_data_range``, or each reference's max - min) picks ``checkpoint_best.pt``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medseg.data.noise_models import parse_noise
from medseg.device import autocast, bf16_supported, resolve_device
from medseg.enhance.apply import build_denoiser, denoise_array, intensity_stats
from medseg.enhance.config import DenoiseConfig
from medseg.enhance.data import describe, open_denoise_data
from medseg.enhance.super_resolution import simulate_thick_slices
from medseg.errors import ConfigError, DatasetError
from medseg.metrics.image_quality import psnr, ssim_torch
from medseg.training.engine import RunResult, Task, run_training
from medseg.training.schedule import OPTIMIZERS, run_lr_factor

log = logging.getLogger(__name__)

PANELS = (("loss", ("train_loss",), "log"), ("validation PSNR (dB)", ("val_psnr",), "linear"))
RUN_FILES = ("checkpoint_latest.pt", "checkpoint_best.pt", "log.csv", "curves.png", "config.json")
SSIM_WEIGHT = 0.84  # "mix": Zhao et al. 2017, IEEE TCI 3(1)


@dataclass
class Sample:
    """One case in memory: ``images`` (one clean image, or the two noisy realisations), their
    normalisation ``(low, scale)`` each, and the data range the noise level is relative to."""

    images: list[np.ndarray]
    stats: list[tuple[np.ndarray, np.ndarray]]
    data_range: float


def degraded_input(
    config: DenoiseConfig, clean: np.ndarray, rng: np.random.Generator, data_range: float
) -> np.ndarray:
    """The network input for a clean image: a noise draw (supervised) or the thick-slice
    simulation (super-resolution; ``rng`` unused)."""
    if config.mode == "super_resolution":
        return simulate_thick_slices(clean, config.sr_factor, config.sr_axis)
    return parse_noise(config.noise).apply(clean, rng, data_range=data_range)


def _load_samples(data: Any, indices: list[int], config: DenoiseConfig) -> list[Sample]:
    """Read the cases of ``indices``: clean images (supervised, super-resolution) or pairs
    (n2n)."""
    samples = []
    for index in indices:
        if config.mode == "n2n":
            a, b = data.pair(index)
            if a.shape != b.shape:
                raise DatasetError(f"{describe(data, index)}: realisations differ in shape")
            if np.array_equal(a, b):
                raise DatasetError(
                    f"{describe(data, index)}: the two noisy realisations are identical; "
                    "noise2noise needs independent noise in each (two acquisitions or two "
                    "noise draws), otherwise the network learns the identity"
                )
            images = [a, b]
            stats = [intensity_stats(a), intensity_stats(b)]
            span = float(b.max() - b.min())
        else:
            clean = data.clean(index)
            span = float(clean.max() - clean.min())
            if not span > 0:
                raise DatasetError(f"{describe(data, index)}: a constant image cannot be used")
            draw = np.random.default_rng([config.seed, index, 3])
            images = [clean]
            stats = [intensity_stats(degraded_input(config, clean, draw, span))]
        samples.append(Sample(images, stats, span))
    return samples


def _resolve(config: DenoiseConfig, samples: list[Sample], data: Any) -> DenoiseConfig:
    """Fill in dimensions, channels and the patch size: the asked patch, capped at the median
    image size and rounded down to a multiple of the network's divisor (smaller images are
    padded when cropped: :func:`crop_window`), so one small image does not shrink every crop."""
    first = samples[0].images[0]
    dims, channels = data.spatial_dims, first.shape[0]
    if config.spatial_dims not in (None, dims):
        raise ConfigError(f"the config says {config.spatial_dims}D but the data is {dims}D")
    config = dataclasses.replace(config, spatial_dims=dims, in_channels=channels)
    divisor = build_denoiser(config).required_divisor
    median = np.median([s.images[0].shape[1:] for s in samples], axis=0).astype(int)
    patch = []
    for want, size, div in zip(config.resolved_patch(), median, divisor, strict=True):
        fitted = (min(int(want), int(size)) // div) * div
        if fitted < div:
            raise DatasetError(
                f"the images (median shape {tuple(median)}) are smaller than the network's "
                f"divisor {tuple(divisor)}"
            )
        patch.append(fitted)
    return dataclasses.replace(config, patch_size=tuple(patch))


def crop_window(
    images: list[np.ndarray], patch: tuple[int, ...], rng: np.random.Generator
) -> list[np.ndarray]:
    """The same random ``patch`` window of every image ``(C, *spatial)``; an image smaller than
    the patch along an axis is first padded symmetrically (mirrored, as at inference) to it."""
    shape = images[0].shape[1:]
    deficits = [max(p - s, 0) for s, p in zip(shape, patch, strict=True)]
    pads = [(d // 2, d - d // 2) for d in deficits]
    if any(deficits):
        images = [np.pad(a, [(0, 0), *pads], mode="symmetric") for a in images]
        shape = images[0].shape[1:]
    corner = [int(rng.integers(0, s - p + 1)) for s, p in zip(shape, patch, strict=True)]
    window = (slice(None), *(slice(c, c + p) for c, p in zip(corner, patch, strict=True)))
    return [a[window] for a in images]


class DenoiseBatches:
    """An epoch's batches of ``(input, target)`` crops, normalised, as float32 tensors."""

    def __init__(self, samples: list[Sample], config: DenoiseConfig) -> None:
        self.samples, self.config = samples, config

    def _crop(self, rng: np.random.Generator, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        crops = crop_window(sample.images, self.config.patch_size, rng)
        if self.config.mode == "n2n":
            first = int(rng.integers(0, 2))  # either realisation may be the input
            (low, scale), second = sample.stats[first], 1 - first
            x, y = crops[first], crops[second]
        else:
            (low, scale), y = sample.stats[0], crops[0]
            x = degraded_input(self.config, y, rng, sample.data_range)
        flips = [axis + 1 for axis in range(y.ndim - 1) if rng.random() < 0.5]
        x, y = ((a - low) / scale for a in (x, y))
        return np.flip(x, flips), np.flip(y, flips)

    def __call__(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng([self.config.seed, epoch, 5])
        for _ in range(self.config.steps_per_epoch):
            picks = rng.integers(0, len(self.samples), self.config.batch_size)
            pairs = [self._crop(rng, self.samples[int(i)]) for i in picks]
            x = np.stack([p[0] for p in pairs]).astype(np.float32)
            y = np.stack([p[1] for p in pairs]).astype(np.float32)
            yield torch.from_numpy(x), torch.from_numpy(y)


def denoise_loss(pred: torch.Tensor, target: torch.Tensor, name: str) -> torch.Tensor:
    """L1, L2, ``1 - SSIM`` (data range 1 on normalised images, whole map) or their mix."""
    if name == "l1":
        return F.l1_loss(pred, target)
    if name == "l2":
        return F.mse_loss(pred, target)
    dissimilarity = 1 - ssim_torch(pred, target, data_range=1.0, crop=False).mean()
    if name == "ssim":
        return dissimilarity
    return SSIM_WEIGHT * dissimilarity + (1 - SSIM_WEIGHT) * F.l1_loss(pred, target)


def _validation_row(
    model: torch.nn.Module, config: DenoiseConfig, val: list[tuple[np.ndarray, np.ndarray]]
) -> dict[str, float]:
    """Mean PSNR of the denoised and of the noisy held-out inputs against their references."""
    if not val:
        return {"val_psnr": math.nan, "val_psnr_input": math.nan}
    denoised, noisy = [], []
    for noisy_input, reference in val:
        span = config.val_data_range or float(reference.max() - reference.min())
        out = denoise_array(model, config, noisy_input)
        denoised.append(psnr(reference, out, data_range=span))
        noisy.append(psnr(reference, noisy_input, data_range=span))
    return {"val_psnr": float(np.mean(denoised)), "val_psnr_input": float(np.mean(noisy))}


def _validation_pairs(
    samples: list[Sample], config: DenoiseConfig
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(input, reference)`` per held-out case: a fixed noise draw (or the thick-slice
    simulation) and the clean image, or (n2n) the first realisation and the second."""
    if config.mode == "n2n":
        return [(s.images[0], s.images[1]) for s in samples]
    pairs = []
    for i, s in enumerate(samples):
        draw = np.random.default_rng([config.seed, i, 7])
        pairs.append((degraded_input(config, s.images[0], draw, s.data_range), s.images[0]))
    return pairs


def split_cases(count: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded ``(train, val)`` case indices: ``round(val_fraction * count)`` held out, at
    least one when the fraction is > 0 and there are two cases or more, and one kept for
    training.

    Example:
        >>> split_cases(5, 0.2, 0)[1].__len__()
        1
    """
    order = np.random.default_rng([seed, 11]).permutation(count).tolist()
    held = 0 if val_fraction == 0 or count < 2 else max(1, round(val_fraction * count))
    held = min(held, count - 1)
    return sorted(order[held:]), sorted(order[:held])


def _clear_run(run_dir: Path) -> None:
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)


def fit_denoiser(
    data: Any,
    out: str | os.PathLike[str],
    config: DenoiseConfig | None = None,
    *,
    epochs: int | None = None,
    time_budget_s: float | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    amp: bool | None = None,
    progress: bool = True,
) -> RunResult:
    """Train a residual denoiser into ``out`` (``config.json``, ``checkpoint_{best,latest}.pt``,
    ``log.csv``, ``curves.png``).

    Args:
        data: a pairs folder, a dataset folder (``medseg.enhance.data``) or a source object.
        out: the run folder.
        config: the settings (default ``DenoiseConfig()``); dimensions, channels and patch
            are resolved from the data and saved.
        epochs: overrides ``config.epochs`` (an upper bound with a time budget).
        time_budget_s: seconds of training; the cosine schedule follows the clock.
        resume: continue ``out`` (the same config).
        overwrite: replace a previous run's files in ``out``.
        device: "cpu", "cuda" or None (CUDA when available).
        amp: bf16 autocast; None: where it is faster.

    Raises:
        DatasetError: unreadable data, missing clean images (supervised), identical or
            mismatched noise2noise pairs.
        ConfigError: existing checkpoints without ``resume``/``overwrite``; bad settings.
    """
    config = config or DenoiseConfig()
    source = open_denoise_data(data, noise=config.noise, seed=config.seed)
    if not source.case_ids:
        raise DatasetError(f"{data}: no cases")
    train_idx, val_idx = split_cases(len(source.case_ids), config.val_fraction, config.seed)
    train, val = _load_samples(source, train_idx, config), _load_samples(source, val_idx, config)
    config = _resolve(config, train + val, source)
    run_dir = Path(out)
    if overwrite and not resume:
        _clear_run(run_dir)
    dev = resolve_device(device)
    epochs = config.epochs if epochs is None else epochs
    task = denoise_task(config, DenoiseBatches(train, config), _validation_pairs(val, config), dev)
    log.info(
        "denoiser (%s, %s): %d training and %d validation cases",
        config.mode,
        config.loss,
        len(train),
        len(val),
    )
    return run_training(
        task,
        run_dir,
        epochs=epochs,
        use_bf16=bf16_supported(dev) if amp is None else amp,
        time_budget_s=time_budget_s,
        resume=resume,
        progress=progress,
        description=f"denoise {config.mode}",
    )


def denoise_task(
    config: DenoiseConfig,
    batches: DenoiseBatches,
    val: list[tuple[np.ndarray, np.ndarray]],
    dev: torch.device,
) -> Task:
    """The denoising task on the engine: AdamW, cosine schedule, validation PSNR."""
    torch.manual_seed(config.seed)
    model = build_denoiser(config).to(dev)
    optimizer = OPTIMIZERS.build(
        "adamw", model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    total = config.epochs * config.steps_per_epoch

    def loss(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = (t.to(dev) for t in batch)
        pred = model(x)
        with autocast(dev, False):
            return denoise_loss(pred.float(), y, config.loss)

    def set_learning_rate(step: int, budget_fraction: float | None) -> None:
        factor = run_lr_factor(step, total, "cosine", budget_fraction)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * factor

    def score(row: dict[str, Any]) -> float:
        value = row.get("val_psnr", math.nan)
        return value if math.isfinite(value) else -row["train_loss"]

    return Task(
        model=model,
        optimizer=optimizer,
        batches=batches,
        loss=loss,
        set_learning_rate=set_learning_rate,
        validate=lambda use_bf16, _: _validation_row(model, config, val),
        score=score,
        checkpoint={"denoise_config": config.to_dict()},
        files={"config.json": config.to_dict()},
        compatible=lambda checkpoint: checkpoint.get("denoise_config") == config.to_dict(),
        curves=PANELS,
        progress_keys=("train_loss", "val_psnr"),
        device=dev,
    )
