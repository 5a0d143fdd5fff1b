"""The object model of a phantom whole-slide image, rendered region by region.

A slide is drawn from seeded object lists, never from a full-size array:

* tissue **blobs**: star-shaped regions ``r < R (1 + sum_k a_k cos(k theta + phi_k))``;
  tissue is their union (label 1), the rest is glass (label 0);
* **glands** (label 2): ellipses entirely inside tissue, not overlapping, each a pale lumen
  (inner ellipse, scale ``lumen``) in an epithelial rim lined by a ring of nuclei;
* **nuclei** (label 3): small ellipses, dense in the stroma and along the gland rims; a nucleus
  is drawn only on tissue, so ``labels > 0`` is exactly the union of the blobs.

Sizes are physical (microns), converted with the slide's mpp. ``render(model, y, x, h, w)``
draws only the objects whose bounding boxes touch the region (nuclei sorted by row for a
``searchsorted`` lookup), so any region costs the same whatever the slide size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SlideModel", "blob_mask", "make_model", "render"]

_HARMONICS = 4
_NUCLEUS_SPACING_UM = 15.0  # one stroma nucleus candidate per (15 um)^2
_GLAND_SPACING_UM = 150.0  # one gland candidate per (150 um)^2
_GLAND_RADIUS_UM = (40.0, 85.0)
_GLAND_NUCLEUS_STEP_UM = 9.0  # nuclei along a gland rim


@dataclass(frozen=True)
class SlideModel:
    """Object lists of a phantom slide, in level-0 pixels (rows ``y``, columns ``x``).

    Attributes:
        shape: ``(height, width)``.
        blobs: ``(B, 3 + 2K)``: cy, cx, R, K amplitudes, K phases.
        glands: ``(G, 6)``: cy, cx, semi-axis a (along angle), semi-axis b, angle, lumen scale.
        nuclei: ``(N, 6)`` sorted by cy: cy, cx, a, b, angle, haematoxylin concentration.
    """

    shape: tuple[int, int]
    blobs: np.ndarray
    glands: np.ndarray
    nuclei: np.ndarray
    max_nucleus: float


def blob_mask(blobs: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Tissue (union of the blobs) at points ``yy``, ``xx`` (broadcast), level-0 pixels.

    Points surely inside (``r < R (1 - sum |a|)``) or outside (``r > R (1 + sum |a|)``) a
    blob skip the trigonometry; only the band around its outline evaluates the harmonics.
    """
    inside = np.zeros(np.broadcast_shapes(yy.shape, xx.shape), dtype=bool)
    for blob in blobs:
        cy, cx, radius = blob[:3]
        amps, phases = blob[3 : 3 + _HARMONICS], blob[3 + _HARMONICS :]
        reach, core = radius * (1 + np.abs(amps).sum()), radius * (1 - np.abs(amps).sum())
        dy, dx = yy - cy, xx - cx
        near_y, near_x = np.abs(dy).min(), np.abs(dx).min()
        if (near_y > reach and (dy.min() > 0 or dy.max() < 0)) or (
            near_x > reach and (dx.min() > 0 or dx.max() < 0)
        ):
            continue
        r2 = dy * dy + dx * dx
        far = max(np.abs(dy).max(), 0.0) ** 2 + max(np.abs(dx).max(), 0.0) ** 2
        if far < core * core:  # the whole region inside the blob's core
            inside[...] = True
            return inside
        band = (r2 < reach * reach) & (r2 >= core * core)
        inside |= r2 < core * core
        if not band.any():
            continue
        by, bx = np.broadcast_to(dy, band.shape)[band], np.broadcast_to(dx, band.shape)[band]
        theta = np.arctan2(by, bx)
        bound = np.full(theta.shape, radius)
        for k, (amp, phase) in enumerate(zip(amps, phases, strict=True), start=2):
            bound += radius * amp * np.cos(k * theta + phase)
        inside[band] |= by * by + bx * bx < bound * bound
    return inside


