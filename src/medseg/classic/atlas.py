"""Atlas-based segmentation: multi-atlas label propagation and fusion (MNI152: ``mni152``).

Following the seeds' "segmentation via registration": every atlas image is registered to the
target (:func:`medseg.classic.registration.register`), the atlases are ranked by their
similarity to the target after registration (global normalised cross-correlation), the top
``k`` atlas label maps are propagated onto the target grid (nearest neighbour) and fused
voxel by voxel (:func:`fuse_labels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from medseg.classic.common import checked_image, label_image
from medseg.classic.mni152 import MNI152_NOTICE, mni152
from medseg.classic.registration import Registration, propagate, register, resample
from medseg.classic.registration_stages import BSPLINE_CONTROL_SPACING_MM
from medseg.classic.registry import CLASSIC
from medseg.device import available_cpus
from medseg.errors import ConfigError, DatasetError, GeometryError
from medseg.io import Image

__all__ = [
    "MNI152_NOTICE",
    "PropagatedAtlas",
    "fuse_labels",
    "fuse_weighted",
    "local_ncc",
    "mni152",
    "multi_atlas",
    "propagate_atlases",
]

FUSIONS = ("majority", "weighted")
LOCAL_NCC_WINDOW_MM = 5.0
"""Side of the (box) window of the local NCC weights, in mm (at least 3 voxels)."""


def fuse_labels(label_stack: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
    """Majority vote of ``N`` label maps, ties broken by summed weight, then lowest label.

    For every voxel each label present in the stack gets its vote count (the number of maps
    with that label) and its weight (the sum of ``weights`` over those maps). The winner has
    the most votes; among labels with equal votes the larger weight wins; among labels with
    equal votes and equal weight the lowest label wins (so background 0 wins a full tie).
    Without ``weights`` the rule is majority vote, ties to the lowest label. Weighted fusion
    (``multi_atlas(..., fusion="weighted")``) is :func:`fuse_weighted`, which ranks by weight
    first and by votes second.

    Args:
        label_stack: ``(N, *spatial)`` integer label maps, one per atlas (``N >= 1``).
        weights: optional ``(N, *spatial)`` non-negative weights (e.g. local NCC).

    Returns:
        ``(*spatial)`` fused labels with ``label_stack``'s dtype.

    Example:
        >>> fuse_labels(np.array([[1, 2], [2, 1], [2, 0]])).tolist()
        [2, 0]
    """
    return _fuse(label_stack, weights, weighted_first=False)


def fuse_weighted(label_stack: np.ndarray, *, weights: np.ndarray) -> np.ndarray:
    """Weighted vote: the label with the largest summed weight wins (ties: votes, lowest label).

    Args:
        label_stack: ``(N, *spatial)`` integer label maps.
        weights: ``(N, *spatial)`` non-negative weights.

    Returns:
        ``(*spatial)`` fused labels with ``label_stack``'s dtype.
    """
    return _fuse(label_stack, weights, weighted_first=True)


def _fuse(
    label_stack: np.ndarray, weights: np.ndarray | None, *, weighted_first: bool
) -> np.ndarray:
    stack = np.asarray(label_stack)
    if stack.ndim < 2 or stack.shape[0] < 1:
        raise ValueError(f"label_stack must be (N, *spatial) with N >= 1, got {stack.shape}")
    if weights is None:
        weights = np.zeros(stack.shape)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != stack.shape:
        raise ValueError(f"weights of shape {weights.shape} for labels {stack.shape}")
    fused = np.zeros(stack.shape[1:], dtype=stack.dtype)
    best_primary = np.full(stack.shape[1:], -np.inf)
    best_secondary = np.full(stack.shape[1:], -np.inf)
    # labels in increasing order and strict "better" keep the lowest label on full ties
    for label in np.unique(stack):
        member = stack == label
        votes = member.sum(axis=0).astype(np.float64)
        weight = np.where(member, weights, 0.0).sum(axis=0)
        primary, secondary = (weight, votes) if weighted_first else (votes, weight)
        better = (primary > best_primary) | (
            (primary == best_primary) & (secondary > best_secondary)
        )
        fused[better] = label
        best_primary[better] = primary[better]
        best_secondary[better] = secondary[better]
    return fused


def local_ncc(first: np.ndarray, second: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Local normalised cross-correlation in a ~5 mm box window, clipped to ``[0, 1]``.

    Args:
        first, second: ``(*spatial)`` float arrays on the same grid.
        spacing: voxel size in mm per array axis.

    Returns:
        ``(*spatial)`` float64 weights; 0 where either image is locally constant.
    """
    size = [max(3, 2 * round(LOCAL_NCC_WINDOW_MM / 2 / s) + 1) for s in spacing]
    mean_a = ndimage.uniform_filter(first, size)
    mean_b = ndimage.uniform_filter(second, size)
    cov = ndimage.uniform_filter(first * second, size) - mean_a * mean_b
    var_a = np.maximum(ndimage.uniform_filter(first * first, size) - mean_a**2, 0.0)
    var_b = np.maximum(ndimage.uniform_filter(second * second, size) - mean_b**2, 0.0)
    denominator = np.sqrt(var_a * var_b)
    ncc = np.divide(cov, denominator, out=np.zeros_like(cov), where=denominator > 1e-12)
    return np.clip(ncc, 0.0, 1.0)


