"""Preprocessing of one case: crop to the non-zero region, resample, normalise.

Pure array functions with explicit parameters (the Plan lives in a higher layer). Arrays are
``(C, *spatial)`` images and ``(*spatial)`` integer labels in ``medseg.io`` axis order.

Resampling follows nnU-Net: images with third-order splines, labels through one-hot linear
interpolation (no label values are invented), and for anisotropic data ("separate z") the
coarse axis is interpolated with nearest neighbour after in-plane spline resampling, so
thick slices are never blended into each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.errors import DatasetError

ANISOTROPY = 3.0


@dataclass(frozen=True)
class CropBox:
    """Half-open voxel bounds ``[start, stop)`` per spatial axis."""

    start: tuple[int, ...]
    stop: tuple[int, ...]

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))


def nonzero_box(image: np.ndarray) -> CropBox:
    """Bounding box of voxels that are non-zero in any channel of ``(C, *spatial)``.

    A fully zero image gives the whole image (nothing to crop).
    """
    mask = np.any(image != 0, axis=0)
    if not mask.any():
        return CropBox((0,) * mask.ndim, mask.shape)
    coords = np.nonzero(mask)
    return CropBox(tuple(int(c.min()) for c in coords), tuple(int(c.max()) + 1 for c in coords))


def new_shape_for_spacing(
    shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]
) -> tuple[int, ...]:
    """Voxel counts covering the same physical extent at ``target`` spacing (at least 1)."""
    return tuple(
        max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target, strict=True)
    )


def separate_axis(spacing: tuple[float, ...]) -> int | None:
    """The coarse axis to resample separately, or None when the data is not anisotropic."""
    spacing_arr = np.asarray(spacing)
    if len(spacing) < 3 or spacing_arr.max() / spacing_arr.min() < ANISOTROPY:
        return None
    return int(np.argmax(spacing_arr))


def _zoom(array: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    if tuple(array.shape) == tuple(shape):
        return array
    factors = [n / o for n, o in zip(shape, array.shape, strict=True)]
    out = ndimage.zoom(
        array, factors, order=order, mode="nearest", grid_mode=True, prefilter=order > 1
    )
    return out


def resample_image(
    image: np.ndarray, new_shape: tuple[int, ...], *, order: int = 3, separate_z: int | None = None
) -> np.ndarray:
    """Resample ``(C, *spatial)`` to ``(C, *new_shape)`` (float32).

    Args:
        order: spline order in the fine axes (3 as nnU-Net).
        separate_z: axis to resample with nearest neighbour after the others (anisotropic data).
    """
    out = []
    for channel in image.astype(np.float32, copy=False):
        if separate_z is None:
            out.append(_zoom(channel, new_shape, order))
            continue
        inplane = tuple(n if d != separate_z else channel.shape[d] for d, n in enumerate(new_shape))
        out.append(_zoom(_zoom(channel, inplane, order), new_shape, 0))
    return np.stack(out).astype(np.float32, copy=False)


def class_values(labels: dict[str, Any]) -> list[int]:
    """The label value of each class index: the integer values of ``labels`` (name -> value,
    as in ``dataset.json``), sorted; region lists are not classes.

    Class ``k`` of the case store and of the network's output is the ``k``-th smallest value.

    Example:
        >>> class_values({"background": 0, "tumour": 10, "organ": 1, "both": [1, 10]})
        [0, 1, 10]
    """
    return sorted(v for v in labels.values() if isinstance(v, int))


def labels_to_indices(label: np.ndarray, values: list[int]) -> np.ndarray:
    """Map a label map's values to class indices ``0..K-1`` (``values[k]`` becomes ``k``).

    Args:
        label: ``(*spatial)`` label values (any integer or integral float dtype).
        values: the sorted class values (``class_values``).

    Returns:
        ``(*spatial)`` indices, int8 for up to 128 classes, else int16 or int32.

    Raises:
        DatasetError: the label holds a value that is not in ``values``.

    Example:
        >>> labels_to_indices(np.array([0, 10, 2, 1]), [0, 1, 2, 10]).tolist()
        [0, 3, 2, 1]
    """
    dtype = np.int8 if len(values) <= 128 else np.int16 if len(values) <= 2**15 else np.int32
    if values == list(range(len(values))) and label.dtype.kind in "iu":  # already indices
        low, high = (int(label.min()), int(label.max())) if label.size else (0, 0)
        if low >= 0 and high < len(values):
            return label.astype(dtype, copy=False)
    table = np.asarray(values)
    index = np.clip(np.searchsorted(table, label), 0, len(values) - 1)
    unknown = table[index] != label
    if np.any(unknown):
        bad = sorted({float(v) if v % 1 else int(v) for v in np.unique(label[unknown])})
        raise DatasetError(
            f"label values {bad} are not among the planned labels {values}; fix "
            "the mask, or declare them in dataset.json and run 'medseg plan' again"
        )
    return index.astype(dtype)


def resample_label(
    label: np.ndarray, new_shape: tuple[int, ...], *, separate_z: int | None = None
) -> np.ndarray:
    """Resample an integer label map ``(*spatial)`` by one-hot linear interpolation + argmax."""
    if tuple(label.shape) == tuple(new_shape):
        return label
    values = np.unique(label)
    best = np.full(new_shape, -1.0, dtype=np.float32)
    out = np.zeros(new_shape, dtype=label.dtype)
    for value in values:
        onehot = (label == value).astype(np.float32)[None]
        prob = resample_image(onehot, new_shape, order=1, separate_z=separate_z)[0]
        better = prob > best
        out[better] = value
        best[better] = prob[better]
    return out


def resample_probabilities(
    probs: np.ndarray, new_shape: tuple[int, ...], *, separate_z: int | None = None
) -> np.ndarray:
    """Resample class probabilities ``(K, *spatial)`` linearly (used to undo preprocessing)."""
    return resample_image(probs, new_shape, order=1, separate_z=separate_z)


def normalize(
    image: np.ndarray,
    schemes: tuple[str, ...],
    intensity: dict[str, dict[str, float]],
) -> np.ndarray:
    """Normalise each channel of ``(C, *spatial)`` (float32).

    Schemes: ``"zscore"`` (this case's mean/std), ``"ct"`` (clip to the dataset's foreground
    0.5/99.5 percentiles, then the dataset's foreground mean/std), ``"none"``.
    """
    out = np.empty(image.shape, dtype=np.float32)
    for c, scheme in enumerate(schemes):
        channel = image[c].astype(np.float32, copy=False)
        if scheme == "zscore":
            out[c] = (channel - channel.mean()) / max(float(channel.std()), 1e-8)
        elif scheme == "ct":
            stats = intensity[str(c)]
            clipped = np.clip(channel, stats["percentile_00_5"], stats["percentile_99_5"])
            out[c] = (clipped - stats["mean"]) / max(stats["std"], 1e-8)
        elif scheme == "none":
            out[c] = channel
        else:
            raise ValueError(f"unknown normalisation scheme '{scheme}'")
    return out
