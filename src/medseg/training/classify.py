"""Training image classifiers and regressors: whole images in, one label (or value) out.

The loop mirrors segmentation's (``fit``): an epoch or time budget, bf16 autocast where the
device supports it, batched augmentation on tensors (the same presets), validation each epoch,
``checkpoint_latest.pt`` / ``checkpoint_best.pt`` written atomically, ``--resume`` continuing
exactly, a CSV log and a PNG of the curves. Class imbalance is handled by a class-balanced
sampler (default) or class-weighted cross-entropy. A checkpoint holds the
:class:`ClassifierConfig`, so a model is rebuilt from the file alone.

With a time budget the learning-rate schedule runs on the fraction of the budget used, so the
rate reaches its floor when the time is up rather than at an epoch count that is never reached.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from medseg.device import bf16_supported, resolve_device
from medseg.errors import ConfigError, MedsegError
from medseg.fileutil import atomic_path, write_json_atomic
from medseg.losses.margin import capsule_loss
from medseg.metrics.classification import roc_auc
from medseg.nets import build_network
from medseg.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from medseg.training.loop import write_log
from medseg.training.schedule import lr_factor
from medseg.training.transfer import (
    freeze_backbone,
    keep_frozen_in_eval,
    load_pretrained,
    parameter_groups,
)
from medseg.transforms import build_transform

log = logging.getLogger(__name__)

TASKS = ("classification", "regression")
LOSSES = ("auto", "ce", "mse", "l1", "margin")
CLASS_WEIGHTING = ("sampler", "loss", "none")
AUGMENTATIONS = ("none", "light", "nnunet_default")
GRAD_CLIP = 12.0
MAX_SKIPPED_SHARE = 0.05  # of an epoch's steps lost to bf16 overflow before switching to float32


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that defines a classification run; saved in every checkpoint and ``config.json``.

    ``num_outputs`` is the number of classes (classification) or of continuous targets
    (regression). ``image_shape`` is the spatial shape trained on; ``intensity_mean/std`` (per
    channel) and ``target_mean/std`` (regression) are measured on the training images.
    """

    network: str
    spatial_dims: int
    in_channels: int
    num_outputs: int
    image_shape: tuple[int, ...]
    task: str = "classification"
    class_names: tuple[str, ...] = ()
    network_config: dict[str, Any] = field(default_factory=dict)
    loss: str = "auto"
    class_weighting: str = "sampler"
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    epochs: int = 30
    lr_schedule: str = "cosine"
    augmentation: str = "light"
    intensity_mean: tuple[float, ...] = ()
    intensity_std: tuple[float, ...] = ()
    target_mean: tuple[float, ...] = ()
    target_std: tuple[float, ...] = ()
    freeze: str = "none"
    backbone_lr_factor: float = 1.0
    pretrained: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [("task", self.task, TASKS), ("loss", self.loss, LOSSES),
                  ("class_weighting", self.class_weighting, CLASS_WEIGHTING),
                  ("augmentation", self.augmentation, AUGMENTATIONS), ("freeze", self.freeze, ("none", "backbone")),
                  ("optimizer", self.optimizer, ("adamw", "sgd"))]
        for name, value, valid in checks:
            if value not in valid:
                raise ConfigError(f"{name} '{value}' is not one of {', '.join(valid)}")
        if self.batch_size < 1 or self.learning_rate <= 0:
            raise ConfigError("batch_size must be >= 1 and learning_rate > 0")

    @property
    def resolved_loss(self) -> str:
        if self.loss != "auto":
            return self.loss
        if self.network == "capsnet":
            return "margin"
        return "ce" if self.task == "classification" else "mse"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> ClassifierConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown classifier config key(s) {unknown}")
        values = {k: tuple(v) if isinstance(v, list) and k != "network_config" else v for k, v in data.items()}
        try:
            return cls(**values)
        except TypeError as err:
            raise ConfigError(f"{source}: incomplete classifier config ({err})") from err


@dataclass(frozen=True)
class ClassifierFitResult:
    run_dir: Path
    epochs: int
    steps: int
    best_metric: float
    seconds: float
    stopped_by: str  # "epochs" | "time_budget"


