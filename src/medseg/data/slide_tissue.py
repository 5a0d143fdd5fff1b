"""Tissue masks of whole-slide images: where on the glass there is tissue to sample tiles from.

``tissue_mask(slide)`` works on a thumbnail (longer side ``max_size`` pixels):

1. **Saturation** ``S = (max(R, G, B) - min(R, G, B)) / max(R, G, B)`` (HSV): glass is white or
   grey (S near 0), stained tissue is pink/purple (S well above 0), whatever the brightness.
2. **Otsu's threshold** on S (Otsu 1979, between-class variance over a 256-bin histogram,
   ``otsu_threshold``), never below ``min_saturation`` so a slide of only glass gives an
   empty mask rather than a mask of noise.
3. **Dark pixels are excluded**: value ``V = max(R, G, B) / 255`` below ``max_dark_value``
   (0.2) marks black pen, marker dots, slide-label shadows and debris. Their saturation can
   exceed Otsu's threshold (dark pixels have a noisy, large S), but H&E tissue is never that
   dark at thumbnail scale. **Green and blue-green pen** (hue in ``pen_hue_deg``, 75-190 deg,
   saturated) is excluded too: haematoxylin (blue-purple, ~240-300 deg) and eosin (pink,
   ~300-360 deg) never take those hues. Blue pen over tissue is not told apart (its hue is
   haematoxylin's).
4. **Holes filled** (``scipy.ndimage.binary_fill_holes``): gland lumens and fat inside tissue
   count as tissue.
5. **Small components removed**: connected pieces under ``min_area_mm2`` (0.05 mm^2 by
   default, about a 220 µm square), the pixel area being ``(mpp * downsample / 1000)^2`` mm^2,
   so the rule is the same at any thumbnail size. It needs the slide's microns per pixel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.io.slide import Slide

__all__ = ["otsu_threshold", "rgb_to_hsv", "tissue_mask"]


def tissue_mask(
    slide: Slide,
    *,
    max_size: int = 2048,
    min_area_mm2: float = 0.05,
    min_saturation: float = 0.05,
    max_dark_value: float = 0.2,
    pen_hue_deg: tuple[float, float] | None = (75.0, 190.0),
    fill_holes: bool = True,
) -> tuple[np.ndarray, float]:
    """The tissue mask of ``slide`` on its thumbnail (see the module docstring for the steps).

    Args:
        slide: an RGB slide (``medseg.io.slide.open_slide``).
        max_size: the thumbnail's longer side in pixels.
        min_area_mm2: smallest tissue piece kept, in mm^2 (0: keep all).
        min_saturation: lowest saturation threshold (Otsu's threshold is raised to it).
        max_dark_value: pixels with ``max(R, G, B) / 255`` below this are not tissue.
        pen_hue_deg: saturated pixels with a hue in this range (degrees) are pen, not
            tissue; None keeps them.
        fill_holes: fill holes inside tissue.

    Returns:
        ``(mask (h, w) bool, downsample)``: mask pixel ``(i, j)`` covers level-0 pixels
        ``[i * downsample, (i + 1) * downsample)`` (rows) and likewise for columns.

    Raises:
        ConfigError: the slide has no mpp (open it with ``mpp=`` / pass ``--mpp``) while
            ``min_area_mm2 > 0``, or the slide is not RGB.
    """
    if slide.channels < 3:
        raise ConfigError(
            f"{slide.path}: tissue detection needs an RGB slide, got {slide.channels} channel(s)"
        )
    if min_area_mm2 > 0 and slide.mpp is None:
        raise ConfigError(
            f"{slide.path}: the slide does not record its microns per pixel, needed to "
            f"remove tissue pieces under {min_area_mm2:g} mm^2; pass --mpp (mpp= in Python)"
        )
    thumb, downsample = slide.thumbnail(max_size)
    hue, sat, value = rgb_to_hsv(thumb[..., :3])
    candidates = sat[value >= max_dark_value]
    threshold = max(otsu_threshold(candidates), min_saturation) if candidates.size else 1.0
    mask = (sat > threshold) & (value >= max_dark_value)
    if pen_hue_deg is not None:
        lo, hi = pen_hue_deg
        mask &= ~((hue >= lo) & (hue <= hi) & (sat > threshold))
    if fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    if min_area_mm2 > 0:
        pixel_mm2 = (float(slide.mpp) * downsample / 1000.0) ** 2  # type: ignore[arg-type]
        mask = _remove_small(mask, min_area_mm2 / pixel_mm2)
    return mask, float(downsample)


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees, 0-360), saturation and value (0-1) of an ``(..., 3)`` uint8 RGB array.

    Grey pixels (max = min) get hue 0 and saturation 0; black gets saturation 0.

    Example:
        >>> h, s, v = rgb_to_hsv(np.array([[255, 0, 0], [0, 0, 255], [128, 128, 128]], np.uint8))
        >>> h.round(1).tolist(), s.round(2).tolist(), v.round(2).tolist()
        ([0.0, 240.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.5])
    """
    rgb = np.asarray(rgb, dtype=np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    span = high - low
    sat = np.divide(span, high, out=np.zeros_like(high), where=high > 0)
    safe = np.where(span > 0, span, 1.0)
    hue = np.where(
        high == r,
        (g - b) / safe % 6.0,
        np.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = np.where(span > 0, hue * 60.0, 0.0)
    return hue, sat, high


def otsu_threshold(values: np.ndarray, *, bins: int = 256) -> float:
    """Otsu's threshold (maximal between-class variance) of ``values``.

    Pixels above the returned value form the upper class. Constant input returns that
    constant. Matches ``skimage.filters.threshold_otsu`` (same 256-bin histogram, bin centres).

    Example:
        >>> float(otsu_threshold(np.array([0.1] * 50 + [0.9] * 50)))  # top of the lower mode
        0.1015625
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return lo
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    weight1 = np.cumsum(counts)  # class 1: bins 0..i
    weight2 = np.cumsum(counts[::-1])[::-1]  # class 2: bins i..end
    mean1 = np.cumsum(counts * centres) / np.maximum(weight1, 1)
    mean2 = (np.cumsum((counts * centres)[::-1]) / np.maximum(weight2[::-1], 1))[::-1]
    variance = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centres[int(np.argmax(variance))])


def _remove_small(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    """``mask`` without the 8-connected components of fewer than ``min_pixels`` pixels."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]
