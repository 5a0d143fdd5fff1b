"""Preprocessing of one case: crop to the non-zero region, resample, normalise.

Pure array functions with explicit parameters (the Plan lives in a higher layer). Arrays are
``(C, *spatial)`` images and ``(*spatial)`` integer labels in ``medseg.io`` axis order.

Resampling follows nnU-Net: images with third-order splines, labels through one-hot linear
interpolation (no label values are invented), and for anisotropic data ("separate z") the
coarse axis is interpolated with nearest neighbour after in-plane spline resampling, so
thick slices are never blended into each other.

Sparse annotations: the ``ignore`` label's voxels become ``IGNORE_INDEX`` (-1) in the class
indices (``labels_to_indices``) and stay -1 through resampling (``resample_label``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.data.labels import IGNORE
from medseg.errors import DatasetError

ANISOTROPY = 3.0
#: The class index of unannotated voxels (the ``ignore`` label) in the case store.
IGNORE_INDEX = -1


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
    as in ``dataset.json``), sorted; region lists and the ``ignore`` label (unannotated
    voxels, ``IGNORE_INDEX`` in the case store) are not classes.

    Class ``k`` of the case store and of the network's output is the ``k``-th smallest value.

    Example:
        >>> class_values({"background": 0, "tumour": 10, "organ": 1, "both": [1, 10]})
        [0, 1, 10]
        >>> class_values({"background": 0, "organ": 1, "ignore": 2})
        [0, 1]
    """
    return sorted(v for k, v in labels.items() if isinstance(v, int) and k != IGNORE)


def labels_to_indices(
    label: np.ndarray, values: list[int], *, ignore_value: int | None = None
) -> np.ndarray:
    """Map a label map's values to class indices ``0..K-1`` (``values[k]`` becomes ``k``).

    Args:
        label: ``(*spatial)`` label values (any integer or integral float dtype).
        values: the sorted class values (``class_values``).
        ignore_value: the value of the ``ignore`` label (unannotated voxels), which becomes
            ``IGNORE_INDEX`` (-1); None: dense labels.

    Returns:
        ``(*spatial)`` indices, int8 for up to 128 classes, else int16 or int32.

    Raises:
        DatasetError: the label holds a value that is not in ``values`` (nor
            ``ignore_value``).

    Example:
        >>> labels_to_indices(np.array([0, 10, 2, 1]), [0, 1, 2, 10]).tolist()
        [0, 3, 2, 1]
        >>> labels_to_indices(np.array([0, 1, 2, 2]), [0, 1], ignore_value=2).tolist()
        [0, 1, -1, -1]
    """
    dtype = np.int8 if len(values) <= 128 else np.int16 if len(values) <= 2**15 else np.int32
    ignored = None
    if ignore_value is not None:
        ignored = label == ignore_value
        if ignored.any():
            label = np.where(ignored, values[0], label)
        else:
            ignored = None
    if values == list(range(len(values))) and label.dtype.kind in "iu":  # already indices
        low, high = (int(label.min()), int(label.max())) if label.size else (0, 0)
        if low >= 0 and high < len(values):
            out = label.astype(dtype, copy=ignored is not None)
            if ignored is not None:
                out[ignored] = IGNORE_INDEX
            return out
    table = np.asarray(values)
    index = np.clip(np.searchsorted(table, label), 0, len(values) - 1)
    unknown = table[index] != label
    if np.any(unknown):
        bad = sorted({float(v) if v % 1 else int(v) for v in np.unique(label[unknown])})
        raise DatasetError(
            f"label values {bad} are not among the planned labels {values}; fix "
            "the mask, or declare them in dataset.json and run 'medseg plan' again"
        )
    out = index.astype(dtype)
    if ignored is not None:
        out[ignored] = IGNORE_INDEX
    return out


def resample_label(
    label: np.ndarray, new_shape: tuple[int, ...], *, separate_z: int | None = None
) -> np.ndarray:
    """Resample an integer label map ``(*spatial)`` by one-hot linear interpolation + argmax.

    Negative values (``IGNORE_INDEX``: unannotated voxels) are not classes: a voxel is
    ignored only where more than half of its interpolated weight comes from ignored voxels,
    and takes the best class otherwise, so a single annotated slice survives resampling
    wherever it is the nearer neighbour (with plain argmax, ignored voxels would win every
    tie, as they are the majority of a sparsely annotated case).

    Example:
        >>> resample_label(np.array([-1, 1, -1, -1]), (2,)).tolist()  # 2:1, ties to the slice
        [1, -1]
    """
    if tuple(label.shape) == tuple(new_shape):
        return label
    values = np.unique(label)
    best = np.full(new_shape, -1.0, dtype=np.float32)
    out = np.zeros(new_shape, dtype=label.dtype)
    for value in values[values >= 0]:
        prob = _resampled_mask(label == value, new_shape, separate_z)
        better = prob > best
        out[better] = value
        best[better] = prob[better]
    ignored = values[values < 0]
    if ignored.size:
        share = _resampled_mask(label < 0, new_shape, separate_z)
        which = np.full(new_shape, ignored[0], dtype=label.dtype)
        if ignored.size > 1:  # several negative values: the one with the most weight
            top = np.full(new_shape, -1.0, dtype=np.float32)
            for value in ignored:
                prob = _resampled_mask(label == value, new_shape, separate_z)
                better = prob > top
                which[better] = value
                top[better] = prob[better]
        out[share > 0.5] = which[share > 0.5]
    return out


def _resampled_mask(
    mask: np.ndarray, new_shape: tuple[int, ...], separate_z: int | None
) -> np.ndarray:
    return resample_image(mask.astype(np.float32)[None], new_shape, order=1, separate_z=separate_z)[
        0
    ]


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
    0.5/99.5 percentiles, then the dataset's foreground mean/std), ``"rgb"`` (8-bit colour
    to ``[0, 1]``: divided by 255, so colour augmentation still sees colour), ``"none"``.
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
        elif scheme == "rgb":
            out[c] = channel / 255.0
        elif scheme == "none":
            out[c] = channel
        else:
            raise ValueError(f"unknown normalisation scheme '{scheme}'")
    return out