def config_for(data: Any, network: str, **options: Any) -> ClassifierConfig:
    """A config for training ``network`` on ``data`` (a ``ClassificationSet``), with the
    intensity (and target) statistics measured on it. ``options`` are config fields."""
    axes = (0, *range(2, data.images.ndim))
    mean = data.images.mean(axis=axes, dtype=np.float64)
    std = data.images.std(axis=axes, dtype=np.float64)
    extra: dict[str, Any] = {}
    if data.task == "regression":
        targets = np.asarray(data.labels, dtype=np.float64).reshape(len(data.labels), -1)
        extra = {"target_mean": tuple(targets.mean(0).tolist()),
                 "target_std": tuple(np.maximum(targets.std(0), 1e-8).tolist())}
    num_outputs = data.num_classes if data.task == "classification" else int(np.asarray(data.labels).reshape(
        len(data.labels), -1).shape[1])
    if data.task == "classification" and num_outputs < 2:
        raise ConfigError(f"classification needs at least 2 classes, the training data has {num_outputs}")
    base = dict(network=network, spatial_dims=data.spatial_dims, in_channels=data.num_channels,
                num_outputs=num_outputs, image_shape=tuple(int(s) for s in data.images.shape[2:]), task=data.task,
                class_names=tuple(data.class_names), intensity_mean=tuple(mean.tolist()),
                intensity_std=tuple(np.maximum(std, 1e-8).tolist()), **extra)
    if network in ("vit", "capsnet"):  # their weights depend on the input size
        options.setdefault("network_config", {})
        options["network_config"] = {"image_size": base["image_shape"], **options["network_config"]}
    return ClassifierConfig(**{**base, **options})


def build_classifier(config: ClassifierConfig) -> nn.Module:
    """The config's network, freshly initialised (``(B, C, *spatial) -> (B, num_outputs)``)."""
    return build_network(config.network, spatial_dims=config.spatial_dims, in_channels=config.in_channels,
                         out_channels=config.num_outputs, **config.network_config)


def load_classifier(path: str | os.PathLike[str]) -> tuple[nn.Module, ClassifierConfig, dict[str, Any]]:
    """Rebuild a trained classifier (eval mode) from its checkpoint alone.

    Returns:
        ``(model, config, checkpoint)``.

    Raises:
        ConfigError: missing file, or not a classifier checkpoint.
    """
    data = load_checkpoint(path, kind="classification")
    config = ClassifierConfig.from_dict(data["classifier_config"], source=str(path))
    model = build_classifier(config)
    model.load_state_dict(data["network_state"])
    return model.eval(), config, data


