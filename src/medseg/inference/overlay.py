"""Pictures of heatmaps (``medseg.inference.explain``): the slice a 3D map is shown on
(``peak_slice``) and a PNG of the image in grey with the heatmap over it (``save_overlay``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from medseg.errors import ConfigError, GeometryError
from medseg.fileutil import atomic_path, check_writable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OVERLAY_ALPHA = 0.6  # opacity of the heatmap where it is largest (it fades to 0 where the map is 0)
OVERLAY_CMAP = "jet"


def peak_slice(heatmap: Tensor | np.ndarray) -> int | None:
    """The axial slice (array axis 0 of a 3D ``(z, y, x)`` map) with the most heatmap mass.

    Returns:
        The slice index (the first one on ties; the middle one for an all-zero map), or None
        for a 2D map.

    Example:
        >>> h = np.zeros((4, 2, 2)); h[2, 0, 0] = 1.0
        >>> peak_slice(h), peak_slice(h[0])
        (2, None)
    """
    heat = _to_numpy(heatmap)
    if heat.ndim == 2:
        return None
    if heat.ndim != 3:
        raise ValueError(f"expected a 2D or 3D heatmap, got shape {heat.shape}")
    mass = np.nan_to_num(heat).reshape(len(heat), -1).sum(axis=1)
    return int(mass.argmax()) if mass.max() > 0 else len(heat) // 2


def _to_numpy(array: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(array, Tensor):
        return array.detach().cpu().float().numpy()
    return np.asarray(array, dtype=float)


def save_overlay(
    image: Tensor | np.ndarray,
    heatmap: Tensor | np.ndarray,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a PNG of the image in grey with the heatmap over it in colour.

    The heatmap's opacity grows with its value (transparent where it is 0), with a colour bar
    scaled to the map's maximum. A 3D map is shown on the axial slice (array axis 0) with the
    most heatmap mass (:func:`peak_slice`), named in the title.

    Args:
        image: ``(*spatial)`` or ``(C, *spatial)`` (the first channel is shown), 2D or 3D.
        heatmap: ``(*spatial)``, e.g. one item of :func:`grad_cam`'s output.
        path: the PNG to write (atomically: a temporary file renamed at the end).
        title: text above the picture (default ``"heatmap"``).
        overwrite: replace an existing file.

    Returns:
        The written path.

    Raises:
        OverwriteError: ``path`` exists and ``overwrite`` is False.
        GeometryError: the image does not match the heatmap.
        ConfigError: the heatmap is not 2D or 3D.
    """
    target = check_writable(path, overwrite=overwrite)
    picture, heat = _matching_arrays(image, heatmap)
    z = peak_slice(heat)
    text = title or "heatmap"
    if z is not None:
        picture = picture[z]
        text = f"{text}\naxial slice {z} of {len(heat)} (most heatmap mass)"
    top = max(float(heat.max()), 1e-12)
    figure = _overlay_figure(picture, heat if z is None else heat[z], top, text)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return target


def _matching_arrays(
    image: Tensor | np.ndarray, heatmap: Tensor | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(picture, heat)`` of one shape, 2D or 3D: the image (its first channel when it has
    channels) and the heatmap with NaN/inf set to 0."""
    heat = np.nan_to_num(_to_numpy(heatmap), nan=0.0, posinf=0.0, neginf=0.0)
    picture = _to_numpy(image)
    if heat.ndim not in (2, 3):
        raise ConfigError(f"save_overlay draws 2D or 3D heatmaps, got shape {heat.shape}")
    if picture.shape != heat.shape:
        if picture.ndim == heat.ndim + 1 and picture.shape[1:] == heat.shape:
            picture = picture[0]
        else:
            raise GeometryError(
                f"image {picture.shape} does not match heatmap {heat.shape}: "
                "expected (*spatial) or (C, *spatial)"
            )
    return picture, heat


def _overlay_figure(picture: np.ndarray, shown: np.ndarray, top: float, title: str) -> Figure:
    """The 2D ``picture`` in grey (windowed to its 0.5-99.5 percentiles) with ``shown`` over it
    in colour, opaque in proportion to ``shown / top``, a colour bar from 0 to ``top``, and
    ``title``."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    level = np.clip(shown / top, 0.0, 1.0)
    cmap = colormaps[OVERLAY_CMAP]
    rgba = cmap(level)
    rgba[..., 3] = OVERLAY_ALPHA * level

    figure = Figure(figsize=(4.4, 4.0))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    finite = picture[np.isfinite(picture)]
    low, high = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    ax.imshow(
        np.nan_to_num(picture),
        cmap="gray",
        vmin=low,
        vmax=max(high, low + 1e-6),
        interpolation="nearest",
    )
    ax.imshow(rgba, interpolation="nearest")
    mappable = ScalarMappable(norm=Normalize(0.0, top), cmap=cmap)
    figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return figure
