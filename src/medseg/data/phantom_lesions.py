"""Rendering one classification phantom: a body, an organ, cysts and the deciding lesion.

``render_phantom`` draws the anatomy (all draws made whatever the label, so both classes share
its distribution), paints it on a grid ``_SUPERSAMPLE`` times finer and averages it down
(partial volume), then adds a smooth texture, a multiplicative bias field, a global gain and
Gaussian noise. The tasks and classes are described in ``medseg.data.phantoms_classification``.
"""

from __future__ import annotations

import numpy as np

from medseg.data.phantom_artefacts import add_noise, bias_field, block_mean
from medseg.data.phantom_shapes import Blob, Body, body_mask, grid_axes, paint

_SUPERSAMPLE = 2
_NOISE_STD = 0.03
_BIAS_STRENGTH = 0.25
_TEXTURE_STRENGTH = 0.06
#: the values painted on the fine grid; ``_draw_levels`` gives each its intensity (0: air)
_BODY, _ORGAN, _CYST, _LESION = 1, 2, 3, 4


def render_phantom(
    seed: np.random.SeedSequence, label: int, kind: str, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """One image ``(*shape)`` float32 in [0, 1] and its deciding-lesion mask ``(*shape)`` bool.

    All random draws are made whatever the label, so the two classes share their anatomy
    distribution and a seed's organ does not depend on whether its lesion is drawn.
    """
    anatomy_rng, texture_rng, bias_rng, noise_rng = (
        np.random.default_rng(s) for s in seed.spawn(4)
    )
    size = float(shape[0])
    body, organ, cysts = _draw_anatomy(anatomy_rng, len(shape), size)
    lesion = _draw_lesion(anatomy_rng, organ, label, kind, size)
    levels, gain = _draw_levels(anatomy_rng)
    image, mask = _paint(shape, body, organ, cysts, lesion, levels)
    image = _acquire(image, shape, gain, texture_rng, bias_rng, noise_rng)
    return image.astype(np.float32), mask


def _draw_anatomy(rng: np.random.Generator, d: int, size: float) -> tuple[Body, Blob, list[Blob]]:
    """The body outline, the organ and the zero to two cysts shown (both always drawn)."""
    body = Body((size * rng.uniform(0.42, 0.48), size * rng.uniform(0.42, 0.48)))
    organ = _blob(
        rng,
        rng.uniform(-0.06, 0.06, d) * size,
        rng.uniform(0.22, 0.32, d) * size,
        amplitude=rng.uniform(0.1, 0.2),
        frequencies=(1, 3),
    )
    cysts = [
        _blob(
            rng,
            _inside(rng, organ, 0.6),
            rng.uniform(0.04, 0.07, d) * size,
            amplitude=rng.uniform(0.0, 0.1),
            frequencies=(1, 2),
        )
        for _ in range(2)
    ]
    num_cysts = int(rng.integers(0, 3))
    return body, organ, cysts[:num_cysts]


def _draw_lesion(
    rng: np.random.Generator, organ: Blob, label: int, kind: str, size: float
) -> Blob | None:
    """The deciding lesion, or None when the image shows none (``"lesion"`` class 0).

    ``"lesion"``: a small blob drawn for both classes, shown for class 1. ``"shape"``: a
    smooth (benign, class 0) and a spiky (malignant, class 1) outline around one centre and
    size, both drawn; the label picks one.
    """
    d = organ.centre.size
    if kind == "lesion":
        radius = np.maximum(rng.uniform(0.05, 0.08, d) * size, 2.0)
        lesion = _blob(
            rng,
            _inside(rng, organ, 0.5),
            radius,
            amplitude=rng.uniform(0.0, 0.1),
            frequencies=(1, 2),
        )
        return lesion if label == 1 else None
    radius = np.full(d, rng.uniform(0.10, 0.15) * size) * rng.uniform(0.85, 1.15, d)
    centre = _inside(rng, organ, 0.3)
    smooth = _blob(
        rng, centre, radius, amplitude=rng.uniform(0.03, 0.08), frequencies=(1, 2), terms=4
    )
    spiky = _blob(
        rng, centre, radius * 0.9, amplitude=rng.uniform(0.3, 0.45), frequencies=(5, 9), terms=6
    )
    return spiky if label == 1 else smooth


def _draw_levels(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Intensity per painted value (air, body, organ, cyst, lesion) and the global gain."""
    tissue = rng.uniform(0.32, 0.38)
    organ_level = tissue + rng.uniform(0.12, 0.2)
    levels = np.array(
        [
            0.0,  # air
            tissue,  # body
            organ_level,  # organ
            organ_level - rng.uniform(0.12, 0.2),  # cyst
            organ_level + rng.uniform(0.18, 0.28),  # lesion
        ],
        dtype=np.float32,
    )
    return levels, rng.uniform(0.75, 1.25)


def _paint(
    shape: tuple[int, ...],
    body: Body,
    organ: Blob,
    cysts: list[Blob],
    lesion: Blob | None,
    levels: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint on the fine grid, then average down: the clean image and the lesion mask (every
    voxel the lesion covers at least partly)."""
    d = len(shape)
    factors = (_SUPERSAMPLE,) * d
    fine_axes = grid_axes(shape, (1.0,) * d, factors)
    fine = np.where(body_mask(fine_axes, body), np.uint8(_BODY), np.uint8(0))
    paint(fine, fine_axes, organ, _ORGAN)
    for cyst in cysts:
        paint(fine, fine_axes, cyst, _CYST)
    if lesion is not None:
        paint(fine, fine_axes, lesion, _LESION)
    image = block_mean(levels[fine], factors)
    mask = block_mean((fine == _LESION).astype(np.float32), factors) > 0
    return image, mask


def _acquire(
    image: np.ndarray,
    shape: tuple[int, ...],
    gain: float,
    texture_rng: np.random.Generator,
    bias_rng: np.random.Generator,
    noise_rng: np.random.Generator,
) -> np.ndarray:
    """Texture, bias field, gain and noise, clipped to [0, 1] (and quantised to the uint8
    steps a PNG stores in 2D)."""
    d = len(shape)
    axes = grid_axes(shape, (1.0,) * d, (1,) * d)
    from scipy import ndimage  # here: importing scipy.ndimage costs 0.2 s of every CLI start

    texture = ndimage.gaussian_filter(
        texture_rng.standard_normal(shape, dtype=np.float32), sigma=1.5
    )
    texture /= max(float(texture.std()), 1e-6)
    image = image * (1.0 + np.float32(_TEXTURE_STRENGTH) * texture)
    image = image * bias_field(bias_rng, axes, shape, _BIAS_STRENGTH) * np.float32(gain)
    image = np.clip(add_noise(image, noise_rng, kind="gaussian", std=_NOISE_STD), 0.0, 1.0)
    if d == 2:  # the exact values a uint8 PNG stores
        image = np.rint(image * 255.0).astype(np.float32) / np.float32(255.0)
    return image


def _blob(
    rng: np.random.Generator,
    centre: np.ndarray,
    semi_axes: np.ndarray,
    *,
    amplitude: float,
    frequencies: tuple[int, int],
    terms: int = 6,
) -> Blob:
    """A ``phantom_shapes.Blob`` whose outline wobbles by ``amplitude`` at the given frequencies."""
    d = len(centre)
    weights = rng.uniform(-1.0, 1.0, terms)
    weights *= amplitude / max(np.abs(weights).sum(), 1e-12)
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    directions = rng.normal(size=(terms, d))
    directions /= np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
    return Blob(
        centre=np.asarray(centre, dtype=float),
        rotation=q * np.sign(np.diag(r)),
        semi_axes=np.asarray(semi_axes, dtype=float),
        directions=directions,
        frequencies=rng.integers(frequencies[0], frequencies[1] + 1, terms).astype(float),
        phases=rng.uniform(0.0, 2 * np.pi, terms),
        weights=weights,
    )


def _inside(rng: np.random.Generator, organ: Blob, reach: float) -> np.ndarray:
    """A random point within ``reach`` of the organ's semi-axes from its centre."""
    d = organ.centre.size
    v = rng.normal(size=d)
    v /= max(np.linalg.norm(v), 1e-12)
    return organ.centre + organ.rotation @ (v * rng.uniform(0.0, reach) * organ.semi_axes)