def normalize_images(images: np.ndarray | torch.Tensor, config: ClassifierConfig) -> torch.Tensor:
    """``(B, C, *spatial)`` float tensor, z-scored per channel with the training statistics."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images, dtype=torch.float32)
    if x.ndim != 2 + config.spatial_dims or x.shape[1] != config.in_channels:
        raise ConfigError(f"images of shape {tuple(x.shape)} do not match the model: expected (N, "
                          f"{config.in_channels}, {config.spatial_dims} spatial axes)")
    view = (1, -1) + (1,) * config.spatial_dims
    mean = torch.tensor(config.intensity_mean or [0.0] * config.in_channels).view(view)
    std = torch.tensor(config.intensity_std or [1.0] * config.in_channels).view(view)
    return (x - mean) / std


def scores_from_outputs(outputs: torch.Tensor, config: ClassifierConfig) -> torch.Tensor:
    """Network outputs to class probabilities ``(B, K)`` (softmax; capsule lengths normalised to
    sum 1) or to regression values in the original units ``(B, T)``."""
    outputs = outputs.float()
    if config.task == "regression":
        mean = torch.tensor(config.target_mean or [0.0] * config.num_outputs)
        std = torch.tensor(config.target_std or [1.0] * config.num_outputs)
        return outputs * std + mean
    if config.resolved_loss == "margin":
        return outputs / outputs.sum(1, keepdim=True).clamp_min(1e-8)
    return outputs.softmax(1)


@torch.no_grad()
def predict_scores(model: nn.Module, images: np.ndarray, config: ClassifierConfig, *, device: torch.device | str = "cpu",
                   batch_size: int = 64, amp: bool | None = None) -> np.ndarray:
    """Probabilities ``(N, K)`` (or regression values ``(N, T)``) for ``(N, C, *spatial)`` images."""
    dev = torch.device(device)
    use_amp = bf16_supported(dev) if amp is None else amp
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize_images(images[start:start + batch_size], config).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            out.append(scores_from_outputs(model(x), config).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, config.num_outputs), np.float32)


def _loss(outputs: torch.Tensor, targets: torch.Tensor, config: ClassifierConfig,
          weights: torch.Tensor | None) -> torch.Tensor:
    kind = config.resolved_loss
    outputs = outputs.float()
    if kind == "ce":
        return F.cross_entropy(outputs, targets, weight=weights)
    if kind == "margin":
        return capsule_loss(outputs, targets)
    if kind == "mse":
        return F.mse_loss(outputs, targets)
    return F.l1_loss(outputs, targets)


def _unit_range(x: torch.Tensor) -> torch.Tensor:
    """Each image scaled to [0, 1] (a reconstruction decoder ends in a sigmoid)."""
    flat = x.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-8)).view_as(x)


def _targets(labels: np.ndarray, config: ClassifierConfig) -> torch.Tensor:
    if config.task == "classification":
        return torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    y = torch.as_tensor(np.asarray(labels, dtype=np.float32)).reshape(len(labels), -1)
    return (y - torch.tensor(config.target_mean)) / torch.tensor(config.target_std)


def validation_metrics(scores: np.ndarray, labels: np.ndarray, config: ClassifierConfig) -> dict[str, float]:
    """Accuracy and ROC AUC (classification), MAE and RMSE (regression), from predicted scores."""
    if config.task == "regression":
        err = scores.reshape(len(scores), -1) - np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
        return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean()))}
    labels = np.asarray(labels).reshape(-1)
    present = sorted(set(labels.tolist()))
    auc = math.nan
    if len(present) >= 2:
        if len(present) == config.num_outputs:
            auc = roc_auc(labels, scores, labels=list(range(config.num_outputs)))
        elif config.num_outputs == 2:
            auc = roc_auc(labels, scores[:, 1], labels=[0, 1])
    return {"accuracy": float((scores.argmax(1) == labels).mean()), "auc": float(auc)}


def selection_metric(metrics: dict[str, float], config: ClassifierConfig) -> float:
    """Higher is better: AUC (accuracy where AUC is undefined), or minus MAE for regression."""
    if config.task == "regression":
        return -metrics["mae"]
    return metrics["auc"] if np.isfinite(metrics["auc"]) else metrics["accuracy"]


def _epoch_order(labels: np.ndarray, config: ClassifierConfig, generator: torch.Generator) -> torch.Tensor:
    n = len(labels)
    if config.task == "classification" and config.class_weighting == "sampler":
        counts = np.bincount(np.asarray(labels).reshape(-1), minlength=config.num_outputs).astype(np.float64)
        weights = 1.0 / np.maximum(counts, 1)[np.asarray(labels).reshape(-1)]
        return torch.multinomial(torch.as_tensor(weights), n, replacement=True, generator=generator)
    return torch.randperm(n, generator=generator)


def _class_loss_weights(labels: np.ndarray, config: ClassifierConfig) -> torch.Tensor | None:
    if config.task != "classification" or config.class_weighting != "loss":
        return None
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=config.num_outputs).astype(np.float64)
    weights = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return torch.as_tensor(weights / weights[counts > 0].mean(), dtype=torch.float32)


def fit_classifier(
    train: Any,
    val: Any | None,
    run_dir: str | os.PathLike[str],
    config: ClassifierConfig,
    *,
    epochs: int | None = None,
    time_budget_s: float | None = None,
    resume: bool = False,
    device: str | None = None,
    amp: bool | None = None,
    progress: bool = True,
) -> ClassifierFitResult:
    """Train ``config`` on ``train`` (a ``ClassificationSet``), validating on ``val`` each epoch.

    Writes ``run_dir/{config.json, checkpoint_latest.pt, checkpoint_best.pt, log.csv, curves.png}``.

    Args:
        epochs: overrides ``config.epochs``; with ``time_budget_s`` it is an upper bound.
        time_budget_s: stop before an epoch would overrun this many seconds of training.
        resume: continue from ``checkpoint_latest.pt`` (the config must be the same).
        device: "cpu", "cuda", or None/"auto".
        amp: bf16 autocast; None = where it is faster (CUDA with bf16, AVX-512 BF16 CPUs).

    Raises:
        ConfigError: existing checkpoints without ``resume``; a resumed run with another config;
            training images that do not match the config.
        MedsegError: on Ctrl-C, after saying how to resume (completed epochs are saved).
    """
    run_dir = Path(run_dir)
    latest = run_dir / "checkpoint_latest.pt"
    if latest.exists() and not resume:
        raise ConfigError(f"{run_dir}: run already has checkpoints; pass --resume to continue (or another output)")
    dev = resolve_device(device)
    use_amp = bf16_supported(dev) if amp is None else amp
    total_epochs = epochs if epochs is not None else config.epochs
    torch.manual_seed(config.seed)
    model = build_classifier(config)
    if config.pretrained:
        report = load_pretrained(model, config.pretrained)
        log.info("pretrained weights from %s: %s", config.pretrained, report.summary())
    if config.freeze == "backbone":
        freeze_backbone(model)
    model.to(dev)
    groups = parameter_groups(model, config.learning_rate, config.backbone_lr_factor)
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, momentum=0.9, nesterov=True,
                                                           weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    start_epoch, step, best, rows, elapsed_before = 0, 0, -math.inf, [], 0.0
    if resume and latest.exists():
        ckpt = load_checkpoint(latest, kind="classification")
        if _without_epochs(ckpt.get("classifier_config", {})) != _without_epochs(config.to_dict()):
            raise ConfigError(f"{latest}: checkpoint was trained with another configuration; cannot resume")
        model.load_state_dict(ckpt["network_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        start_epoch, step, best, rows = ckpt["epoch"], ckpt["step"], ckpt["best_metric"], ckpt["log"]
        elapsed_before = ckpt.get("elapsed_seconds", 0.0)
        use_amp = ckpt.get("amp", use_amp)
        set_rng_state(ckpt["rng_state"])
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", config.to_dict())

    images = train.images
    if images.shape[1] != config.in_channels:
        raise ConfigError(f"training images have {images.shape[1]} channels, the config {config.in_channels}")
    targets = _targets(train.labels, config)
    loss_weights = _class_loss_weights(train.labels, config)
    if loss_weights is not None:
        loss_weights = loss_weights.to(dev)
    augment = None if config.augmentation == "none" else build_transform(config.augmentation,
                                                                         spatial_dims=config.spatial_dims)
    reconstructs = config.resolved_loss == "margin" and getattr(model, "decoder", None) is not None
    steps_per_epoch = max(1, math.ceil(len(images) / config.batch_size))
    total_steps = total_epochs * steps_per_epoch
    started = time.perf_counter()
    stopped_by = "epochs"
    epoch_seconds: list[float] = []

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - started

    # with a time budget the epoch count is only an upper bound: no epoch total, so no false ETA
    bar = tqdm(total=None if time_budget_s else total_epochs, initial=start_epoch, unit="epoch", disable=not progress,
               desc=f"train {config.network}" + (f" ({time_budget_s:.0f} s budget)" if time_budget_s else ""))
    try:
        for epoch in range(start_epoch, total_epochs):
            if time_budget_s is not None and epoch_seconds and elapsed() + np.mean(epoch_seconds[-3:]) > time_budget_s:
                stopped_by = "time_budget"
                break
            epoch_start = time.perf_counter()
            generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
            if augment is not None:
                augment.reseed(config.seed * 7919 + epoch)
            order = _epoch_order(train.labels, config, generator)
            model.train()
            keep_frozen_in_eval(model)
            losses, norms, skipped = [], [], 0
            for start in range(0, len(order), config.batch_size):
                index = order[start:start + config.batch_size]
                if len(index) < 2 and len(order) > 1:
                    continue  # a batch of one breaks batch norm
                x = normalize_images(images[index.numpy()], config).to(dev)
                y = targets[index].to(dev)
                if augment is not None:
                    x, _ = augment(x)
                t = min(elapsed() / time_budget_s, 1.0) if time_budget_s else step / max(total_steps, 1)
                factor = lr_factor(int(t * 1_000_000), 1_000_000, config.lr_schedule)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                    if reconstructs:
                        outputs, reconstruction = model.forward_with_reconstruction(x, y)
                    else:
                        outputs = model(x)
                if reconstructs:  # capsule network: margin loss + 0.0005 x reconstruction of the [0, 1] image
                    loss = capsule_loss(outputs.float(), y, reconstruction.float(), _unit_range(x))
                else:
                    loss = _loss(outputs, y, config, loss_weights)
                loss.backward()
                norm = float(nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], GRAD_CLIP))
                if math.isfinite(norm):
                    norms.append(norm)
                    optimizer.step()
                else:  # an overflow in a low-precision backward: drop this step, as a GradScaler would
                    optimizer.zero_grad(set_to_none=True)
                    skipped += 1
                losses.append(float(loss.detach()))
                step += 1
            row: dict[str, Any] = {"epoch": epoch + 1, "step": step,
                                   "train_loss": float(np.mean(losses)) if losses else math.nan,
                                   "lr": optimizer.param_groups[-1]["lr"],
                                   "grad_norm": float(np.mean(norms)) if norms else 0.0, "skipped_steps": skipped}
            if skipped:
                log.warning("epoch %d: %d step(s) had non-finite gradients and were skipped", epoch + 1, skipped)
            row["bf16"] = use_amp
            if use_amp and skipped > MAX_SKIPPED_SHARE * steps_per_epoch:
                # bf16's 8-bit mantissa can blow up batch-norm gradients on tiny feature maps (ResNet-18
                # at 28^3 ends at 1 voxel): measured up to 18 % of steps lost; float32 loses none
                use_amp = False
                log.warning("bf16 overflowed in %d of %d steps; training continues in float32", skipped,
                            steps_per_epoch)
            if val is not None and len(val.labels):
                scores = predict_scores(model, val.images, config, device=dev, amp=use_amp)
                with torch.no_grad():
                    raw = torch.as_tensor(scores)
                    if config.task == "classification" and config.resolved_loss == "ce":
                        row["val_loss"] = float(F.nll_loss(raw.clamp_min(1e-8).log(), _targets(val.labels, config)))
                row.update({f"val_{k}": v for k, v in validation_metrics(scores, val.labels, config).items()})
                metric = selection_metric({k[4:]: v for k, v in row.items() if k.startswith("val_")}, config)
            else:
                metric = -row["train_loss"]
            seconds = time.perf_counter() - epoch_start
            epoch_seconds.append(seconds)
            row["epoch_seconds"] = seconds
            rows.append(row)
            is_best = metric > best
            best = max(best, metric)
            state = {"network_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
                     "classifier_config": config.to_dict(), "epoch": epoch + 1, "step": step,
                     "best_metric": best, "log": rows, "rng_state": rng_state(), "elapsed_seconds": elapsed(),
                     "amp": use_amp}
            save_checkpoint(latest, **state)
            if is_best:
                save_checkpoint(run_dir / "checkpoint_best.pt", **state)
            write_log(run_dir / "log.csv", rows)
            plot_classifier_curves(rows, run_dir / "curves.png", config)
            bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k in ("train_loss", "val_auc", "val_accuracy",
                                                                             "val_mae")})
            bar.update(1)
            if time_budget_s is not None and elapsed() > time_budget_s:
                stopped_by = "time_budget"
                break
    except KeyboardInterrupt:
        bar.close()
        raise MedsegError(f"interrupted; epochs completed so far are saved in {latest}. "
                          f"Continue with the same command plus --resume") from None
    bar.close()
    completed = rows[-1]["epoch"] if rows else start_epoch
    return ClassifierFitResult(run_dir, completed, step, best, elapsed() - elapsed_before, stopped_by)


def _without_epochs(config: dict[str, Any]) -> dict[str, Any]:
    """Resuming may extend the epoch count; everything else must match."""
    return {k: v for k, v in config.items() if k != "epochs"}


def plot_classifier_curves(rows: list[dict[str, Any]], path: Path, config: ClassifierConfig) -> None:
    """Loss (train, validation) and the validation metric per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(epochs, [r["train_loss"] for r in rows], label="train")
    if any("val_loss" in r for r in rows):
        axes[0].plot(epochs, [r.get("val_loss", math.nan) for r in rows], label="validation")
    axes[0].set_title("loss")
    axes[0].legend(loc="upper right")
    names = ["val_auc", "val_accuracy"] if config.task == "classification" else ["val_mae", "val_rmse"]
    for name in names:
        if any(name in r for r in rows):
            axes[1].plot(epochs, [r.get(name, math.nan) for r in rows], label=name[4:])
    axes[1].set_title("validation")
    if config.task == "classification":
        axes[1].set_ylim(0, 1)
    if axes[1].lines:
        axes[1].legend(loc="lower right")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
