"""The configuration of a detection run (``config.json`` and every checkpoint), and the
network it builds, so that a run folder alone rebuilds its model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from medseg.errors import ConfigError
from medseg.nets.centernet import CenterNet, watershed_unet
from medseg.planning.config_io import config_from_dict, config_to_dict

HEADS = ("centernet", "watershed")
INSTANCES = ("labels", "components")
#: How a watershed run turns its maps into instances (``auto``: chosen on validation).
INSTANCE_METHODS = ("distance", "boundary", "auto")
#: Key of the config in every checkpoint.
CONFIG_KEY = "detect_config"


@dataclass(frozen=True)
class DetectConfig:
    """A detection / instance-segmentation model and how to train it.

    Attributes:
        dataset: the dataset folder (nnU-Net v2, MSD or 2D folder).
        head: ``centernet`` (boxes: centre heatmap + size) or ``watershed`` (instances:
            foreground + distance map -> marker watershed).
        instances: ``labels``: the label maps are instance maps (every non-zero value one
            object, all of class 0); ``components``: the objects are the connected components
            (face connectivity) of each value in ``labels``, class = its position there.
        labels: the label values whose components are objects (``components``; empty: every
            foreground label of ``dataset.json``). ``(0,)`` takes the background's components
            (ISBI EM cells between membranes).
        min_voxels: objects smaller than this are dropped from the targets.
        image_size: every image resized to this (a multiple of the network's divisor);
            empty: native size, padded up to the divisor.
        patch_size: random training crops of this size (empty: whole images).
        spatial_dims, in_channels, num_classes: resolved from the data (0: not yet).
        features: U-Net channels per stage.
        output_level: CenterNet's decoder level (0: full resolution).
        size_weight: CenterNet's size-loss weight (0.1 in the paper).
        top_k, score_threshold, nms_iou: CenterNet decoding.
        foreground_threshold, min_distance, min_size, h: watershed post-processing
            (:func:`medseg.detect.instances.watershed_instances`; ``h``: the least dynamic
            of a marker on the 0..1 predicted distance, so noise in it makes no marker).
        instance_method: ``distance`` (marker watershed of the distance map,
            :func:`~medseg.detect.instances.watershed_instances`), ``boundary`` (watershed of
            the boundary probability ``1 - foreground`` seeded by the distance's h-maxima, then
            merging of regions split by a weak boundary,
            :func:`~medseg.detect.instances.boundary_watershed_instances`) or ``auto``
            (after training, both are tuned on the validation cases and the better kept).
        merge_threshold, boundary_sigma: the ``boundary`` method's merging threshold (mean
            boundary probability) and smoothing (voxels).
        val_fraction: share of cases held out (validation AP50 / PQ picks the checkpoint).
    """

    dataset: str
    head: str = "centernet"
    instances: str = "labels"
    labels: tuple[int, ...] = ()
    min_voxels: int = 1
    image_size: tuple[int, ...] = ()
    patch_size: tuple[int, ...] = ()
    spatial_dims: int = 0
    in_channels: int = 0
    num_classes: int = 0
    features: tuple[int, ...] = (16, 32, 64, 128)
    output_level: int = 0
    size_weight: float = 0.1
    top_k: int = 100
    score_threshold: float = 0.1
    nms_iou: float = 0.5
    foreground_threshold: float = 0.5
    min_distance: int = 3
    min_size: int = 8
    h: float = 0.2
    instance_method: str = "distance"
    merge_threshold: float = 0.7
    boundary_sigma: float = 1.0
    batch_size: int = 4
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 50
    steps_per_epoch: int = 50
    val_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value, valid in [
            ("head", self.head, HEADS),
            ("instances", self.instances, INSTANCES),
            ("instance_method", self.instance_method, INSTANCE_METHODS),
        ]:
            if value not in valid:
                raise ConfigError(f"{name} '{value}' is not one of {', '.join(valid)}")
        if self.spatial_dims and any(
            len(s) not in (0, self.spatial_dims) for s in (self.image_size, self.patch_size)
        ):
            raise ConfigError(
                f"image_size {self.image_size} / patch_size {self.patch_size} need "
                f"{self.spatial_dims} axes"
            )
        if not 0 <= self.val_fraction < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ConfigError("need 0 <= val_fraction < 1, batch_size >= 1, learning_rate > 0")
        if self.epochs < 1 or self.steps_per_epoch < 1 or len(self.features) < 2:
            raise ConfigError("need epochs >= 1, steps_per_epoch >= 1 and >= 2 feature stages")
        if not 0 <= self.merge_threshold <= 1 or not self.boundary_sigma >= 0:
            raise ConfigError("need 0 <= merge_threshold <= 1 and boundary_sigma >= 0")
        if not 0 <= self.nms_iou <= 1 or not 0 <= self.score_threshold <= 1:
            raise ConfigError("nms_iou and score_threshold must lie in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> DetectConfig:
        return config_from_dict(cls, data, source=source, kind="detection config")


def build_detector(config: DetectConfig) -> nn.Module:
    """The config's network (``spatial_dims``, ``in_channels``, ``num_classes`` resolved).

    Raises:
        ConfigError: the data-dependent fields are not resolved yet.
    """
    if not config.spatial_dims or not config.in_channels or not config.num_classes:
        raise ConfigError("detection config: spatial_dims, in_channels, num_classes unresolved")
    if config.head == "centernet":
        return CenterNet(
            config.spatial_dims,
            config.in_channels,
            config.num_classes,
            features=config.features,
            output_level=config.output_level,
        )
    return watershed_unet(config.spatial_dims, config.in_channels, features=config.features)


def required_divisor(config: DetectConfig) -> tuple[int, ...]:
    """The factor every network input axis must be a multiple of."""
    return (2 ** (len(config.features) - 1),) * config.spatial_dims
