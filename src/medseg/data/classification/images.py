"""Image files -> one ``(N, C, *spatial)`` float32 stack, with the voxel checks every source shares.

Intensities follow ``normalize`` (see ``medseg.data.classification``): ``"auto"`` divides
``uint8`` images by 255 while reading, ``"zscore"`` is applied to the whole stack afterwards
(``normalize_stack``), ``None`` keeps every image as read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.data.classification.dataset import Normalize
from medseg.errors import DatasetError
from medseg.io import read_image


def is_uint8(array: np.ndarray) -> bool:
    """Whether ``array`` holds 8-bit pictures (the dtype ``"auto"`` scales to ``[0, 1]``)."""
    return array.dtype == np.uint8


def normalize_stack(images: np.ndarray, normalize: Normalize) -> np.ndarray:
    """Apply ``"zscore"`` in place (``"auto"``'s uint8 scaling is done while reading).

    Args:
        images: ``(N, C, *spatial)`` float32; changed in place for ``"zscore"``.
        normalize: the intensity mode; only ``"zscore"`` does anything here.

    Returns:
        ``images``: each image and channel shifted to mean 0 and divided by its standard
        deviation (floored at ``1e-8``, so a constant channel does not divide by 0).
    """
    if normalize == "zscore" and images.size:
        axes = tuple(range(2, images.ndim))
        mean = images.mean(axis=axes, keepdims=True, dtype=np.float64)
        std = images.std(axis=axes, keepdims=True, dtype=np.float64)
        images -= mean.astype(np.float32)
        images /= np.maximum(std, 1e-8).astype(np.float32)
    return images


def stack_files(paths: Sequence[Path], normalize: Normalize) -> np.ndarray:
    """Read ``paths`` into one ``(N, C, *spatial)`` float32 array, checking they agree.

    Args:
        paths: image files (or DICOM series folders) ``medseg.io.read_image`` reads; at least one.
        normalize: ``"auto"`` scales uint8 images to ``[0, 1]``; other modes read as is.

    Returns:
        ``(N, C, *spatial)`` float32 with the first image's channels and size.

    Raises:
        DatasetError: an image's size, dimensions or channel count differs from the first
            image's, or it holds NaN / infinite voxels or an unsupported voxel type.
    """
    first = read_image(paths[0])
    ref = checked_array(first.channels_first(), paths[0], normalize)
    ref_dims = first.spatial_dims
    images = np.empty((len(paths), *ref.shape), dtype=np.float32)
    images[0] = ref
    for i, path in enumerate(paths[1:], start=1):
        image = read_image(path)
        array = image.channels_first()
        if image.spatial_dims != ref_dims or array.shape[1:] != ref.shape[1:]:
            raise DatasetError(
                f"{path}: image size {tuple(array.shape[1:])} differs from "
                f"{tuple(ref.shape[1:])} of {paths[0]}; resize all images to one size first"
            )
        if array.shape[0] != ref.shape[0]:
            raise DatasetError(
                f"{path}: {array.shape[0]} channel(s) but {paths[0]} has {ref.shape[0]}; "
                "convert all images to the same channels (e.g. all grey or all RGB)"
            )
        images[i] = checked_array(array, path, normalize)
    return images


def checked_array(array: np.ndarray, name: Path | str, normalize: Normalize) -> np.ndarray:
    """One image ``(C, *spatial)`` as float32, after checking its voxels.

    Raises:
        DatasetError: NaN or infinite voxels, or a voxel type that is not a number.
    """
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = "NaN" if np.isnan(array).any() else "infinite"
        raise DatasetError(f"{name}: image holds {bad} voxels; fix or remove the image")
    if array.dtype.kind not in "fiub":
        raise DatasetError(f"{name}: unsupported voxel type {array.dtype}")
    if normalize == "auto" and is_uint8(array):
        return array.astype(np.float32) / np.float32(255.0)  # exact x / 255 in float32
    return array.astype(np.float32, copy=False)
