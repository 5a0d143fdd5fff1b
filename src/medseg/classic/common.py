"""Input checks shared by the classical methods: one channel, no NaN, seeds inside the image.

Every method of ``medseg.classic`` takes an :class:`~medseg.io.Image` and returns a label map
as an ``Image`` (uint8, 0 = background) on the input's grid; these helpers make the checks and
the output the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.errors import ConfigError, DatasetError
from medseg.io import Image


def checked_image(image: Image, *, name: str = "image", keep_float32: bool = False) -> np.ndarray:
    """The single channel of ``image`` as a float64 array ``(*spatial)``.

    Args:
        image: a 2D or 3D image, ``(*spatial)`` or ``(1, *spatial)``.
        name: what to call the image in error messages.
        keep_float32: a float32 image stays float32 (no copy), for methods whose library
            works in the image's own type (SimpleITK's region growing).

    Returns:
        A float64 array (float32 with ``keep_float32`` and a float32 image) of shape
        ``image.spatial_shape``.

    Raises:
        DatasetError: for more than one channel, or NaN intensities (the message counts them).

    Example:
        >>> checked_image(Image(np.ones((1, 2, 3)), spacing=(1.0, 1.0))).shape
        (2, 3)
    """
    if not isinstance(image, Image):
        raise ConfigError(f"{name} must be a medseg.io.Image, got {type(image).__name__}")
    if image.num_channels != 1:
        raise DatasetError(
            f"{name} has {image.num_channels} channels; classical methods take one channel "
            "(select it with image.with_array(image.array[c]))"
        )
    array = np.asarray(image.channels_first()[0])
    if not (keep_float32 and array.dtype == np.float32):
        array = array.astype(np.float64, copy=False)
    # the sum is NaN when any voxel is (or +inf meets -inf): count only then
    nan_count = int(np.isnan(array).sum()) if np.isnan(array.sum()) else 0
    if nan_count:
        raise DatasetError(
            f"{name} has {nan_count} NaN voxel(s); fill or mask them before segmenting"
        )
    return array


def checked_seeds(
    seeds: Sequence[Sequence[int]], shape: Sequence[int], *, name: str = "seeds"
) -> np.ndarray:
    """Seeds as an ``(N, D)`` int array of voxel indices in array axis order, all inside.

    Args:
        seeds: voxel indices, one sequence of ``D`` ints per seed (array axis order).
        shape: the image's spatial shape ``(*spatial)``.
        name: what to call the seeds in error messages.

    Returns:
        An ``(N, D)`` int64 array; ``N`` may be 0 (an empty sequence).

    Raises:
        ConfigError: for a seed with the wrong number of indices, a non-integer index or a
            seed outside the image (naming the seed and the shape).

    Example:
        >>> checked_seeds([(1, 2)], (4, 4)).tolist()
        [[1, 2]]
    """
    shape = tuple(int(s) for s in shape)
    rows = [tuple(seed) for seed in seeds]
    if not rows:
        return np.zeros((0, len(shape)), dtype=np.int64)
    for seed in rows:
        if len(seed) != len(shape):
            raise ConfigError(
                f"{name}: seed {seed} has {len(seed)} indices; the image has shape {shape} "
                f"({len(shape)} axes, array axis order)"
            )
        if any(not float(v).is_integer() for v in seed):
            raise ConfigError(f"{name}: seed {seed} must hold integer voxel indices")
        if any(v < 0 or v >= s for v, s in zip(seed, shape, strict=True)):
            raise ConfigError(
                f"{name}: seed {tuple(int(v) for v in seed)} is outside the image of shape "
                f"{shape} (indices in array axis order)"
            )
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), len(shape))


def label_image(image: Image, mask: np.ndarray) -> Image:
    """A uint8 label map on the grid of ``image`` (spacing, origin, direction).

    Args:
        image: the input image (its channel axis, if any, is dropped).
        mask: labels or a boolean mask of shape ``image.spatial_shape``.

    Returns:
        An ``Image`` with a uint8 ``(*spatial)`` array, 0 = background.
    """
    mask = np.asarray(mask)
    if mask.shape != image.spatial_shape:
        raise ValueError(f"label map of shape {mask.shape} for an image {image.spatial_shape}")
    return Image(mask.astype(np.uint8), image.spacing, image.origin, image.direction)
