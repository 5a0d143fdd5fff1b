"""Volumes for learnt registration: normalised, padded to one shape, with their labels.

* every image is normalised on its own (:func:`normalise`): ``"percentile"`` maps the 1st to
  99th percentile to [0, 1] and clips (the default: NCC and MSE then see comparable ranges), or
  ``"zscore"``;
* cases are padded (zeros) or cropped about their centre to one shape, the largest case
  rounded up to a multiple of the network's divisor (:func:`common_shape`; Hippocampus:
  48x64x48); the same centred offset maps results back (:func:`crop_to`);
* a dataset's cases must share their spacing (within 1e-3 relative): training on arrays
  with different spacings is refused, naming the cases (resample the dataset first).
  :func:`match_grid` is the rule of ``register apply``: a moving image of another shape but
  the same spacing and direction is padded like a training case; one of another spacing or
  direction is resampled onto the fixed grid with SimpleITK first (logged).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch

from medseg.classic.registration import resample
from medseg.data.dataset import Dataset, read_case
from medseg.errors import ConfigError, DatasetError, GeometryError
from medseg.io import Image

log = logging.getLogger(__name__)

NORMALISATIONS = ("percentile", "zscore")


def normalise(array: np.ndarray, method: str = "percentile") -> np.ndarray:
    """One image's intensities normalised (float32).

    ``"percentile"``: ``(x - p1) / (p99 - p1)`` clipped to [0, 1]; ``"zscore"``: ``(x - mean) /
    std``. A constant image becomes zeros.

    Example:
        >>> normalise(np.arange(101.0))[[0, 50, 100]].round(3).tolist()
        [0.0, 0.5, 1.0]
    """
    x = np.asarray(array, dtype=np.float32)
    if method == "percentile":
        low, high = np.percentile(x, [1.0, 99.0])
        if high <= low:
            return np.zeros_like(x)
        return np.clip((x - low) / (high - low), 0.0, 1.0).astype(np.float32)
    if method == "zscore":
        std = float(x.std())
        return ((x - x.mean()) / std).astype(np.float32) if std > 0 else np.zeros_like(x)
    raise ConfigError(f"normalisation {method!r}: use one of {', '.join(NORMALISATIONS)}")


def common_shape(shapes: Sequence[Sequence[int]], divisor: int) -> tuple[int, ...]:
    """The per-axis maximum of ``shapes`` rounded up to a multiple of ``divisor``.

    Example:
        >>> common_shape([(43, 59, 47), (31, 40, 24)], 16)
        (48, 64, 48)
    """
    return tuple(int(math.ceil(max(s) / divisor) * divisor) for s in zip(*shapes, strict=True))


def centre_offsets(shape: Sequence[int], target: Sequence[int]) -> tuple[int, ...]:
    """Where an array of ``shape`` starts inside ``target`` when centred (negative: cropped)."""
    return tuple((t - s) // 2 for s, t in zip(shape, target, strict=True))


def pad_to(array: np.ndarray, target: Sequence[int], value: float = 0.0) -> np.ndarray:
    """``array`` (``(*spatial)``) centred in ``target``: padded with ``value`` or cropped."""
    out = np.full(tuple(target), value, dtype=array.dtype)
    src, dst = [], []
    for n, t, o in zip(array.shape, target, centre_offsets(array.shape, target), strict=True):
        src.append(slice(max(0, -o), max(0, -o) + min(n, t)))
        dst.append(slice(max(0, o), max(0, o) + min(n, t)))
    out[tuple(dst)] = array[tuple(src)]
    return out


def crop_to(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The inverse of :func:`pad_to` for an array no smaller than ``shape`` (leading axes kept)."""
    dims = len(shape)
    offsets = centre_offsets(shape, array.shape[-dims:])
    index = tuple(slice(o, o + n) for o, n in zip(offsets, shape, strict=True))
    return array[(Ellipsis, *index)]


