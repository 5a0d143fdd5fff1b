"""Training the centre-voxel patch classifier (:mod:`medseg.nets.patch_classifier`) on the
engine: every batch is ``batch_size`` patches drawn around voxels of each class equally often
(uniform sampling would see mostly background), the loss is cross-entropy of the centre
voxels' labels, and each epoch ends with the mean foreground Dice of the validation images
segmented by the fully convolutional equivalent (``segment(method="dense")``), which also
picks ``checkpoint_best.pt``.

Images are ``(C, *spatial)`` arrays, label maps ``(*spatial)`` integers; each image is
z-scored per channel (:func:`normalize_image`) and padded by ``patch_size // 2`` replicating
its edges, as :meth:`PatchClassifier.segment` does at inference.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medseg.device import bf16_supported, resolve_device
from medseg.errors import ConfigError, DatasetError
from medseg.nets.patch_classifier import PatchClassifier, pad_for_patches
from medseg.training.checkpoint import load_checkpoint
from medseg.training.engine import RunResult, Task, run_training
from medseg.training.schedule import OPTIMIZERS, run_lr_factor


@dataclass
class PatchTrainingConfig:
    """Everything that rebuilds and retrains a patch classifier (saved as ``config.json``
    and in every checkpoint).

    Attributes:
        spatial_dims, in_channels, num_classes: the data.
        patch_size: patch edge (odd); None: 33 in 2D, 17 in 3D.
        network_config: further :class:`PatchClassifier` options (features, hidden, norm,
            dropout).
        batch_size: patches per step; batches_per_epoch: steps per epoch; epochs.
        learning_rate, weight_decay: AdamW; the rate follows a cosine to 0 over the run.
        balanced: draw every class equally often (False: voxels uniformly).
        seed: weights and patch draws.
    """

    spatial_dims: int = 2
    in_channels: int = 1
    num_classes: int = 2
    patch_size: int | None = None
    network_config: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 128
    batches_per_epoch: int = 50
    epochs: int = 20
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    balanced: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("in_channels", "batch_size", "batches_per_epoch", "epochs")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"patch training {name} must be at least 1")
        if self.num_classes < 2 or self.spatial_dims not in (1, 2, 3):
            raise ConfigError("patch training needs num_classes >= 2 and spatial_dims 1, 2 or 3")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchTrainingConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"unknown patch training setting(s) {unknown}; valid: {sorted(names)}"
            )
        return cls(**data)

    def build_network(self) -> PatchClassifier:
        return PatchClassifier(
            self.spatial_dims,
            self.in_channels,
            self.num_classes,
            patch_size=self.patch_size,
            **self.network_config,
        )


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """``(C, *spatial)`` z-scored per channel, as float32."""
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))
    axes = tuple(range(1, x.dim()))
    mean, std = x.mean(dim=axes, keepdim=True), x.std(dim=axes, keepdim=True)
    return (x - mean) / std.clamp_min(1e-6)


def _check_cases(
    images: Sequence[np.ndarray], labels: Sequence[np.ndarray], config: PatchTrainingConfig
) -> None:
    if len(images) != len(labels) or not images:
        raise DatasetError(f"{len(images)} images for {len(labels)} label maps (need >= 1 each)")
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        if image.ndim != config.spatial_dims + 1 or image.shape[0] != config.in_channels:
            raise DatasetError(
                f"case {i}: image shape {image.shape} is not ({config.in_channels}, "
                f"{config.spatial_dims} spatial axes)"
            )
        if tuple(label.shape) != tuple(image.shape[1:]):
            raise DatasetError(f"case {i}: labels {label.shape} != image {image.shape[1:]}")
        if label.min() < 0 or label.max() >= config.num_classes:
            raise DatasetError(
                f"case {i}: labels {int(label.min())}..{int(label.max())} outside "
                f"0..{config.num_classes - 1}"
            )


class PatchBatches:
    """Per epoch, ``batches_per_epoch`` draws of (case, voxel, label) with every class equally
    likely (then a voxel uniformly among that class's), seeded by the epoch; :meth:`prepare`
    cuts the patches around them from the padded images."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        config: PatchTrainingConfig,
        device: torch.device,
    ) -> None:
        _check_cases(images, labels, config)
        self.config, self.device = config, device
        self.patch = config.build_network().patch_size
        self.padded = [pad_for_patches(normalize_image(i)[None], self.patch)[0] for i in images]
        self.shapes = [tuple(label.shape) for label in labels]
        flat = [np.asarray(label).reshape(-1) for label in labels]
        self.cases = np.concatenate([np.full(f.size, i, np.int32) for i, f in enumerate(flat)])
        self.voxels = np.concatenate([np.arange(f.size, dtype=np.int64) for f in flat])
        self.labels = np.concatenate(flat).astype(np.int64)
        self.by_class = [np.flatnonzero(self.labels == c) for c in range(config.num_classes)]
        self.present = [c for c, rows in enumerate(self.by_class) if rows.size]

    def __call__(self, epoch: int) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.config.seed * 100_003 + epoch)
        n = self.config.batch_size
        for _ in range(self.config.batches_per_epoch):
            if self.config.balanced:
                classes = rng.choice(self.present, size=n)
                rows = np.array([rng.choice(self.by_class[c]) for c in classes])
            else:
                rows = rng.integers(self.labels.size, size=n)
            yield rows

    def prepare(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        patches = []
        for row in rows:
            case = int(self.cases[row])
            centre = np.unravel_index(int(self.voxels[row]), self.shapes[case])
            window = tuple(slice(int(c), int(c) + self.patch) for c in centre)
            patches.append(self.padded[case][(slice(None), *window)])
        x = torch.stack(patches).to(self.device)
        return x, torch.as_tensor(self.labels[rows]).to(self.device)


def foreground_dice(prediction: np.ndarray, label: np.ndarray, num_classes: int) -> float:
    """Mean Dice over classes ``1..K-1`` (a class absent from both counts 1)."""
    scores = []
    for c in range(1, num_classes):
        p, g = prediction == c, label == c
        total = p.sum() + g.sum()
        scores.append(1.0 if total == 0 else 2.0 * (p & g).sum() / total)
    return float(np.mean(scores))


@torch.no_grad()
def segment_images(
    model: PatchClassifier, images: Sequence[np.ndarray], *, device: torch.device | None = None
) -> list[np.ndarray]:
    """Label maps of ``(C, *spatial)`` images (normalised as in training, dense method)."""
    model.eval()
    dev = device or next(model.parameters()).device
    return [
        model.segment(normalize_image(i)[None].to(dev), method="dense")[0].cpu().numpy()
        for i in images
    ]


def fit_patch_classifier(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    run_dir: str | os.PathLike[str],
    config: PatchTrainingConfig,
    *,
    val: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None,
    time_budget_s: float | None = None,
    resume: bool = False,
    device: str | None = None,
    amp: bool | None = None,
    progress: bool = True,
) -> RunResult:
    """Train a patch classifier on ``images``/``labels``, validating on ``val`` (images,
    labels) by foreground Dice each epoch; writes the run folder as every medseg trainer.

    Raises:
        DatasetError: images and labels that do not match the config or each other.
        ConfigError: existing checkpoints without ``resume``; a resumed run with another config.
    """
    dev = resolve_device(device)
    batches = PatchBatches(images, labels, config, dev)
    torch.manual_seed(config.seed)
    model = config.build_network().to(dev)
    optimizer = OPTIMIZERS.build(
        "adamw", model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    total = config.epochs * config.batches_per_epoch

    def set_learning_rate(step: int, fraction: float | None) -> None:
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * run_lr_factor(step, total, "cosine", fraction)

    def validate(_use_bf16: bool, _rows: list[dict[str, Any]]) -> dict[str, float]:
        if not val:
            return {}
        predictions = segment_images(model, val[0], device=dev)
        pairs = zip(predictions, val[1], strict=True)
        dice = [foreground_dice(p, np.asarray(g), config.num_classes) for p, g in pairs]
        return {"val_dice": float(np.mean(dice))}

    task = Task(
        model=model,
        optimizer=optimizer,
        batches=batches,
        prepare=batches.prepare,
        loss=lambda batch: F.cross_entropy(model(batch[0]).float(), batch[1]),
        set_learning_rate=set_learning_rate,
        validate=validate,
        score=lambda row: row.get("val_dice", -row["train_loss"]),
        checkpoint={"patch_config": config.to_dict()},
        files={"config.json": config.to_dict()},
        compatible=lambda ckpt: _same_config(ckpt, config),
        curves=(("loss", ("train_loss",), "linear"), ("validation", ("val_dice",), "unit")),
        progress_keys=("train_loss", "val_dice"),
        device=dev,
    )
    return run_training(
        task,
        run_dir,
        epochs=config.epochs,
        use_bf16=bf16_supported(dev) if amp is None else amp,
        time_budget_s=time_budget_s,
        resume=resume,
        progress=progress,
        description="train patch_classifier",
    )


def load_patch_classifier(
    path: str | os.PathLike[str],
) -> tuple[PatchClassifier, PatchTrainingConfig]:
    """The trained classifier (eval mode, CPU) and its config, from a checkpoint alone.

    Raises:
        ConfigError: a missing or unreadable file, or one that is not a patch-classifier run's.
        UnsafeFileError: a file that would run code to load.
    """
    data = load_checkpoint(path, kind="weights")
    if "patch_config" not in data or "network_state" not in data:
        raise ConfigError(f"{Path(path)}: not a patch classifier checkpoint (no patch_config)")
    config = PatchTrainingConfig.from_dict(dict(data["patch_config"]))
    model = config.build_network()
    model.load_state_dict(data["network_state"])
    return model.eval(), config


def _same_config(checkpoint: dict[str, Any], config: PatchTrainingConfig) -> bool:
    """Resuming may extend the epoch count; everything else must match."""
    try:
        saved = PatchTrainingConfig.from_dict(dict(checkpoint["patch_config"]))
    except (KeyError, ConfigError, TypeError):
        return False
    return saved.to_dict() | {"epochs": 0} == config.to_dict() | {"epochs": 0}
