"""Undo preprocessing: class probabilities on the preprocessed grid -> a label map in the
original image's geometry (shape, spacing, origin, direction)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medseg.data.preprocess import resample_probabilities
from medseg.io import Image


def probabilities_to_original(probs: np.ndarray, props: dict[str, Any]) -> np.ndarray:
    """Map ``(K, *preprocessed)`` probabilities back to ``(K, *original)``.

    Resampled linearly to the cropped shape (separately along the coarse axis when the
    preprocessing did so), then padded into the original shape; outside the crop box the
    background (class 0) has probability 1, as the crop removed only all-zero voxels.
    """
    crop_shape = tuple(props["shape_after_crop"])
    probs = resample_probabilities(
        probs.astype(np.float32, copy=False), crop_shape, separate_z=props.get("separate_z")
    )
    full = np.zeros((probs.shape[0], *props["original_shape"]), dtype=np.float32)
    full[0] = 1.0
    box = tuple(slice(a, b) for a, b in zip(props["crop_start"], props["crop_stop"], strict=True))
    full[(slice(None), *box)] = probs
    return full


def label_image(label: np.ndarray, props: dict[str, Any]) -> Image:
    """Attach the original geometry to a label map of the original shape."""
    return Image(
        label,
        spacing=tuple(props["original_spacing"]),
        origin=tuple(props["origin"]),
        direction=tuple(props["direction"]),
    )


def probabilities_to_label(probs: np.ndarray, label_values: list[int] | None = None) -> np.ndarray:
    """Argmax over classes (outside the network, as the seeds insist); channel k becomes
    ``label_values[k]`` (default k).

    Returns:
        ``(*spatial)`` label values in the smallest type that holds every possible value
        (uint8, uint16, uint32, else int64; signed types if a value is negative), so a label
        like 40000 or 65536 is never wrapped.

    Example:
        >>> probabilities_to_label(np.eye(3)[:, :, None], [0, 2, 65536]).ravel().tolist()
        [0, 2, 65536]
    """
    index = np.argmax(probs, axis=0)
    values = np.asarray(
        label_values if label_values is not None else range(probs.shape[0]), dtype=np.int64
    )
    return values.astype(_smallest_int_type(values))[index]


def _smallest_int_type(values: np.ndarray) -> type[np.integer]:
    low, high = int(values.min(initial=0)), int(values.max(initial=0))
    kinds = (np.uint8, np.uint16, np.uint32) if low >= 0 else (np.int8, np.int16, np.int32)
    return next((t for t in kinds if np.iinfo(t).min <= low and high <= np.iinfo(t).max), np.int64)
