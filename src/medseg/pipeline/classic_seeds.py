"""Oracle seeds for the interactive classical methods, and seed parsing for the CLI.

:func:`oracle_seeds` takes seeds and an initial contour from a reference label ("oracle
seeds"), which ``medseg classic benchmark`` gives the interactive methods; :func:`parse_seed`
reads ``--seed z,y,x`` (array axis order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.io import Image


@dataclass(frozen=True)
class OracleSeeds:
    """Seeds and an initial contour taken from a reference label ("oracle seeds").

    Attributes:
        foreground: voxel indices (array axis order), one per connected component of each
            foreground label: the voxel of the eroded component nearest its centroid.
        background: a sparse, deterministic subset of the voxels at least
            ``background_margin_mm`` from every foreground voxel.
        box: boolean ``(*spatial)`` mask of the foreground's bounding box (level-set init).
        scribble: the foreground seeds plus a sparse, deterministic subset of the eroded
            foreground (a user's strokes inside the object): graph cut's foreground seeds,
            whose intensity histogram needs more than one voxel per component.
    """

    foreground: list[tuple[int, ...]]
    background: list[tuple[int, ...]]
    box: np.ndarray
    scribble: list[tuple[int, ...]] = field(default_factory=list)


def oracle_seeds(
    label: Image | np.ndarray,
    *,
    spacing: Sequence[float] | None = None,
    background_margin_mm: float = 5.0,
    max_background: int = 200,
    max_scribble: int = 200,
    min_component_fraction: float = 0.05,
    seed: int = 0,
) -> OracleSeeds:
    """Seeds for the interactive methods from a reference label map (they use the truth).

    Foreground: for every foreground label and each of its connected components holding at
    least ``min_component_fraction`` of that label's voxels, the voxel of the component eroded
    once (face connectivity; the component itself when erosion empties it) that lies nearest
    the component's centroid in mm, so the seed is inside even for a curved shape.
    Background: voxels whose distance in mm to the foreground is at least
    ``background_margin_mm`` (halved until some exist; any background voxel as a last
    resort), ``max_background`` of them drawn with ``seed``. Box: the foreground's bounding
    box, as the level set's initial contour. Scribble: the foreground seeds plus up to
    ``max_scribble`` voxels of the eroded foreground (the foreground where erosion empties
    it) drawn with ``seed``.

    Args:
        label: the reference label map ``(*spatial)`` (an ``Image`` brings its spacing).
        spacing: mm per array axis for a plain array (default 1 mm).
        background_margin_mm: how far background seeds stay from the foreground (mm).
        max_background: the most background seeds returned.
        max_scribble: the most extra foreground voxels in ``scribble``.
        min_component_fraction: smaller components of a label get no seed.
        seed: seeds the background subsample.

    Returns:
        :class:`OracleSeeds`; an empty label gives no foreground seed and an all-False box.

    Example:
        >>> lab = np.zeros((9, 9), np.uint8); lab[2:7, 2:7] = 1
        >>> s = oracle_seeds(lab, background_margin_mm=1, max_background=3)
        >>> s.foreground, len(s.background), int(s.box.sum()), len(s.scribble)
        ([(4, 4)], 3, 25, 9)
    """
    if isinstance(label, Image):
        spacing = label.spacing
        array = np.asarray(label.array)
    else:
        array = np.asarray(label)
    spacing = tuple(float(s) for s in (spacing or (1.0,) * array.ndim))
    if len(spacing) != array.ndim:
        raise ConfigError(f"spacing {spacing} does not fit a label map of shape {array.shape}")
    foreground_mask = array > 0
    foreground = []
    for value in np.unique(array[foreground_mask]):
        foreground += _component_seeds(array == value, spacing, min_component_fraction)
    box = np.zeros(array.shape, dtype=bool)
    if foreground_mask.any():
        where = np.nonzero(foreground_mask)
        box[tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)] = True
    return OracleSeeds(
        foreground,
        _background_seeds(foreground_mask, spacing, background_margin_mm, max_background, seed),
        box,
        _scribble(foreground_mask, foreground, max_scribble, seed),
    )


def _scribble(
    mask: np.ndarray, seeds: list[tuple[int, ...]], max_count: int, seed: int
) -> list[tuple[int, ...]]:
    """``seeds`` plus up to ``max_count`` voxels of the eroded ``mask``, drawn with ``seed``."""
    eroded = ndimage.binary_erosion(mask)
    candidates = np.argwhere(eroded if eroded.any() else mask)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(candidates), size=min(max_count, len(candidates)), replace=False)
    extra = [tuple(int(v) for v in candidates[i]) for i in np.sort(chosen)]
    return seeds + [p for p in extra if p not in set(seeds)]


def _component_seeds(
    mask: np.ndarray, spacing: tuple[float, ...], min_fraction: float
) -> list[tuple[int, ...]]:
    components, count = ndimage.label(mask)
    sizes = np.bincount(components.ravel())[1:]
    seeds = []
    for index in np.flatnonzero(sizes >= min_fraction * sizes.sum()):
        component = components == index + 1
        eroded = ndimage.binary_erosion(component)
        candidates = np.argwhere(eroded if eroded.any() else component)
        centroid = np.argwhere(component).mean(axis=0)
        distance = (((candidates - centroid) * np.asarray(spacing)) ** 2).sum(axis=1)
        seeds.append(tuple(int(v) for v in candidates[int(np.argmin(distance))]))
    return seeds


def _background_seeds(
    foreground: np.ndarray,
    spacing: tuple[float, ...],
    margin_mm: float,
    max_count: int,
    seed: int,
) -> list[tuple[int, ...]]:
    if foreground.all() or max_count < 1:
        return []
    if not foreground.any():
        distance = np.full(foreground.shape, np.inf)
    else:
        distance = ndimage.distance_transform_edt(~foreground, sampling=spacing)
    margin = margin_mm
    candidates = np.argwhere(distance >= margin)
    while len(candidates) == 0 and margin > min(spacing):
        margin /= 2  # a label filling most of the image: come closer to it
        candidates = np.argwhere(distance >= margin)
    if len(candidates) == 0:
        candidates = np.argwhere(~foreground)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(candidates), size=min(max_count, len(candidates)), replace=False)
    return [tuple(int(v) for v in candidates[i]) for i in np.sort(chosen)]


def parse_seed(text: str) -> tuple[int, ...]:
    """``"z,y,x"`` (array axis order) -> a tuple of ints.

    Raises:
        ConfigError: not comma-separated integers.

    Example:
        >>> parse_seed("4, 10,12")
        (4, 10, 12)
    """
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(
            f"seed {text!r}: expected integer voxel indices in array axis order, e.g. 4,10,12"
        ) from None
