"""Through-plane super-resolution: thick slices simulated from thin ones, and their inverse.

The model of a thick-slice acquisition (``mode="super_resolution"`` of
:class:`medseg.enhance.config.DenoiseConfig`): along the slice axis ``a`` every ``f``
consecutive thin slices are averaged into one thick slice (a box slice profile: slice ``j``
integrates fine slices ``j f .. j f + f - 1``; a last, incomplete block averages what there is),
e.g. 5 mm slices from 1 mm data is ``f = 5``. Thick slice ``j``'s centre lies at fine index
``j f + (f - 1) / 2``.

The network's input is the thick volume interpolated back onto the fine grid linearly
(:func:`upsample_slices`, edge slices extended), its target the original; the residual U-Net
learns the correction. :func:`cubic_upsample` is the cubic-spline baseline
(``scipy.ndimage.zoom``, order 3, on the same grid alignment).

Example:
    >>> volume = np.arange(8.0).reshape(1, 8, 1)
    >>> thick_slices(volume, 4, 0)[0, :, 0].tolist()
    [1.5, 5.5]
    >>> upsample_slices(thick_slices(volume, 4, 0), 4, 0)[0, :, 0].tolist()
    [1.5, 1.5, 2.0, 3.0, 4.0, 5.0, 5.5, 5.5]
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from scipy import ndimage
from torch import nn

from medseg.enhance.config import DenoiseConfig
from medseg.errors import ConfigError, GeometryError
from medseg.io import Image


def _check(array: np.ndarray, factor: int, axis: int) -> None:
    if int(factor) < 1:
        raise ConfigError(f"the super-resolution factor must be >= 1, got {factor}")
    if not 0 <= axis < array.ndim - 1:
        raise ConfigError(
            f"slice axis {axis} is not a spatial axis of a (C, *spatial) array of shape "
            f"{array.shape}"
        )


def thick_slices(array: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Average every ``factor`` slices of ``(C, *spatial)`` along spatial ``axis``.

    Returns:
        ``(C, ...)`` float32 with ``ceil(n / factor)`` slices along ``axis``.
    """
    _check(array, factor, axis)
    array = np.asarray(array, dtype=np.float64)
    n, dim = array.shape[axis + 1], axis + 1
    starts = np.arange(0, n, factor)
    sums = np.add.reduceat(array, starts, axis=dim)
    counts = np.minimum(starts + factor, n) - starts
    shape = [1] * array.ndim
    shape[dim] = -1
    return (sums / counts.reshape(shape)).astype(np.float32)


def upsample_slices(low: np.ndarray, factor: int, axis: int, size: int | None = None) -> np.ndarray:
    """Linear interpolation of thick slices onto the fine grid (``size`` slices, default
    ``m * factor``); fine slices beyond the first/last thick centre take the edge value.

    A constant volume stays constant (the weights sum to one).
    """
    _check(low, factor, axis)
    low = np.asarray(low, dtype=np.float64)
    m, dim = low.shape[axis + 1], axis + 1
    size = m * factor if size is None else int(size)
    position = (np.arange(size) - (factor - 1) / 2) / factor
    position = np.clip(position, 0, m - 1)
    below = np.minimum(np.floor(position).astype(int), max(m - 2, 0))
    above = np.minimum(below + 1, m - 1)
    weight = position - below
    shape = [1] * low.ndim
    shape[dim] = -1
    weight = weight.reshape(shape)
    out = (1 - weight) * np.take(low, below, axis=dim) + weight * np.take(low, above, axis=dim)
    return out.astype(np.float32)


def simulate_thick_slices(array: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """The network's input for a fine ``(C, *spatial)`` volume: thick slices, interpolated back
    linearly to the same shape."""
    n = array.shape[axis + 1]
    return upsample_slices(thick_slices(array, factor, axis), factor, axis, n)


def cubic_upsample(low: np.ndarray, factor: int, axis: int, size: int | None = None) -> np.ndarray:
    """Cubic-spline baseline: ``scipy.ndimage.zoom`` (order 3, ``grid_mode=True`` so thick
    slice ``j`` covers fine slices ``j f .. j f + f - 1``), cropped to ``size``."""
    _check(low, factor, axis)
    zoom = [1.0] * low.ndim
    zoom[axis + 1] = float(factor)
    out = ndimage.zoom(
        np.asarray(low, dtype=np.float64), zoom, order=3, mode="nearest", grid_mode=True
    )
    size = low.shape[axis + 1] * factor if size is None else int(size)
    return np.take(out, np.arange(size), axis=axis + 1).astype(np.float32)


def fine_grid(image: Image, factor: int, axis: int, array: np.ndarray) -> Image:
    """``array`` on the fine grid of a thick-slice ``image``: spacing along ``axis`` divided
    by ``factor``, the first fine slice centred ``(f - 1) / 2f`` of a thick slice before the
    first thick centre (so the fine slices tile the thick ones)."""
    spacing = list(image.spacing)
    spacing[axis] = spacing[axis] / factor
    index = np.zeros((1, image.spatial_dims))
    index[0, axis] = -(factor - 1) / (2 * factor)
    origin = tuple(float(v) for v in image.index_to_world(index)[0])
    return Image(array, tuple(spacing), origin, image.direction)


def super_resolve_array(
    model: nn.Module, config: DenoiseConfig, low: np.ndarray, **kw: Any
) -> np.ndarray:
    """Upsample a thick-slice ``(C, *spatial)`` array by the run's factor along its axis:
    linear interpolation, then the network's correction (``denoise_array`` options in ``kw``).

    Returns:
        ``(C, ...)`` float32 with ``m * factor`` slices along the axis.
    """
    from medseg.enhance.apply import denoise_array

    factor, axis = config.sr_factor, config.sr_axis
    return denoise_array(model, config, upsample_slices(low, factor, axis), **kw)


def super_resolve_image(model: nn.Module, config: DenoiseConfig, image: Image, **kw: Any) -> Image:
    """Super-resolve an :class:`Image` of thick slices; the result is on the fine grid."""
    if image.spatial_dims != config.spatial_dims:
        raise GeometryError(
            f"the model was trained on {config.spatial_dims}D images; this one is "
            f"{image.spatial_dims}D"
        )
    out = super_resolve_array(model, config, image.channels_first(), **kw)
    return fine_grid(image, config.sr_factor, config.sr_axis, out if image.has_channels else out[0])


def super_resolve(
    run_dir: str | os.PathLike[str], image: Image, *, device: Any = None, mirror: bool = False
) -> Image:
    """Upsample a thick-slice ``image`` with a ``--mode super_resolution`` run.

    Raises:
        ConfigError: not a super-resolution run.
        GeometryError: an image of another dimension or channel count.
    """
    from medseg.device import resolve_device
    from medseg.enhance.apply import load_denoiser

    model, config = load_denoiser(run_dir)
    if config.mode != "super_resolution":
        raise ConfigError(f"{run_dir}: a {config.mode} run, not a super-resolution one")
    model.to(resolve_device(device or "cpu"))
    return super_resolve_image(model, config, image, mirror=mirror)
