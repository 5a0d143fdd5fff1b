"""A promptable model on a user's image: prompts in the image's voxels, a mask on its grid.

The model sees the image resized to its square input (:func:`prepare_image`); prompt
coordinates (voxel indices in array axis order, 2D ``(row, col)``, 3D ``(z, y, x)``) are
mapped to the model's grid and the mask logits back to the image's grid, so the mask lies
exactly where the image is (same spacing, origin and direction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.data.case import channels_first_image
from medseg.errors import ConfigError
from medseg.io.image import Image
from medseg.prompt.finetune_config import PromptConfig
from medseg.prompt.finetune_data import prepare_image


def to_model_coordinates(
    coords: Tensor, image_shape: Sequence[int], model_shape: Sequence[int]
) -> Tensor:
    """Voxel indices ``(..., D)`` of the image to those of the model's input (voxel centres
    map onto voxel centres: ``(i + 0.5) * model / image - 0.5``).

    Example:
        >>> to_model_coordinates(torch.tensor([[0.0, 99.0]]), (100, 200), (50, 50)).tolist()
        [[-0.25, 24.5]]
    """
    scale = torch.tensor([m / s for m, s in zip(model_shape, image_shape, strict=True)])
    return (coords.float() + 0.5) * scale - 0.5


def check_prompt(
    shape: Sequence[int], box: Sequence[float] | None, points: Sequence[Sequence[float]] | None
) -> None:
    """Refuse prompts that do not fit the image, in the image's own coordinates.

    Raises:
        ConfigError: no prompt, a box of the wrong length, inverted or outside the image,
            a point of the wrong length or outside.
    """
    dims = len(shape)
    if box is None and not points:
        raise ConfigError("no prompt: give a box or at least one point")
    if box is not None:
        if len(box) != 2 * dims:
            raise ConfigError(
                f"a {dims}D box has {2 * dims} numbers (lo..., hi...), got {len(box)}"
            )
        lo, hi = box[:dims], box[dims:]
        if any(h < low for low, h in zip(lo, hi, strict=True)):
            raise ConfigError(f"box {list(box)} is inverted: each hi must be >= its lo")
        if any(low < 0 or h > s - 1 for low, h, s in zip(lo, hi, shape, strict=True)):
            raise ConfigError(f"box {list(box)} is outside the image of shape {tuple(shape)}")
    for point in points or []:
        if len(point) != dims:
            raise ConfigError(f"a point in a {dims}D image has {dims} coordinates: {list(point)}")
        if any(not 0 <= p <= s - 1 for p, s in zip(point, shape, strict=True)):
            raise ConfigError(f"point {list(point)} is outside the image of shape {tuple(shape)}")


@torch.no_grad()
def segment_with_prompt(
    model: nn.Module,
    config: PromptConfig,
    image: Image,
    *,
    box: Sequence[float] | None = None,
    points: Sequence[Sequence[float]] | None = None,
    point_labels: Sequence[int] | None = None,
) -> tuple[Image, float]:
    """The mask a box and/or points prompt on ``image``, and its predicted IoU.

    Args:
        box: ``(lo_0, ..., hi_0, ...)`` voxel indices of the image, array axis order.
        points: ``(N, D)`` voxel indices; ``point_labels`` 1 (object) or 0 (background),
            all 1 by default.

    Returns:
        A uint8 label-map ``Image`` (1 inside) on the image's grid, and the predicted IoU.

    Raises:
        ConfigError: a prompt that does not fit the image, or an image whose dimensions
            differ from the model's.
    """
    image = channels_first_image(image)
    shape = image.spatial_shape
    if len(shape) != config.spatial_dims:
        raise ConfigError(
            f"a {config.spatial_dims}D prompt model cannot take a {len(shape)}D image "
            "(for a volume and a 2D model use prompt.volume.segment_volume_from_box)"
        )
    check_prompt(shape, box, points)
    model_shape = tuple(config.image_size)
    x = prepare_image(image.channels_first(), model_shape, config.resolved_intensity)
    prompts: dict[str, Tensor] = {}
    if box is not None:
        corners = torch.tensor(box, dtype=torch.float32).view(2, -1)
        prompts["box"] = to_model_coordinates(corners, shape, model_shape).reshape(1, -1)
    if points:
        labels = [1] * len(points) if point_labels is None else list(point_labels)
        coords = torch.tensor(points, dtype=torch.float32)
        prompts["points"] = to_model_coordinates(coords, shape, model_shape)[None]
        prompts["point_labels"] = torch.tensor(labels)[None]
    result = model.predict(model.embed(x[None]), multimask=False, **prompts)
    logits = result.logits[:, :1].float()
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(shape)]
    logits = F.interpolate(logits, size=tuple(shape), mode=mode, align_corners=False)
    mask = (logits[0, 0] > 0).numpy().astype(np.uint8)
    return Image(mask, image.spacing, image.origin, image.direction), float(result.iou[0, 0])


@torch.no_grad()
def segment_everything_image(
    model: nn.Module, config: PromptConfig, image: Image, **options: Any
) -> tuple[Image, int]:
    """Every object of ``image`` (:func:`~medseg.prompt.everything.segment_everything` on
    the model's grid) as an instance label map on the image's grid (nearest neighbour), and
    the number of objects. ``options``: those of ``segment_everything``."""
    from medseg.prompt.everything import instance_label_map, segment_everything

    image = channels_first_image(image)
    shape = image.spatial_shape
    if len(shape) != config.spatial_dims:
        raise ConfigError(
            f"a {config.spatial_dims}D prompt model cannot take a {len(shape)}D image"
        )
    x = prepare_image(image.channels_first(), tuple(config.image_size), config.resolved_intensity)
    masks = segment_everything(model, x, **options)
    labels = torch.as_tensor(instance_label_map(masks, tuple(config.image_size)).astype(np.float32))
    labels = F.interpolate(labels[None, None], size=tuple(shape), mode="nearest")[0, 0]
    array = labels.numpy().astype(np.uint16 if len(masks) > 255 else np.uint8)
    return Image(array, image.spacing, image.origin, image.direction), len(masks)
