"""A trained detector applied to one image on its grid: CenterNet boxes or watershed
instances. Used by validation (:mod:`.train`) and prediction (:mod:`.predict`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from medseg.detect.centernet import Detections, decode_centernet
from medseg.detect.config import DetectConfig
from medseg.detect.instances import boundary_watershed_instances, watershed_instances
from medseg.device import autocast


@torch.no_grad()
def centernet_detections(
    model: nn.Module, config: DetectConfig, image: Tensor, *, use_bf16: bool = False
) -> Detections:
    """Boxes (grid voxels), scores and classes of ``image`` ``(C, *grid)``."""
    model.eval()
    device = next(model.parameters()).device
    with autocast(device, use_bf16):
        out = model(image[None].to(device))
    return decode_centernet(
        out["heatmap"][0].float().cpu(),
        out["size"][0].float().cpu(),
        stride=model.stride,
        image_shape=tuple(image.shape[1:]),
        top_k=config.top_k,
        score_threshold=config.score_threshold,
        nms_iou=config.nms_iou,
    )


@torch.no_grad()
def watershed_maps(
    model: nn.Module, image: Tensor, *, use_bf16: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground probability and predicted distance map ``(*grid)`` of ``image``."""
    model.eval()
    device = next(model.parameters()).device
    with autocast(device, use_bf16):
        out = torch.sigmoid(model(image[None].to(device))[0].float()).cpu().numpy()
    return out[0], out[1]


def watershed_label_map(
    model: nn.Module, config: DetectConfig, image: Tensor, *, use_bf16: bool = False
) -> np.ndarray:
    """The instance label map ``(*grid)`` of ``image``: marker watershed of the predicted
    distance map inside the predicted foreground."""
    return instances_from_maps(config, *watershed_maps(model, image, use_bf16=use_bf16))


def instances_from_maps(
    config: DetectConfig, foreground: np.ndarray, distance: np.ndarray
) -> np.ndarray:
    """The instance label map of a watershed run's maps with the config's method and settings
    (``boundary``: :func:`~medseg.detect.instances.boundary_watershed_instances`; otherwise,
    ``auto`` before tuning included, :func:`~medseg.detect.instances.watershed_instances`)."""
    if config.instance_method == "boundary":
        return np.asarray(
            boundary_watershed_instances(
                foreground,
                distance,
                threshold=config.foreground_threshold,
                h=config.h,
                merge_threshold=config.merge_threshold,
                sigma=config.boundary_sigma,
                min_size=config.min_size,
            )
        )
    return np.asarray(
        watershed_instances(
            foreground,
            distance,
            threshold=config.foreground_threshold,
            min_distance=config.min_distance,
            min_size=config.min_size,
            h=config.h,
        )
    )
