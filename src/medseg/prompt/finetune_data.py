"""Training data of a promptable model: images resized to the model's square input, one
binary mask per object, and box prompts taken from the masks (with jitter, as MedSAM).

An *object* is one label value of a case (``objects="label"``) or one connected component of
it (``objects="component"``: the left and the right lung of a mask that merges them). 3D cases
give 2D samples slice by slice along axis 0 for a 2D model, at most ``slices_per_case`` of
the slices that hold the object (evenly spaced), or whole volumes for a 3D model.
Coordinates are voxel indices in array axis order (see :mod:`medseg.prompt.model`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from medseg.data.case import read_case
from medseg.data.dataset import Dataset, load_dataset
from medseg.errors import ConfigError

Intensity = Literal["zscore", "minmax", "medsam", "sam"]
Objects = Literal["label", "component"]

#: SAM's pixel statistics on 0-255 RGB (Kirillov et al. 2023).
SAM_MEAN = (123.675, 116.28, 103.53)
SAM_STD = (58.395, 57.12, 57.375)


@dataclass
class PromptSamples:
    """Preprocessed images and the objects in them.

    Attributes:
        images: ``(N, C, *image_size)`` float32 model inputs.
        masks: ``(M, *image_size)`` bool, one per object.
        image_of: ``(M,)`` the image index of each object.
        case_ids: the case (and slice, ``case@z``) of each image.
    """

    images: Tensor
    masks: Tensor
    image_of: Tensor
    case_ids: list[str]

    def __len__(self) -> int:
        return int(self.masks.shape[0])


def prepare_image(array: np.ndarray, image_size: Sequence[int], intensity: Intensity) -> Tensor:
    """``(C, *spatial)`` -> ``(C', *image_size)`` float32: resized (linear) and normalised.

    ``zscore``: per image and channel; ``minmax``: to [0, 1]; ``medsam``: to [0, 1], grey
    replicated to RGB (MedSAM); ``sam``: to 0-255, grey replicated to RGB, then SAM's mean
    and std.
    """
    x = torch.as_tensor(np.asarray(array, dtype=np.float32))[None]
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[x.ndim - 2]
    x = F.interpolate(x, size=tuple(image_size), mode=mode, align_corners=False)[0]
    flat = x.flatten(1)
    if intensity == "zscore":
        mean, std = flat.mean(1), flat.std(1).clamp_min(1e-8)
        return (x - _per_channel(mean, x)) / _per_channel(std, x)
    low, high = flat.min(1).values, flat.max(1).values
    unit = (x - _per_channel(low, x)) / _per_channel((high - low).clamp_min(1e-8), x)
    if intensity == "minmax":
        return unit
    if intensity not in ("sam", "medsam"):
        raise ConfigError(f"intensity '{intensity}': use zscore, minmax, medsam or sam")
    rgb = unit.expand(3, *unit.shape[1:]) if unit.shape[0] == 1 else unit
    if intensity == "medsam":
        return rgb.contiguous()
    mean = torch.tensor(SAM_MEAN).view(3, *[1] * (rgb.ndim - 1))
    std = torch.tensor(SAM_STD).view(3, *[1] * (rgb.ndim - 1))
    return (rgb * 255.0 - mean) / std


def _per_channel(values: Tensor, like: Tensor) -> Tensor:
    return values.view(-1, *[1] * (like.ndim - 1))


def resize_mask(mask: np.ndarray, image_size: Sequence[int]) -> Tensor:
    """A bool mask resized to ``image_size`` (nearest neighbour)."""
    x = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None]
    return F.interpolate(x, size=tuple(image_size), mode="nearest")[0, 0] > 0.5


def object_masks(label: np.ndarray, values: Sequence[int], objects: Objects) -> list[np.ndarray]:
    """The objects of a label map: one mask per value present, or per connected component
    (full connectivity) of each value."""
    masks = []
    for value in values:
        mask = label == value
        if not mask.any():
            continue
        if objects == "label":
            masks.append(mask)
            continue
        components, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim))
        masks.extend(components == k for k in range(1, count + 1))
    return masks


def load_samples(
    dataset: Dataset | str | os.PathLike[str],
    *,
    image_size: Sequence[int],
    intensity: Intensity,
    case_ids: Sequence[str] | None = None,
    labels: Sequence[int] | None = None,
    objects: Objects = "label",
    slices_per_case: int = 8,
    min_voxels: int = 16,
) -> PromptSamples:
    """Read a dataset's cases into :class:`PromptSamples` for a model of ``len(image_size)``
    spatial dimensions (3D cases are sliced along axis 0 for a 2D model).

    Args:
        labels: label values to segment (default: every foreground label of dataset.json).
        min_voxels: objects smaller than this after resizing are left out (a box around a
            few voxels is no prompt).

    Raises:
        ConfigError: no case holds an object, or a 2D case for a 3D model.
    """
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    values = list(labels) if labels else sorted(data.foreground_labels.values())
    wanted = set(case_ids) if case_ids is not None else None
    images: list[Tensor] = []
    masks: list[Tensor] = []
    image_of: list[int] = []
    names: list[str] = []
    for case in data.cases:
        if wanted is not None and case.case_id not in wanted:
            continue
        image, label = read_case(case, num_channels=data.num_channels)
        if label is None:
            continue
        for name, array, label_array in _views(
            case.case_id, image.array, label.array, len(image_size), slices_per_case, values
        ):
            found = [resize_mask(m, image_size) for m in object_masks(label_array, values, objects)]
            found = [m for m in found if int(m.sum()) >= min_voxels]
            if not found:
                continue
            images.append(prepare_image(array, image_size, intensity))
            masks.extend(found)
            image_of.extend([len(images) - 1] * len(found))
            names.append(name)
    if not masks:
        raise ConfigError(
            f"{data.root}: no object of label(s) {values} in the cases asked "
            f"(at least {min_voxels} voxels at {tuple(image_size)})"
        )
    return PromptSamples(torch.stack(images), torch.stack(masks), torch.tensor(image_of), names)


def _views(
    case_id: str,
    image: np.ndarray,
    label: np.ndarray,
    model_dims: int,
    slices_per_case: int,
    values: Sequence[int],
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, image (C, *spatial), label)`` per sample of one case: the case itself, or
    evenly spaced slices (axis 0) holding a label of ``values`` for a 2D model."""
    if label.ndim == model_dims:
        return [(case_id, image, label)]
    if label.ndim < model_dims:
        raise ConfigError(f"{case_id}: a {label.ndim}D case cannot train a {model_dims}D model")
    holding = np.flatnonzero(np.isin(label, values).reshape(label.shape[0], -1).any(1))
    if len(holding) > slices_per_case:
        holding = holding[np.linspace(0, len(holding) - 1, slices_per_case).round().astype(int)]
    return [(f"{case_id}@{z}", image[:, z], label[z]) for z in holding]


def mask_box(mask: Tensor) -> Tensor:
    """The bounding box ``(lo_0, ..., lo_{D-1}, hi_0, ..., hi_{D-1})`` (inclusive voxel
    indices, float) of a non-empty bool mask ``(*spatial)``.

    Example:
        >>> m = torch.zeros(5, 6, dtype=torch.bool); m[1:3, 2:5] = True
        >>> mask_box(m).tolist()
        [1.0, 2.0, 2.0, 4.0]
    """
    where = mask.nonzero()
    if where.numel() == 0:
        raise ConfigError("an empty mask has no bounding box")
    return torch.cat([where.min(0).values, where.max(0).values]).float()


def jitter_box(
    box: Tensor, shape: Sequence[int], max_shift: float, generator: torch.Generator
) -> Tensor:
    """Each box coordinate moved by a uniform random integer in ``[-max_shift, max_shift]``
    voxels (MedSAM: 0-20 px), clipped to the image and kept non-inverted."""
    dims = len(shape)
    shift = torch.randint(-int(max_shift), int(max_shift) + 1, (2 * dims,), generator=generator)
    moved = box + shift.float()
    upper = torch.tensor([s - 1 for s in shape], dtype=torch.float32).repeat(2)
    moved = torch.minimum(moved.clamp_min(0), upper)
    lo, hi = moved[:dims], moved[dims:]
    return torch.cat([torch.minimum(lo, hi), torch.maximum(lo, hi)])