def _ellipse(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, a: float, b: float, angle: float
) -> np.ndarray:
    """``(u/a)^2 + (v/b)^2`` at the points, ``u`` along ``angle`` (radians from the x axis)."""
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2


def make_model(shape: tuple[int, int], mpp: float, seed: int) -> SlideModel:
    """Draw the object lists of a slide of ``shape`` pixels at ``mpp`` microns per pixel."""
    rng = np.random.default_rng([int(seed), 0x51DE])
    h, w = shape
    blobs = _blobs(rng, h, w)
    glands = _glands(rng, blobs, h, w, mpp)
    nuclei = np.concatenate(
        [_stroma_nuclei(rng, blobs, glands, h, w, mpp), _gland_nuclei(rng, glands, mpp)]
    )
    nuclei = nuclei[np.argsort(nuclei[:, 0], kind="stable")]
    biggest = float(nuclei[:, 2:4].max()) if len(nuclei) else 0.0
    return SlideModel((h, w), blobs, glands, nuclei, biggest)


def _blobs(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    count = int(rng.integers(3, 7))
    centres = rng.uniform(0.22, 0.78, size=(count, 2)) * (h, w)
    radii = rng.uniform(0.12, 0.24, size=count) * min(h, w)
    amps = rng.uniform(-0.08, 0.08, size=(count, _HARMONICS))
    phases = rng.uniform(0, 2 * np.pi, size=(count, _HARMONICS))
    return np.column_stack([centres, radii, amps, phases])


def _glands(rng: np.random.Generator, blobs: np.ndarray, h: int, w: int, mpp: float) -> np.ndarray:
    step = _GLAND_SPACING_UM / mpp
    n = max(4, int(h * w / step**2))
    cands = np.column_stack(
        [
            rng.uniform(0, h, n),
            rng.uniform(0, w, n),
            rng.uniform(*_GLAND_RADIUS_UM, n) / mpp,
            rng.uniform(0.55, 0.9, n),
            rng.uniform(0, np.pi, n),
            rng.uniform(0.45, 0.65, n),
        ]
    )
    cands[:, 3] *= cands[:, 2]  # b = a * ratio
    around = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    kept = np.zeros((n, 6))
    count = 0
    for cy, cx, a, b, angle, lumen in cands:
        other = kept[:count]
        gap = np.hypot(other[:, 0] - cy, other[:, 1] - cx)
        if np.any(gap < (other[:, 2] + a) * 1.1):
            continue
        ys, xs = _outline(cy, cx, a * 1.15, b * 1.15, angle, around)
        if not blob_mask(blobs, ys, xs).all():
            continue
        kept[count] = cy, cx, a, b, angle, lumen
        count += 1
    return kept[:count].copy()


def _outline(
    cy: float, cx: float, a: float, b: float, angle: float, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    u, v = a * np.cos(t), b * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return cy + u * s + v * c, cx + u * c - v * s


def _stroma_nuclei(
    rng: np.random.Generator, blobs: np.ndarray, glands: np.ndarray, h: int, w: int, mpp: float
) -> np.ndarray:
    """Stroma nuclei on tissue outside the glands, drawn band by band (bounded memory)."""
    density = (mpp / _NUCLEUS_SPACING_UM) ** 2  # per pixel
    band = max(256, int(2**18 / max(w * density, 1e-9)))  # ~260k candidates per band
    reach = float(glands[:, 2].max()) * 1.2 if len(glands) else 0.0
    parts = []
    for top in range(0, h, band):
        rows = min(band, h - top)
        n = int(rng.poisson(rows * w * density))
        yy, xx = rng.uniform(top, top + rows, n), rng.uniform(0, w, n)
        a = rng.uniform(3.0, 5.0, n) / mpp
        b = a * rng.uniform(0.35, 0.85, n)
        angle, conc = rng.uniform(0, np.pi, n), rng.uniform(0.9, 1.4, n)
        keep = blob_mask(blobs, yy, xx)
        order = np.argsort(xx)
        sorted_x = xx[order]
        near_band = (glands[:, 0] > top - reach) & (glands[:, 0] < top + rows + reach)
        for cy, cx, ga, gb, gangle, _ in glands[near_band]:  # none inside a gland
            lo, hi = np.searchsorted(sorted_x, [cx - ga * 1.2, cx + ga * 1.2])
            idx = order[lo:hi]
            near = _ellipse(yy[idx], xx[idx], cy, cx, ga * 1.1, gb * 1.1, gangle) < 1
            keep[idx[near]] = False
        parts.append(np.column_stack([yy, xx, a, b, angle, conc])[keep])
    return np.concatenate(parts) if parts else np.zeros((0, 6))


def _gland_nuclei(rng: np.random.Generator, glands: np.ndarray, mpp: float) -> np.ndarray:
    rows = []
    for cy, cx, a, b, angle, lumen in glands:
        ring = (1 + lumen) / 2  # between the lumen and the outer edge
        perimeter = np.pi * (a + b) * ring
        n = max(6, int(perimeter * mpp / _GLAND_NUCLEUS_STEP_UM))
        t = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 2 * np.pi)
        ys, xs = _outline(cy, cx, a * ring, b * ring, angle, t)
        radial = np.arctan2(ys - cy, xs - cx)  # long axis points to the lumen
        long_axis = rng.uniform(3.5, 4.5, n) / mpp
        rows.append(
            np.column_stack([ys, xs, long_axis, long_axis * 0.55, radial, rng.uniform(1.0, 1.4, n)])
        )
    return np.concatenate(rows) if rows else np.zeros((0, 6))


def render(
    model: SlideModel, y: int, x: int, h: int, w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and stain concentrations of the region ``[y, y+h) x [x, x+w)`` (level 0).

    Returns:
        ``(labels (h, w) uint8, haematoxylin (h, w) float32, eosin (h, w) float32)``;
        labels 0 glass, 1 tissue, 2 gland, 3 nucleus; concentrations before texture/noise.
    """
    yy = np.arange(y, y + h, dtype=np.float64)[:, None]
    xx = np.arange(x, x + w, dtype=np.float64)[None, :]
    tissue = blob_mask(model.blobs, yy, xx)
    labels = tissue.astype(np.uint8)
    conc_h = np.where(tissue, np.float32(0.06), np.float32(0))
    conc_e = np.where(tissue, np.float32(0.45), np.float32(0))
    if not tissue.any():
        return labels, conc_h, conc_e
    for cy, cx, a, b, angle, lumen in model.glands:
        if cy + a < y or cy - a >= y + h or cx + a < x or cx - a >= x + w:
            continue
        y0, y1 = max(int(cy - a), y), min(int(cy + a) + 2, y + h)
        x0, x1 = max(int(cx - a), x), min(int(cx + a) + 2, x + w)
        sub = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
        q = _ellipse(yy[sub[0]], xx[:, sub[1]], cy, cx, a, b, angle)
        gland, inner = q < 1, q < lumen * lumen
        labels[sub][gland] = 2
        conc_e[sub][gland], conc_h[sub][gland] = 0.32, 0.15  # epithelial cytoplasm
        conc_e[sub][inner], conc_h[sub][inner] = 0.06, 0.02  # pale lumen
    reach = model.max_nucleus + 1
    lo, hi = np.searchsorted(model.nuclei[:, 0], [y - reach, y + h + reach])
    for cy, cx, a, b, angle, conc in model.nuclei[lo:hi]:
        if cx + a < x or cx - a >= x + w:
            continue
        y0, y1 = max(int(cy - a), y), min(int(cy + a) + 2, y + h)
        x0, x1 = max(int(cx - a), x), min(int(cx + a) + 2, x + w)
        if y1 <= y0 or x1 <= x0:
            continue
        sub = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
        nucleus = (_ellipse(yy[sub[0]], xx[:, sub[1]], cy, cx, a, b, angle) < 1) & tissue[sub]
        labels[sub][nucleus] = 3
        conc_h[sub][nucleus], conc_e[sub][nucleus] = conc, 0.25
    return labels, conc_h, conc_e
