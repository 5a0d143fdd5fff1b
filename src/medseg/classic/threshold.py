"""Threshold segmentation: lower/upper band and Otsu (two classes or multi-Otsu).

Baselines from the seeds' classical segmentation section (simple and fast; they need
homogeneous, distinct regions and leak under intensity inhomogeneity). ``otsu_threshold`` and
``otsu_segmentation`` work on plain arrays with numpy only (the demo's baseline); ``threshold``
and ``otsu`` take and return :class:`~medseg.io.Image` (registered in ``CLASSIC``).
"""

from __future__ import annotations

import warnings

import numpy as np

from medseg.classic.common import checked_image, label_image
from medseg.classic.registry import CLASSIC
from medseg.errors import ConfigError
from medseg.io import Image


def otsu_threshold(image: np.ndarray, *, bins: int = 256, mask: np.ndarray | None = None) -> float:
    """Otsu's threshold: the value maximising the between-class variance.

    Same histogram and arithmetic as scikit-image's ``threshold_otsu`` (``bins`` equal bins
    between the minimum and maximum, threshold at the centre of the best bin), so a float
    image gives the same value.

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
    values = values[np.asarray(mask, dtype=bool)] if mask is not None else values.ravel()
    finite = np.isfinite(values)
    if not finite.all():  # copy only when something must go
        values = values[finite]
    if values.size == 0:
        raise ValueError("otsu_threshold: no finite values")
    low, high = float(values.min()), float(values.max())
    if low == high:
        return low
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_below = np.cumsum(counts)
    weight_above = np.cumsum(counts[::-1])[::-1]
    mean_below = np.cumsum(counts * centres) / np.maximum(weight_below, 1)
    mean_above = (np.cumsum((counts * centres)[::-1]) / np.maximum(weight_above[::-1], 1))[::-1]
    # pair "bins 0..i below" with "bins i+1.. above"
    between = weight_below[:-1] * weight_above[1:] * (mean_below[:-1] - mean_above[1:]) ** 2
    return float(centres[int(np.argmax(between))])


def otsu_segmentation(image: np.ndarray, **kwargs: object) -> np.ndarray:
    """``image > otsu_threshold(image)`` as a uint8 mask (1 = foreground)."""
    return (np.asarray(image) > otsu_threshold(image, **kwargs)).astype(np.uint8)  # type: ignore[arg-type]


@CLASSIC.register(
    "threshold", description="band threshold lower <= I <= upper", task="segmentation"
)
def threshold(image: Image, *, lower: float | None = None, upper: float | None = None) -> Image:
    """Band threshold: label 1 where ``lower <= image <= upper`` (bounds inclusive).

    Args:
        image: a single-channel 2D or 3D image.
        lower: the lowest intensity kept, or None for no lower bound.
        upper: the highest intensity kept, or None for no upper bound.

    Returns:
        A uint8 label map (1 inside the band, 0 elsewhere) on the image's grid; with both
        bounds None every voxel is 1.

    Raises:
        ConfigError: when ``lower > upper``.
        DatasetError: for a multi-channel image or NaN intensities.
    """
    array = checked_image(image)
    if lower is not None and upper is not None and lower > upper:
        raise ConfigError(f"threshold: lower {lower} > upper {upper}; the band is empty")
    mask = np.ones(array.shape, dtype=bool)
    if lower is not None:
        mask &= array >= lower
    if upper is not None:
        mask &= array <= upper
    return label_image(image, mask)


@CLASSIC.register(
    "otsu", description="Otsu threshold (multi-Otsu for classes > 2)", task="segmentation"
)
def otsu(
    image: Image,
    *,
    mask: np.ndarray | Image | None = None,
    classes: int = 2,
    foreground: str = "bright",
) -> Image:
    """Otsu's global threshold(s): labels ``0..classes-1`` by increasing intensity, or by
    decreasing intensity with ``foreground="dark"`` (vessels in a fundus photograph, lungs
    in an X-ray: the structure is the dark class).

    Two classes use :func:`otsu_threshold` (numpy; equal to scikit-image's
    ``threshold_otsu``); more classes use scikit-image's ``threshold_multiotsu`` (the
    ``classic`` extra). A voxel equal to a threshold goes to the lower class, as in
    ``np.digitize(image, thresholds)`` and ``image > threshold_otsu(image)``.

    Args:
        image: a single-channel 2D or 3D image.
        mask: optional boolean array (or Image) of the image's spatial shape; thresholds are
            computed from the voxels inside it and voxels outside get label 0.
        classes: number of classes (>= 2).
        foreground: ``bright`` (label ``classes - 1`` is the brightest class) or ``dark``
            (it is the darkest).

    Returns:
        A uint8 label map on the image's grid. A constant image (or constant inside the
        mask) gives an all-zero map and a ``UserWarning``.

    Raises:
        ConfigError: for ``classes < 2`` or > 255, a mask of another shape, an empty mask,
            fewer distinct intensities than classes, or ``foreground`` not bright or dark.
        DatasetError: for a multi-channel image or NaN intensities.
    """
    array = checked_image(image)
    if not 2 <= int(classes) <= 255:
        raise ConfigError(f"otsu: classes must be between 2 and 255, got {classes}")
    if foreground not in ("bright", "dark"):
        raise ConfigError(f"otsu: foreground must be bright or dark, got {foreground!r}")
    inside = None  # no mask: every voxel, without copying them
    if mask is not None:
        inside = np.asarray(mask.array if isinstance(mask, Image) else mask).astype(bool)
        if inside.shape != array.shape:
            raise ConfigError(f"otsu: mask of shape {inside.shape} for an image {array.shape}")
        if not inside.any():
            raise ConfigError("otsu: the mask is empty; no voxels to threshold")
    values = array.ravel() if inside is None else array[inside]
    if values.min() == values.max():
        warnings.warn(
            f"otsu: the image is constant ({values.min():g}) inside the mask; "
            "returning an empty label map",
            UserWarning,
            stacklevel=2,
        )
        return label_image(image, np.zeros(array.shape, dtype=np.uint8))
    if classes == 2:
        thresholds = np.array([otsu_threshold(values)])
    else:
        try:
            from skimage.filters import threshold_multiotsu
        except ImportError as error:  # pragma: no cover - the classic extra is missing
            raise ConfigError(
                "otsu with classes > 2 needs scikit-image: pip install 'medseg[classic]'"
            ) from error
        try:
            thresholds = threshold_multiotsu(values, classes=int(classes))
        except ValueError as error:
            raise ConfigError(f"otsu: cannot split into {classes} classes: {error}") from None
    if classes == 2:  # the same as np.digitize(right=True) with one threshold, faster
        labels = (array <= thresholds[0]) if foreground == "dark" else (array > thresholds[0])
        labels = labels.astype(np.uint8)
    else:
        labels = np.digitize(array, thresholds, right=True).astype(np.uint8)
        if foreground == "dark":
            labels = (int(classes) - 1 - labels).astype(np.uint8)
    if inside is not None:
        labels[~inside] = 0
    return label_image(image, labels)
