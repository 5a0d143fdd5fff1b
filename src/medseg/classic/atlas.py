"""Atlas-based segmentation: multi-atlas label propagation and fusion; the MNI152 atlas.

Following the seeds' "segmentation via registration": every atlas image is registered to the
target (:func:`medseg.classic.registration.register`), the atlases are ranked by their
similarity to the target after registration (global normalised cross-correlation), the top
``k`` atlas label maps are propagated onto the target grid (nearest neighbour) and fused
voxel by voxel (:func:`fuse_labels`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medseg.classic.common import checked_image, label_image
from medseg.classic.registration import propagate, register, resample
from medseg.classic.registry import CLASSIC
from medseg.errors import ConfigError, DatasetError, GeometryError
from medseg.io import Image

FUSIONS = ("majority", "weighted")
LOCAL_NCC_WINDOW_MM = 5.0
"""Side of the (box) window of the local NCC weights, in mm (at least 3 voxels)."""

MNI152_NOTICE = (
    "MNI ICBM152 non-linear symmetric 2009a atlas. Copyright (C) 1993-2009 Louis Collins, "
    "McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University. "
    "Permission to use, copy, modify, and distribute this software and its documentation for "
    "any purpose and without fee is hereby granted, provided that the above copyright notice "
    "appear in all copies. The authors and McGill University make no representations about "
    "the suitability of this software for any purpose. It is provided 'as is' without express "
    "or implied warranty. The authors are not responsible for any data loss, equipment damage, "
    "property loss, or injury to subjects or patients resulting from the use or misuse of this "
    "software package. References: Fonov et al., NeuroImage 47 (2009) S102 and NeuroImage 54 "
    "(2011) 313-327; Collins et al., NeuroImage 10 (1999) 233."
)


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
) -> Image:
    """Segment ``target`` by registering atlases to it and fusing their propagated labels.

    Each atlas image is registered to the target (``register(target, atlas, transform=...,
    metric=..., seed=...)``); atlases are ranked by the global normalised cross-correlation of
    the registered atlas image with the target and the top ``k`` are kept. Their labels are
    propagated (nearest neighbour) and fused per voxel: ``"majority"`` is :func:`fuse_labels`
    (most votes; ties to the larger summed local-NCC weight, then the lowest label);
    ``"weighted"`` is :func:`fuse_weighted` (largest summed local NCC, ~5 mm window; ties to
    more votes, then the lowest label).

    Args:
        target: single-channel ``(*spatial)`` image, 2D or 3D.
        atlases: ``(image, labels)`` pairs; each label map is an integer array on its image's
            grid; grids may differ between atlases and from the target.
        k: the number of most similar atlases to fuse; all when None.
        fusion: ``"majority"`` or ``"weighted"``.
        transform: registration transform, ``"rigid"``, ``"affine"`` or ``"bspline"``.
        metric: registration metric, ``"mattes_mi"`` or ``"ncc"``.
        seed: seed of the registrations' metric sampling.

    Returns:
        A uint8 label map on the target's grid (0 = background).

    Raises:
        ConfigError: no atlases, ``k`` outside ``1..len(atlases)``, an unknown option.
        GeometryError: an atlas of another dimensionality than the target.
        DatasetError: a label map that does not fit its image, an atlas without foreground,
            label sets disjoint from atlas 0's, multi-channel or NaN images.
    """
    if fusion not in FUSIONS:
        raise ConfigError(f"multi_atlas: fusion {fusion!r} is not one of {FUSIONS}")
    target_array = checked_image(target, name="target")
    labels = _checked_atlases(target, atlases)
    if k is not None and not 1 <= k <= len(atlases):
        raise ConfigError(f"multi_atlas: k={k} must be between 1 and {len(atlases)} atlases")
    candidates = []
    for (image, _), label in zip(atlases, labels, strict=True):
        result = register(target, image, transform=transform, metric=metric, seed=seed)
        warped = resample(image, result.transform, target).array.astype(np.float64)
        candidates.append((_ncc(target_array, warped), warped, result.transform, image, label))
    # stable sort: equally similar atlases keep their given order
    ranked = sorted(candidates, key=lambda c: -c[0])[: k or len(candidates)]
    stack = np.stack(
        [propagate(image.with_array(label), tr, target).array for _, _, tr, image, label in ranked]
    )
    weights = np.stack([local_ncc(target_array, c[1], target.spacing) for c in ranked])
    fuse = fuse_labels if fusion == "majority" else fuse_weighted
    return label_image(target, fuse(stack, weights=weights))


def _nifti_to_image(nifti: object) -> Image:
    """A nibabel NIfTI image (RAS affine, ``(i, j, k)`` data) as a medseg ``Image`` (LPS)."""
    affine = np.asarray(nifti.affine, dtype=np.float64)  # type: ignore[attr-defined]
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    linear = ras_to_lps @ affine[:3, :3]
    spacing_ijk = np.linalg.norm(linear, axis=0)
    direction = linear / spacing_ijk
    data = np.asarray(nifti.get_fdata(dtype=np.float32))  # type: ignore[attr-defined]
    return Image(
        np.ascontiguousarray(data.T),
        tuple(spacing_ijk[::-1]),
        tuple(ras_to_lps @ affine[:3, 3]),
        tuple(direction.ravel()),
    )


def mni152(resolution_mm: float = 2) -> tuple[Image, Image]:
    """The MNI ICBM152 2009a T1 template and its grey/white-matter labels (offline, nilearn).

    Reads the templates bundled in nilearn (``load_mni152_template``,
    ``load_mni152_gm_template``, ``load_mni152_wm_template``; 197 x 233 x 189 at 1 mm,
    resampled by nilearn to ``resolution_mm``). Labels: 0 background, 1 grey matter, 2 white
    matter, the larger of the GM/WM probabilities where their sum exceeds 0.5 (GM on ties).
    There is no CSF map and no labelled structure.

    Copyright notice of the atlas (also :data:`MNI152_NOTICE`): Copyright (C) 1993-2009 Louis
    Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill
    University. Permission to use, copy, modify, and distribute this software and its
    documentation for any purpose and without fee is hereby granted, provided that the above
    copyright notice appear in all copies. The authors and McGill University make no
    representations about the suitability of this software for any purpose. It is provided
    "as is" without express or implied warranty.

    Args:
        resolution_mm: isotropic voxel size in mm (nilearn resamples the 1 mm files).

    Returns:
        ``(t1, labels)``: float32 T1 and uint8 labels, ``(z, y, x)`` arrays on the same grid
        (LPS geometry converted from the NIfTI RAS affine).

    Raises:
        ConfigError: nilearn is missing (install the ``atlas`` extra) or a bad resolution.
    """
    if not resolution_mm > 0:
        raise ConfigError(f"mni152: resolution_mm must be positive, got {resolution_mm}")
    try:
        from nilearn import datasets
    except ImportError as err:
        raise ConfigError(
            f"mni152 needs nilearn ({err}); install the extra: pip install 'medseg[atlas]'"
        ) from None
    t1 = _nifti_to_image(datasets.load_mni152_template(resolution=resolution_mm))
    grey = _nifti_to_image(datasets.load_mni152_gm_template(resolution=resolution_mm)).array
    white = _nifti_to_image(datasets.load_mni152_wm_template(resolution=resolution_mm)).array
    labels = np.where(grey + white > 0.5, np.where(white > grey, 2, 1), 0)
    return t1, label_image(t1, labels)