@dataclass
class Volumes:
    """Cases ready for training: ``images (N, 1, *shape)`` float32, ``labels (N, *shape)``
    int64 or None, in the order of ``case_ids``; ``num_classes``: the largest label + 1;
    ``shapes``: each case's spatial shape before padding or cropping."""

    case_ids: list[str]
    images: torch.Tensor
    labels: torch.Tensor | None
    spacing: tuple[float, ...]
    num_classes: int = 0
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def check_same_spacing(dataset: Dataset, images: dict[str, Image]) -> tuple[float, ...]:
    """The spacing every case shares; refuses cases of different spacing (naming them)."""
    first_id, first = next(iter(images.items()))
    odd = [
        f"{cid} {img.spacing}"
        for cid, img in images.items()
        if not np.allclose(img.spacing, first.spacing, rtol=1e-3)
    ]
    if odd:
        raise DatasetError(
            f"{dataset.root}: refused: cases differ in spacing ({first_id} {first.spacing} vs "
            f"{', '.join(odd[:3])}); registration trains on voxel arrays of one spacing, so "
            "resample the dataset to one spacing first"
        )
    return first.spacing


def load_volumes(
    dataset: Dataset,
    case_ids: Sequence[str],
    *,
    divisor: int,
    normalisation: str = "percentile",
    shape: Sequence[int] | None = None,
) -> Volumes:
    """Read, normalise and pad ``case_ids`` (first image channel) to ``shape`` (default: the
    :func:`common_shape` of the cases). Labels are kept when every case has one."""
    images, labels = {}, {}
    for case_id in case_ids:
        image, label = read_case(dataset.case(case_id))
        images[case_id] = image.with_array(image.channels_first()[0])
        labels[case_id] = label
    spacing = check_same_spacing(dataset, images)
    target = (
        tuple(shape) if shape else common_shape([i.spatial_shape for i in images.values()], divisor)
    )
    if any(n % divisor for n in target):
        raise ConfigError(f"shape {target} must be divisible by {divisor} (the network's levels)")
    stacked = np.stack(
        [pad_to(normalise(images[c].array, normalisation), target) for c in case_ids]
    )
    with_labels = all(lab is not None for lab in labels.values())
    label_tensor = None
    if with_labels:
        label_tensor = torch.from_numpy(
            np.stack([pad_to(np.rint(labels[c].array).astype(np.int64), target) for c in case_ids])
        )
    classes = int(label_tensor.max()) + 1 if label_tensor is not None else 0
    shapes = {c: tuple(images[c].spatial_shape) for c in case_ids}
    return Volumes(
        list(case_ids), torch.from_numpy(stacked)[:, None], label_tensor, spacing, classes, shapes
    )


def match_grid(
    fixed: Image, moving: Image, labels: Image | None = None
) -> tuple[Image, Image | None]:
    """Bring ``moving`` (and its labels) to where a network can pair it with ``fixed``.

    Same spacing and direction: returned as they are (different shapes are padded about
    their centres, as in training). Different spacing or direction: resampled onto ``fixed``'s
    grid with SimpleITK (linear; labels nearest), with a warning saying so.

    Raises:
        GeometryError: different dimensionality, a multi-channel image, or labels that are
            not on the moving image's grid.
    """
    for name, image in (("fixed", fixed), ("moving", moving)):
        if image.has_channels and image.num_channels != 1:
            raise GeometryError(f"{name} image has {image.num_channels} channels; expected one")
    if fixed.spatial_dims != moving.spatial_dims:
        raise GeometryError(
            f"refused: fixed is {fixed.spatial_dims}D, moving {moving.spatial_dims}D"
        )
    if labels is not None and not labels.same_grid(moving):
        raise GeometryError(
            f"refused: the labels (shape {labels.spatial_shape}, spacing {labels.spacing}) are "
            f"not on the moving image's grid (shape {moving.spatial_shape}, "
            f"spacing {moving.spacing})"
        )
    same = np.allclose(fixed.spacing, moving.spacing, rtol=1e-3) and np.allclose(
        fixed.direction, moving.direction, atol=1e-3
    )
    if same:
        return moving, labels
    log.warning(
        "moving image (spacing %s) resampled onto the fixed grid (spacing %s, shape %s) with "
        "SimpleITK before registration",
        moving.spacing,
        fixed.spacing,
        fixed.spatial_shape,
    )
    identity = sitk.Transform(fixed.spatial_dims, sitk.sitkIdentity)
    moved = resample(moving, identity, fixed)
    moved_labels = None if labels is None else resample(labels, identity, fixed, nearest=True)
    return moved, moved_labels
