"""Anatomy of the synthetic phantoms: smooth blobs, thin tubes and a body outline.

Every shape lives in **physical space**: coordinates are millimetres from the centre of the
field of view, in array axis order (``(z, y, x)`` in 3D, ``(y, x)`` in 2D). A shape is
sampled once per case (``sample_anatomy``) and then rasterised on any grid
(``grid_axes``), so the same seed gives the same anatomy whatever the spacing: a coarser
slice spacing samples the same organ more coarsely, it does not squash it.

Shapes:

- ``Blob``: a star-shaped, smoothly perturbed ellipsoid (organ, lesion). Its surface is
  ``|p| = 1 + sum_j a_j cos(k_j * pi * (u . v_j) + phi_j)`` in the ellipsoid's own frame,
  with ``p = R^T (x - c) / semi_axes``, ``u = p / |p|``, random unit vectors ``v_j`` and
  ``sum_j |a_j| = amplitude``, so the radius stays within ``[1 - amplitude, 1 + amplitude]``
  times the semi-axes. The same formula works in 2D and 3D.
- ``Tube``: the set of points within ``radius`` mm of a polyline (vessel-like).
- ``Body``: an elliptic cylinder along the leading axes (an ellipse in 2D); outside it is air.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: The structure kinds a phantom label can be, in sampling order.
STRUCTURES = ("organ", "lesion", "vessel")
MAX_LESIONS = 2


@dataclass(frozen=True, eq=False)
class Blob:
    """A smoothly perturbed ellipsoid (see the module docstring).

    Attributes:
        centre: ``(D,)`` mm.
        rotation: ``(D, D)`` orthogonal matrix; column ``k`` is the direction of semi-axis ``k``.
        semi_axes: ``(D,)`` mm.
        directions: ``(J, D)`` unit vectors ``v_j`` of the radius perturbation.
        frequencies: ``(J,)`` integers ``k_j``.
        phases: ``(J,)`` radians.
        weights: ``(J,)`` amplitudes ``a_j`` (``sum |a_j|`` is the relative radius wobble).
    """

    centre: np.ndarray
    rotation: np.ndarray
    semi_axes: np.ndarray
    directions: np.ndarray
    frequencies: np.ndarray
    phases: np.ndarray
    weights: np.ndarray

    @property
    def reach(self) -> float:
        """Radius (mm) of a sphere around ``centre`` that contains the blob."""
        return float(self.semi_axes.max() * (1.0 + np.abs(self.weights).sum()))


@dataclass(frozen=True, eq=False)
class Tube:
    """Points within ``radius`` mm of the polyline ``points`` (``(M, D)`` mm)."""

    points: np.ndarray
    radius: float


@dataclass(frozen=True)
class Body:
    """Elliptic cylinder over the last two axes (an ellipse in 2D), centred at 0."""

    semi_axes: tuple[float, float]


@dataclass(frozen=True, eq=False)
class Anatomy:
    """One case's shapes; an empty tuple where a structure is absent in this case."""

    body: Body
    organ: tuple[Blob, ...]
    lesions: tuple[Blob, ...]
    vessel: tuple[Tube, ...]

    def shapes(self, kind: str) -> tuple[Blob | Tube, ...]:
        """The shapes that make up structure ``kind`` (one of ``STRUCTURES``)."""
        return {"organ": self.organ, "lesion": self.lesions, "vessel": self.vessel}[kind]


# ---------------------------------------------------------------- sampling


