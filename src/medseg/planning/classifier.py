"""``ClassifierConfig``: everything that defines an image-classification (or regression) run.

The classification counterpart of ``Plan``: a frozen dataclass saved as ``config.json`` and in
every checkpoint, so a model is rebuilt from its checkpoint alone. :func:`config_for` measures
the intensity (and target) statistics on the training data; :func:`normalize_images` and
:func:`scores_from_outputs` are the model's input and output conventions, shared by training
and inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medseg.device import autocast
from medseg.errors import ConfigError
from medseg.nets.registry import image_classifiers
from medseg.planning.config_io import config_from_dict, config_to_dict, json_values

TASKS = ("classification", "regression")
LOSSES = ("auto", "ce", "mse", "l1", "margin")
CLASS_WEIGHTING = ("sampler", "loss", "none")
AUGMENTATIONS = ("none", "light", "nnunet_default")

#: The registered loss (``medseg.losses``) behind each ``ClassifierConfig.loss`` name.
LOSS_NAMES = {"ce": "classification_ce", "mse": "mse", "l1": "l1", "margin": "margin"}


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
        checks = [
            ("task", self.task, TASKS),
            ("loss", self.loss, LOSSES),
            ("class_weighting", self.class_weighting, CLASS_WEIGHTING),
            ("augmentation", self.augmentation, AUGMENTATIONS),
            ("freeze", self.freeze, ("none", "backbone")),
            ("optimizer", self.optimizer, ("adamw", "sgd")),
        ]
        for name, value, valid in checks:
            if value not in valid:
                raise ConfigError(f"{name} '{value}' is not one of {', '.join(valid)}")
        if self.network not in image_classifiers():
            raise ConfigError(
                f"network '{self.network}' is not a whole-image classifier; use one of "
                f"{', '.join(image_classifiers())} (survival models: medseg survival)"
            )
        if self.batch_size < 1 or not self.learning_rate > 0:
            raise ConfigError("batch_size must be >= 1 and learning_rate > 0")
        object.__setattr__(self, "network_config", json_values(dict(self.network_config)))

    @property
    def resolved_loss(self) -> str:
        """``loss`` with ``auto`` decided: the margin loss for ``capsnet``, cross-entropy for
        classification, MSE for regression."""
        if self.loss != "auto":
            return self.loss
        if self.network == "capsnet":
            return "margin"
        return "ce" if self.task == "classification" else "mse"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> ClassifierConfig:
        return config_from_dict(cls, data, source=source, kind="classifier config")


def config_for(data: Any, network: str, **options: Any) -> ClassifierConfig:
    """A config for training ``network`` on ``data`` (a ``ClassificationSet``), with the
    intensity (and target) statistics measured on it. ``options`` are config fields."""
    axes = (0, *range(2, data.images.ndim))
    mean = data.images.mean(axis=axes, dtype=np.float64)
    std = data.images.std(axis=axes, dtype=np.float64)
    extra: dict[str, Any] = {}
    if data.task == "regression":
        targets = np.asarray(data.labels, dtype=np.float64).reshape(len(data.labels), -1)
        extra = {
            "target_mean": tuple(targets.mean(0).tolist()),
            "target_std": tuple(np.maximum(targets.std(0), 1e-8).tolist()),
        }
    num_outputs = (
        data.num_classes
        if data.task == "classification"
        else int(np.asarray(data.labels).reshape(len(data.labels), -1).shape[1])
    )
    if data.task == "classification" and num_outputs < 2:
        raise ConfigError(
            f"classification needs at least 2 classes, the training data has {num_outputs}"
        )
    base = dict(
        network=network,
        spatial_dims=data.spatial_dims,
        in_channels=data.num_channels,
        num_outputs=num_outputs,
        image_shape=tuple(int(s) for s in data.images.shape[2:]),
        task=data.task,
        class_names=tuple(data.class_names),
        intensity_mean=tuple(mean.tolist()),
        intensity_std=tuple(np.maximum(std, 1e-8).tolist()),
        **extra,
    )
    if network in ("vit", "capsnet"):  # their weights depend on the input size
        options.setdefault("network_config", {})
        options["network_config"] = {"image_size": base["image_shape"], **options["network_config"]}
    return ClassifierConfig(**{**base, **options})


def normalize_images(images: np.ndarray | torch.Tensor, config: ClassifierConfig) -> torch.Tensor:
    """``(B, C, *spatial)`` float tensor, z-scored per channel with the training statistics."""
    x = torch.as_tensor(
        np.asarray(images) if not isinstance(images, torch.Tensor) else images, dtype=torch.float32
    )
    if x.ndim != 2 + config.spatial_dims or x.shape[1] != config.in_channels:
        raise ConfigError(
            f"images of shape {tuple(x.shape)} do not match the model: expected (N, "
            f"{config.in_channels}, {config.spatial_dims} spatial axes)"
        )
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
def score_images(
    model: torch.nn.Module,
    images: np.ndarray,
    config: ClassifierConfig,
    *,
    device: torch.device,
    use_bf16: bool,
    batch_size: int = 64,
) -> torch.Tensor:
    """:func:`scores_from_outputs` of ``(N, C, *spatial)`` images, in batches, the model in eval
    mode (its mode restored afterwards): ``(N, K)`` float32 on the CPU. Shared by validation
    during training and by ``medseg.inference.classify.predict_scores``."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize_images(images[start : start + batch_size], config).to(device)
        with autocast(device, use_bf16):
            out.append(scores_from_outputs(model(x), config).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros((0, config.num_outputs))


def training_targets(labels: np.ndarray, config: ClassifierConfig) -> torch.Tensor:
    """What the loss compares with: class indices ``(N,)`` int64, or regression targets
    ``(N, T)`` standardised with the training statistics."""
    if config.task == "classification":
        return torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    y = torch.as_tensor(np.asarray(labels, dtype=np.float32)).reshape(len(labels), -1)
    return (y - torch.tensor(config.target_mean)) / torch.tensor(config.target_std)
