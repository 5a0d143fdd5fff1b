"""Interactive graph cut (Boykov & Jolly, ICCV 2001) with PyMaxflow's grid API.

The segmentation minimises ``E(L) = sum_p R_p(L_p) + sum_{p~q, L_p != L_q} B_pq``:

- t-links (regional term): ``R_p(obj) = -log P(I_p | fg)``, ``R_p(bkg) = -log P(I_p | bg)``,
  with ``P`` the seed intensity histograms: ``HISTOGRAM_BINS`` equal bins over the image's
  intensity range, each count plus 1 (Laplace smoothing, so an intensity no seed has is
  possible but unlikely), divided by ``seeds + HISTOGRAM_BINS``.
- n-links (boundary term): ``B_pq = smoothness * exp(-(I_p - I_q)^2 / (2 sigma^2)) / |p - q|``
  with ``|p - q|`` in mm (so anisotropic spacing weighs neighbours by their distance).
- hard constraints: a seed is tied to its terminal by ``K`` larger than any voxel's total
  n-link weight, so every seed keeps its label.

Everything is built with whole-array operations (one ``add_grid_edges`` call per neighbour
offset), in 2D and 3D by the same code.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from medseg.classic.common import checked_image, checked_seeds, label_image
from medseg.classic.registry import CLASSIC
from medseg.errors import ConfigError
from medseg.io import Image

HISTOGRAM_BINS = 32
"""Bins of the seed intensity histograms (over the image's min..max)."""


def neighbour_offsets(ndim: int, connectivity: int) -> list[tuple[int, ...]]:
    """One offset per neighbour pair: offsets with 1..``connectivity`` non-zero entries in
    {-1, 0, 1} whose first non-zero entry is +1 (the other half are the same pairs reversed).

    Example:
        >>> neighbour_offsets(2, 1), neighbour_offsets(2, 2)
        ([(0, 1), (1, 0)], [(0, 1), (1, -1), (1, 0), (1, 1)])
    """
    offsets = []
    for offset in itertools.product((-1, 0, 1), repeat=ndim):
        nonzero = [v for v in offset if v != 0]
        if nonzero and nonzero[0] == 1 and len(nonzero) <= connectivity:
            offsets.append(offset)
    return offsets


def _pair_slices(offset: Sequence[int], shape: Sequence[int]) -> tuple[tuple, tuple]:
    """Slices selecting every voxel ``p`` with ``p + offset`` inside, and those ``p + offset``."""
    source, target = [], []
    for step, size in zip(offset, shape, strict=True):
        if step == 1:
            source.append(slice(0, size - 1))
            target.append(slice(1, size))
        elif step == -1:
            source.append(slice(1, size))
            target.append(slice(0, size - 1))
        else:
            source.append(slice(None))
            target.append(slice(None))
    return tuple(source), tuple(target)


def _seed_costs(array: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """``-log P(I_p | seeds)`` for every voxel, from the Laplace-smoothed seed histogram."""
    low, high = float(array.min()), float(array.max())
    scale = HISTOGRAM_BINS / (high - low) if high > low else 0.0
    bins = np.clip(((array - low) * scale).astype(np.int64), 0, HISTOGRAM_BINS - 1)
    counts = np.bincount(bins[tuple(seeds.T)], minlength=HISTOGRAM_BINS)
    probability = (counts + 1.0) / (len(seeds) + HISTOGRAM_BINS)
    return -np.log(probability)[bins]


def _check_options(
    fg: np.ndarray,
    bg: np.ndarray,
    ndim: int,
    *,
    smoothness: float,
    sigma: float | None,
    connectivity: int,
) -> None:
    """Raise ConfigError for missing or doubly seeded voxels and bad graph_cut options."""
    if len(fg) == 0 or len(bg) == 0:
        missing = "foreground" if len(fg) == 0 else "background"
        raise ConfigError(f"graph_cut: no {missing} seeds; give at least one of each")
    both = {tuple(p) for p in fg.tolist()} & {tuple(p) for p in bg.tolist()}
    if both:
        raise ConfigError(f"graph_cut: voxel(s) {sorted(both)[:3]} seeded as both fg and bg")
    if smoothness < 0:
        raise ConfigError(f"graph_cut: smoothness must be >= 0, got {smoothness}")
    if sigma is not None and not sigma > 0:
        raise ConfigError(f"graph_cut: sigma must be > 0, got {sigma}")
    if not 1 <= int(connectivity) <= ndim:
        raise ConfigError(
            f"graph_cut: connectivity must be 1 (face) .. {ndim} (full), got {connectivity}"
        )


@CLASSIC.register(
    "graph_cut",
    description="Boykov-Jolly seeded graph cut (PyMaxflow)",
    task="segmentation",
)
def graph_cut(
    image: Image,
    fg_seeds: Sequence[Sequence[int]],
    bg_seeds: Sequence[Sequence[int]],
    *,
    smoothness: float = 1.0,
    sigma: float | None = None,
    connectivity: int = 1,
) -> Image:
    """Seeded two-label graph cut: the minimum cut between foreground and background seeds.

    Args:
        image: a single-channel 2D or 3D image.
        fg_seeds: foreground voxel indices ``(N, D)``, array axis order.
        bg_seeds: background voxel indices ``(M, D)``, array axis order.
        smoothness: weight of the boundary term relative to the regional term (>= 0;
            0 = label every voxel by its seed histogram likelihood alone).
        sigma: intensity scale of the n-links, in intensity units; None = the standard
            deviation of the intensity differences between face neighbours (1 for a
            constant image).
        connectivity: 1 = face neighbours (4 in 2D, 6 in 3D); up to D adds diagonals
            (D = 8 in 2D, 26 in 3D), each weighted by 1 / its length in mm.

    Returns:
        A uint8 label map (1 = foreground) on the image's grid; every seed keeps its label.

    Raises:
        ConfigError: no foreground or no background seeds, a seed outside the image, a voxel
            seeded as both, ``smoothness < 0``, ``sigma <= 0`` or a bad connectivity.
        DatasetError: for a multi-channel image or NaN intensities.
    """
    try:
        import maxflow
    except ImportError as error:  # pragma: no cover - the classic extra is missing
        raise ConfigError("graph_cut needs PyMaxflow: pip install 'medseg[classic]'") from error

    array = checked_image(image)
    fg = checked_seeds(fg_seeds, array.shape, name="fg_seeds")
    bg = checked_seeds(bg_seeds, array.shape, name="bg_seeds")
    _check_options(
        fg, bg, array.ndim, smoothness=smoothness, sigma=sigma, connectivity=connectivity
    )
    spacing = np.asarray(image.spacing, dtype=np.float64)
    offsets = neighbour_offsets(array.ndim, int(connectivity))

    if sigma is None:
        face = [np.diff(array, axis=axis).ravel() for axis in range(array.ndim)]
        sigma = float(np.std(np.concatenate(face))) if any(f.size for f in face) else 0.0
        sigma = sigma if sigma > 0 else 1.0

    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes(array.shape)
    largest_link = 0.0
    for offset in offsets:
        distance_mm = float(np.linalg.norm(np.asarray(offset) * spacing))
        source, target = _pair_slices(offset, array.shape)
        weights = np.zeros(array.shape)
        difference = array[target] - array[source]
        weights[source] = smoothness * np.exp(-(difference**2) / (2 * sigma**2)) / distance_mm
        structure = np.zeros((3,) * array.ndim)
        structure[tuple(1 + v for v in offset)] = 1.0
        # symmetric: the same capacity both ways; edges leaving the grid are dropped
        graph.add_grid_edges(nodes, weights=weights, structure=structure, symmetric=True)
        largest_link = max(largest_link, smoothness / distance_mm)
    # K exceeds the n-link weight a voxel can lose (2 per offset), so seeds never flip
    hard = 1.0 + 2 * len(offsets) * largest_link

    # source = object: cutting p's source link (cost R_p(bkg)) puts p in the background
    source_caps = _seed_costs(array, bg)
    sink_caps = _seed_costs(array, fg)
    hard += float(max(source_caps.max(), sink_caps.max()))
    source_caps[tuple(fg.T)], sink_caps[tuple(fg.T)] = hard, 0.0
    source_caps[tuple(bg.T)], sink_caps[tuple(bg.T)] = 0.0, hard
    graph.add_grid_tedges(nodes, source_caps, sink_caps)
    graph.maxflow()
    foreground = ~graph.get_grid_segments(nodes)  # True = sink side = background
    return label_image(image, foreground)