def sample_anatomy(
    rng: np.random.Generator, fov_mm: Sequence[float], *, absent: Sequence[str], p_absent: float
) -> Anatomy:
    """Draw one case's anatomy inside a field of view centred at 0.

    The draws do not depend on ``p_absent`` or on which structures are labelled (absence is
    decided with one uniform draw per structure, always made), so changing those knobs keeps
    the other shapes of a seed unchanged.

    Args:
        rng: the case's anatomy random generator.
        fov_mm: ``(D,)`` field of view in mm.
        absent: structure kinds that may be missing from a case.
        p_absent: probability that each structure in ``absent`` is missing.

    Returns:
        The ``Anatomy``; a missing structure has no shapes (``lesions == ()``). Lesions are
        placed inside the organ even when the organ itself is missing from the case.
    """
    fov = np.asarray(fov_mm, dtype=float)
    size = float(fov.min())
    # body: 84-96 % of the in-plane FOV, leaving air in the corners
    body = Body(
        (float(fov[-2] * rng.uniform(0.42, 0.48)), float(fov[-1] * rng.uniform(0.42, 0.48)))
    )
    # organ: 18-30 % of the FOV as semi-axes, near the centre, wobble up to 25 % of its radius
    organ = _sample_blob(
        rng,
        centre=rng.uniform(-0.08, 0.08, fov.size) * fov,
        semi_axes=rng.uniform(0.18, 0.30, fov.size) * size,
        amplitude=rng.uniform(0.1, 0.25),
    )
    num_lesions = int(rng.integers(1, MAX_LESIONS + 1))
    lesions = []
    for _ in range(MAX_LESIONS):  # always draw MAX_LESIONS so later draws stay aligned
        inside = organ.rotation @ (_unit(rng, fov.size) * rng.uniform(0.0, 0.6) * organ.semi_axes)
        lesions.append(
            _sample_blob(
                rng,
                centre=organ.centre + inside,
                semi_axes=rng.uniform(0.05, 0.09, fov.size) * size,
                amplitude=rng.uniform(0.05, 0.15),
            )
        )
    vessel = _sample_vessel(rng, organ, fov)
    missing = {kind: bool(rng.random() < p_absent) and kind in absent for kind in STRUCTURES}
    return Anatomy(
        body=body,
        organ=() if missing["organ"] else (organ,),
        lesions=() if missing["lesion"] else tuple(lesions[:num_lesions]),
        vessel=() if missing["vessel"] else vessel,
    )


def _sample_blob(
    rng: np.random.Generator,
    *,
    centre: np.ndarray,
    semi_axes: np.ndarray,
    amplitude: float,
    terms: int = 6,
) -> Blob:
    d = centre.size
    weights = rng.uniform(-1.0, 1.0, terms)
    weights *= amplitude / np.abs(weights).sum()
    return Blob(
        centre=np.asarray(centre, dtype=float),
        rotation=_rotation(rng, d),
        semi_axes=np.asarray(semi_axes, dtype=float),
        directions=np.stack([_unit(rng, d) for _ in range(terms)]),
        frequencies=rng.integers(1, 4, terms).astype(float),
        phases=rng.uniform(0.0, 2 * np.pi, terms),
        weights=weights,
    )