def _ncc(first: np.ndarray, second: np.ndarray) -> float:
    a, b = first - first.mean(), second - second.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def _checked_atlases(target: Image, atlases: Sequence[tuple[Image, Image]]) -> list[np.ndarray]:
    """The atlases' label arrays after the dimensionality, grid and label-set checks."""
    if len(atlases) == 0:
        raise ConfigError("multi_atlas: no atlases given")
    labels = []
    for number, (image, label) in enumerate(atlases):
        if image.spatial_dims != target.spatial_dims:
            raise GeometryError(
                f"multi_atlas: atlas {number} is {image.spatial_dims}D but the target is "
                f"{target.spatial_dims}D"
            )
        array = np.asarray(label.array)
        if array.dtype.kind == "f" and np.array_equal(array, np.round(array)):
            array = array.astype(np.int64)  # integral labels stored as float (MSD's NIfTI)
        if array.shape != image.spatial_shape or array.dtype.kind not in "biu":
            raise DatasetError(
                f"multi_atlas: atlas {number} label map ({array.shape}, {array.dtype}) must be "
                f"an integer array of its image's shape {image.spatial_shape}"
            )
        labels.append(array)
    label_sets = [set(np.unique(a).tolist()) - {0} for a in labels]
    for number, found in enumerate(label_sets):
        if not found:
            raise DatasetError(f"multi_atlas: atlas {number} has no foreground label")
        if not found & label_sets[0]:
            raise DatasetError(
                f"multi_atlas: atlas {number} labels {sorted(found)} are disjoint from atlas 0 "
                f"labels {sorted(label_sets[0])}"
            )
    return labels


@dataclass(frozen=True)
class PropagatedAtlas:
    """One atlas registered to the target, as :func:`propagate_atlases` ranks them.

    Attributes:
        index: the atlas's position in the given list.
        similarity: global NCC of the registered atlas image with the target (ranking key).
        label: the atlas labels on the target grid (uint8 ``(*spatial)`` when they fit).
        weights: ``(*spatial)`` local NCC of the registered atlas image with the target.
        registration: the registration result (``kind`` says if a B-spline fell back).
    """

    index: int
    similarity: float
    label: Image
    weights: np.ndarray
    registration: Registration


def _register_one(
    target: Image,
    target_array: np.ndarray,
    atlas: Image,
    index: int,
    options: dict[str, Any],
    initial: Registration | None = None,
) -> tuple[float, np.ndarray, Registration, int]:
    """Register one atlas image to the target; (global NCC, warped atlas, result, index)."""
    result = register(target, atlas, initial=initial, **options)
    warped = resample(atlas, result.transform, target).array.astype(np.float64)
    return _ncc(target_array, warped), warped, result, index


