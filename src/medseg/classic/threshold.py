"""Threshold segmentation: global, lower/upper band, and Otsu.

Baselines from the seeds' classical segmentation section; they need only numpy.
"""

from __future__ import annotations

import numpy as np


def otsu_threshold(image: np.ndarray, *, bins: int = 256, mask: np.ndarray | None = None) -> float:
    """Otsu's threshold: the value maximising the between-class variance.

    Args:
        image: intensities of any shape (NaNs are ignored).
        bins: histogram bins between the minimum and maximum.
        mask: optional boolean array; only voxels inside it are used.

    Returns:
        The threshold t; voxels ``> t`` are foreground. A constant image returns its value.

    Example:
        >>> otsu_threshold(np.array([0.0, 0.0, 10.0, 10.0])) < 10
        True
    """
    values = np.asarray(image, dtype=np.float64)
    values = values[mask] if mask is not None else values.ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("otsu_threshold: no finite values")
    low, high = float(values.min()), float(values.max())
    if low == high:
        return low
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight0 = np.cumsum(counts)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(counts * centres)
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    # threshold at the upper edge of the best bin, so that bin belongs to the background
    return float(edges[1:][int(np.argmax(between[:-1]))])


def threshold(
    image: np.ndarray, lower: float | None = None, upper: float | None = None
) -> np.ndarray:
    """Band threshold: ``lower <= image <= upper`` (either bound may be None).

    Returns:
        A boolean mask of the image's shape.
    """
    image = np.asarray(image)
    mask = np.ones(image.shape, dtype=bool)
    if lower is not None:
        mask &= image >= lower
    if upper is not None:
        mask &= image <= upper
    return mask


def otsu_segmentation(image: np.ndarray, **kwargs: object) -> np.ndarray:
    """``image > otsu_threshold(image)`` as a uint8 mask (1 = foreground)."""
    return (np.asarray(image) > otsu_threshold(image, **kwargs)).astype(np.uint8)  # type: ignore[arg-type]