def _sample_vessel(rng: np.random.Generator, organ: Blob, fov: np.ndarray) -> tuple[Tube, ...]:
    """A curved main tube passing by the organ centre plus one thinner branch."""
    size = float(fov.min())
    direction = _unit(rng, fov.size)
    half_length = 0.35 * size
    start = organ.centre - half_length * direction + rng.normal(0, 0.03, fov.size) * size
    end = organ.centre + half_length * direction + rng.normal(0, 0.03, fov.size) * size
    bend = organ.centre + rng.normal(0, 0.08, fov.size) * size
    main = _bezier(start, bend, end)
    fork = main[int(rng.integers(len(main) // 3, 2 * len(main) // 3))]
    tip = fork + _unit(rng, fov.size) * rng.uniform(0.2, 0.3) * size
    branch = _bezier(fork, (fork + tip) / 2 + rng.normal(0, 0.03, fov.size) * size, tip)
    radius = rng.uniform(1.2, 2.0)  # mm: 2.4-4 mm wide, a few voxels at 1 mm spacing
    return Tube(main, radius), Tube(branch, 0.7 * radius)


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, *, step_mm: float = 1.5) -> np.ndarray:
    length = np.linalg.norm(p1 - p0) + np.linalg.norm(p2 - p1)
    t = np.linspace(0.0, 1.0, max(2, int(np.ceil(length / step_mm)) + 1))[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _unit(rng: np.random.Generator, d: int) -> np.ndarray:
    v = rng.normal(size=d)
    return v / max(np.linalg.norm(v), 1e-12)


def _rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))  # uniform (Haar) orthogonal matrix


# ---------------------------------------------------------------- rasterisation


def grid_axes(
    shape: Sequence[int], spacing: Sequence[float], factors: Sequence[int]
) -> list[np.ndarray]:
    """Physical coordinates (mm) of a grid centred at 0, optionally supersampled.

    Voxel ``i`` of an axis with ``n`` voxels of size ``s`` covers
    ``[i * s - n * s / 2, (i + 1) * s - n * s / 2]``; with ``factor`` ``f`` it is sampled at
    ``f`` evenly spaced sub-voxel centres.

    Returns:
        One ``(n * f,)`` float32 array per axis.
    """
    return [
        ((np.arange(n * f) + 0.5) * (s / f) - n * s / 2).astype(np.float32)
        for n, s, f in zip(shape, spacing, factors, strict=True)
    ]


def body_mask(axes: Sequence[np.ndarray], body: Body) -> np.ndarray:
    """Boolean ``(*shape)`` mask of the body (True inside) on the grid ``axes``."""
    y, x = np.ix_(axes[-2], axes[-1])
    inside = (y / body.semi_axes[0]) ** 2 + (x / body.semi_axes[1]) ** 2 <= 1.0
    return np.broadcast_to(inside, tuple(a.size for a in axes)).copy()


def paint(labels: np.ndarray, axes: Sequence[np.ndarray], shape: Blob | Tube, value: int) -> None:
    """Set ``labels`` to ``value`` (in place) wherever ``shape`` covers a grid point."""
    if isinstance(shape, Blob):
        _paint_region(
            labels,
            axes,
            shape.centre - shape.reach,
            shape.centre + shape.reach,
            lambda pts: _blob_inside(shape, pts),
            value,
        )
        return
    for a, b in zip(shape.points[:-1], shape.points[1:], strict=True):
        lo, hi = np.minimum(a, b) - shape.radius, np.maximum(a, b) + shape.radius
        _paint_region(
            labels,
            axes,
            lo,
            hi,
            lambda pts, a=a, b=b: _segment_distance2(pts, a, b) <= shape.radius**2,
            value,
        )


def _paint_region(
    labels: np.ndarray,
    axes: Sequence[np.ndarray],
    lo: np.ndarray,
    hi: np.ndarray,
    inside_fn: Callable[[tuple[np.ndarray, ...]], np.ndarray],
    value: int,
) -> None:
    """Evaluate ``inside_fn`` only on the grid points within the box ``[lo, hi]``."""
    box = tuple(
        slice(int(np.searchsorted(ax, low, "left")), int(np.searchsorted(ax, high, "right")))
        for ax, low, high in zip(axes, lo, hi, strict=True)
    )
    if any(s.stop <= s.start for s in box):
        return
    pts = np.ix_(*(ax[s] for ax, s in zip(axes, box, strict=True)))
    region = labels[box]
    region[inside_fn(pts)] = value


def _blob_inside(blob: Blob, pts: tuple[np.ndarray, ...]) -> np.ndarray:
    offsets = [p - np.float32(c) for p, c in zip(pts, blob.centre, strict=True)]
    # p_k = sum_j R[j, k] (x_j - c_j) / s_k: coordinates in the blob frame, unit semi-axes
    local = [
        sum(
            np.float32(blob.rotation[j, k] / blob.semi_axes[k]) * offsets[j]
            for j in range(len(pts))
        )
        for k in range(len(pts))
    ]
    rho = np.sqrt(sum(p * p for p in local))
    safe = np.maximum(rho, np.float32(1e-6))
    radius = np.float32(1.0)
    for v, k, phi, a in zip(
        blob.directions, blob.frequencies, blob.phases, blob.weights, strict=True
    ):
        cos_angle = sum(np.float32(vk) * p for vk, p in zip(v, local, strict=True)) / safe
        radius = radius + np.float32(a) * np.cos(
            np.float32(k * np.pi) * cos_angle + np.float32(phi)
        )
    return rho <= radius


def _segment_distance2(pts: tuple[np.ndarray, ...], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distance (mm^2) from broadcast grid points to the segment ``[a, b]``."""
    ab = b - a
    length2 = float(ab @ ab)
    rel = [p - np.float32(ai) for p, ai in zip(pts, a, strict=True)]
    t = sum(np.float32(d) * r for d, r in zip(ab, rel, strict=True)) / np.float32(
        max(length2, 1e-12)
    )
    t = np.clip(t, 0.0, 1.0)
    return sum((r - t * np.float32(d)) ** 2 for r, d in zip(rel, ab, strict=True))