def _in_parallel(jobs: int, threads: int, call: Any, items: Sequence[Any]) -> list[Any]:
    """``[call(*item) for item in items]`` on ``jobs`` threads (SimpleITK frees the GIL).

    SimpleITK's global thread count (its resampling filters) is ``threads`` meanwhile, so
    ``jobs * threads`` ITK threads run at most; the previous count is restored.
    """
    if jobs == 1 or len(items) < 2:
        return [call(*item) for item in items]
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        with ThreadPoolExecutor(max_workers=min(jobs, len(items))) as pool:
            return list(pool.map(lambda item: call(*item), items))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def _check_speed_options(jobs: int, threads: int | None) -> int:
    """``jobs`` checked; the ITK threads per registration (``threads`` or CPUs // jobs)."""
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"multi_atlas: jobs must be an int >= 1, got {jobs!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"multi_atlas: threads must be None or an int >= 1, got {threads!r}")
    return threads or max(1, available_cpus() // jobs)


def propagate_atlases(
    target: Image,
    atlases: Sequence[tuple[Image, Image]],
    *,
    k: int | None = None,
    transform: str = "affine",
    metric: str = "mattes_mi",
    seed: int = 0,
    max_size: int | None = None,
    mesh_mm: float = BSPLINE_CONTROL_SPACING_MM,
    jobs: int = 1,
    threads: int | None = None,
) -> list[PropagatedAtlas]:
    """Register every atlas to ``target``, rank them, propagate the top ``k`` labels.

    Atlases are ranked by the global NCC of the registered atlas image with the target
    (stable: equal similarity keeps the given order). For ``transform="bspline"`` every atlas
    is first registered affinely, ranked after affine, and only the top ``k`` are refined by
    a B-spline stage started from their affine result (``register(..., initial=...)``), so
    ``N`` atlases cost ``N`` affine and ``k`` B-spline registrations; the refined atlases are
    ranked again. Options and errors as :func:`multi_atlas`.

    Returns:
        The top ``k`` (all when None) :class:`PropagatedAtlas`, most similar first.
    """
    target_array = checked_image(target, name="target")
    labels = _checked_atlases(target, atlases)
    if k is not None and not 1 <= k <= len(atlases):
        raise ConfigError(f"multi_atlas: k={k} must be between 1 and {len(atlases)} atlases")
    per_job = _check_speed_options(jobs, threads)
    options = {"metric": metric, "seed": seed, "max_size": max_size, "threads": per_job}
    first = "affine" if transform == "bspline" else transform
    items = [
        (target, target_array, image, i, {**options, "transform": first})
        for i, (image, _) in enumerate(atlases)
    ]
    ranked = sorted(_in_parallel(jobs, per_job, _register_one, items), key=lambda c: -c[0])
    ranked = ranked[: k or len(ranked)]
    if transform == "bspline":
        refine = {**options, "transform": "bspline", "mesh_mm": mesh_mm}
        items = [(target, target_array, atlases[c[3]][0], c[3], refine, c[2]) for c in ranked]
        ranked = sorted(_in_parallel(jobs, per_job, _register_one, items), key=lambda c: -c[0])
    return [
        PropagatedAtlas(
            index=index,
            similarity=similarity,
            label=propagate(atlases[index][1].with_array(labels[index]), result.transform, target),
            weights=local_ncc(target_array, warped, target.spacing),
            registration=result,
        )
        for similarity, warped, result, index in ranked
    ]


@CLASSIC.register(
    "multi_atlas",
    description="multi-atlas label propagation (SimpleITK registration) and label fusion",
    task="segmentation",
)
def multi_atlas(
    target: Image,
    atlases: Sequence[tuple[Image, Image]],
    *,
    k: int | None = None,
    fusion: str = "majority",
    transform: str = "affine",
    metric: str = "mattes_mi",
    seed: int = 0,
    max_size: int | None = None,
    mesh_mm: float = BSPLINE_CONTROL_SPACING_MM,
    jobs: int = 1,
    threads: int | None = None,
) -> Image:
    """Segment ``target`` by registering atlases to it and fusing their propagated labels.

    Each atlas image is registered to the target (``register(target, atlas, transform=...,
    metric=..., seed=...)``); atlases are ranked by the global normalised cross-correlation of
    the registered atlas image with the target and the top ``k`` are kept (for ``"bspline"``
    the ranking is made after an affine registration of every atlas and only the top ``k``
    get the B-spline stage: :func:`propagate_atlases`). Their labels are propagated (nearest
    neighbour) and fused per voxel: ``"majority"`` is :func:`fuse_labels` (most votes; ties
    to the larger summed local-NCC weight, then the lowest label); ``"weighted"`` is
    :func:`fuse_weighted` (largest summed local NCC, ~5 mm window; ties to more votes, then
    the lowest label).

    Args:
        target: single-channel ``(*spatial)`` image, 2D or 3D.
        atlases: ``(image, labels)`` pairs; each label map is an integer array on its image's
            grid; grids may differ between atlases and from the target.
        k: the number of most similar atlases to fuse; all when None.
        fusion: ``"majority"`` or ``"weighted"``.
        transform: registration transform, ``"rigid"``, ``"affine"`` or ``"bspline"``.
        metric: registration metric, ``"mattes_mi"`` or ``"ncc"``.
        seed: seed of the registrations' metric sampling.
        max_size: register on block-averaged copies at most this many voxels on their longest
            side (``register(..., max_size=...)``; e.g. 256 for 512^2 radiographs); the labels
            are still propagated onto the full-resolution target. None: full resolution.
        mesh_mm: B-spline control-point spacing in mm (finest level).
        jobs: atlases registered at once (threads; SimpleITK releases the GIL).
        threads: ITK threads per registration; None: the available CPUs // ``jobs``, so
            ``jobs * threads`` stays within the CPUs. The labels are reproducible for a given
            ``seed`` and ``threads`` whatever ``jobs`` is.

    Returns:
        A uint8 label map on the target's grid (0 = background).

    Raises:
        ConfigError: no atlases, ``k`` outside ``1..len(atlases)``, an unknown option or an
            option out of range (``jobs < 1``, ``max_size < 16``, ...).
        GeometryError: an atlas of another dimensionality than the target.
        DatasetError: a label map that does not fit its image, an atlas without foreground,
            label sets disjoint from atlas 0's, multi-channel or NaN images.
    """
    if fusion not in FUSIONS:
        raise ConfigError(f"multi_atlas: fusion {fusion!r} is not one of {FUSIONS}")
    ranked = propagate_atlases(
        target,
        atlases,
        k=k,
        transform=transform,
        metric=metric,
        seed=seed,
        max_size=max_size,
        mesh_mm=mesh_mm,
        jobs=jobs,
        threads=threads,
    )
    stack = np.stack([atlas.label.array for atlas in ranked])
    weights = np.stack([atlas.weights for atlas in ranked])
    fuse = fuse_labels if fusion == "majority" else fuse_weighted
    return label_image(target, fuse(stack, weights=weights))
