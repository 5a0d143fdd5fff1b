"""Clustering segmentation: k-means and a Gaussian mixture (EM) on voxel features.

Unsupervised baselines from the seeds' classical segmentation section: each voxel is a
feature vector (its intensities, optionally its position) and the voxels are grouped into
``k`` clusters. Numpy implementations:

* ``kmeans_fit``: k-means++ seeding (Arthur & Vassilvitskii 2007: each next centre drawn
  with probability proportional to the squared distance to the nearest chosen centre), then
  Lloyd iterations (assign to the nearest centre, move each centre to its members' mean)
  until no centre moves more than ``tol``; the best of ``n_init`` seedings (lowest inertia).
* ``gmm_fit``: a Gaussian mixture with diagonal covariances fitted by EM (Dempster et al.
  1977), initialised from k-means; ``reg_covar`` is added to every variance as in
  scikit-learn; stops when the mean log-likelihood changes by less than ``tol``.

``kmeans`` and ``gmm`` take and return :class:`~medseg.io.Image` (registered in ``CLASSIC``).
Labels ``0..k-1`` are ordered by increasing mean intensity of the cluster (the mean over
channels of its centre), as ``otsu`` with ``classes=k`` orders its classes, so the output does
not depend on the clusters' internal order; voxels outside ``mask`` get 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from medseg.classic.common import label_image
from medseg.classic.registry import CLASSIC
from medseg.errors import ConfigError, DatasetError
from medseg.io import Image

Features = Literal["intensity", "intensity+position"]


def _squared_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``(N, k)`` squared Euclidean distances."""
    return np.maximum((x**2).sum(1)[:, None] - 2 * x @ centres.T + (centres**2).sum(1)[None], 0.0)


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: ``(k, F)`` initial centres drawn from the rows of ``x`` ``(N, F)``."""
    centres = [x[rng.integers(len(x))]]
    nearest = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = nearest.sum()
        index = rng.choice(len(x), p=nearest / total) if total > 0 else rng.integers(len(x))
        centres.append(x[index])
        nearest = np.minimum(nearest, ((x - x[index]) ** 2).sum(1))
    return np.array(centres)


def _lloyd(
    x: np.ndarray, centres: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    centres = centres.astype(np.float64, copy=True)
    for _ in range(max_iter):
        labels = _squared_distances(x, centres).argmin(1)
        new = centres.copy()
        for j in range(len(centres)):
            members = x[labels == j]
            if len(members):
                new[j] = members.mean(0)
        shift = float(np.abs(new - centres).max())
        centres = new
        if shift <= tol:
            break
    return _squared_distances(x, centres).argmin(1), centres


def kmeans_fit(
    x: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    init: np.ndarray | None = None,
    n_init: int = 3,
    max_iter: int = 300,
    tol: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means of the rows of ``x``.

    Args:
        x: ``(N, F)`` features.
        k: clusters (``1 <= k <= N``).
        seed: seed of the k-means++ draws.
        init: ``(k, F)`` initial centres (then one run, no k-means++).
        n_init: k-means++ seedings; the one with the lowest inertia is kept.
        max_iter: Lloyd iterations at most.
        tol: stop when no centre moves more than this (max abs coordinate change).

    Returns:
        ``(labels (N,) int, centres (k, F))``; an empty cluster keeps its previous centre.

    Example:
        >>> labels, centres = kmeans_fit(np.array([[0.0], [0.1], [5.0], [5.1]]), 2)
        >>> sorted(np.round(centres[:, 0], 2).tolist())
        [0.05, 5.05]
    """
    x = np.asarray(x, dtype=np.float64)
    if init is not None:
        return _lloyd(x, np.asarray(init, dtype=np.float64), max_iter, tol)
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(max(int(n_init), 1)):
        labels, centres = _lloyd(x, kmeans_plus_plus(x, k, rng), max_iter, tol)
        inertia = float(((x - centres[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels, centres)
    assert best is not None
    return best[1], best[2]


def _log_gaussians(x: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """``(N, k)`` log densities of diagonal Gaussians."""
    log_det = np.log(variances).sum(1)
    mahalanobis = ((x[:, None, :] - means[None]) ** 2 / variances[None]).sum(2)
    return -0.5 * (x.shape[1] * np.log(2 * np.pi) + log_det[None] + mahalanobis)


def _m_step(x: np.ndarray, resp: np.ndarray, reg_covar: float):
    counts = resp.sum(0) + 10 * np.finfo(np.float64).eps
    means = resp.T @ x / counts[:, None]
    variances = resp.T @ (x**2) / counts[:, None] - means**2 + reg_covar
    return counts / len(x), means, np.maximum(variances, reg_covar)


def gmm_fit(
    x: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    init: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    max_iter: int = 200,
    tol: float = 1e-8,
    reg_covar: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Diagonal-covariance Gaussian mixture of the rows of ``x`` by EM.

    Args:
        x: ``(N, F)`` features.
        k: components.
        seed: seed of the k-means initialisation.
        init: ``(weights (k,), means (k, F), variances (k, F))`` to start from instead.
        max_iter: EM iterations at most.
        tol: stop when the mean log-likelihood changes by less than this.
        reg_covar: added to every variance (keeps a component from collapsing).

    Returns:
        ``(labels (N,), weights (k,), means (k, F), variances (k, F))``; labels are the most
        probable component of each row.
    """
    x = np.asarray(x, dtype=np.float64)
    if init is None:
        labels, _ = kmeans_fit(x, k, seed=seed)
        weights, means, variances = _m_step(x, np.eye(k)[labels], reg_covar)
    else:
        weights, means, variances = (np.asarray(a, dtype=np.float64) for a in init)
    previous = -np.inf
    for _ in range(max_iter):
        joint = _log_gaussians(x, means, variances) + np.log(weights)[None]
        norm = np.logaddexp.reduce(joint, axis=1)
        weights, means, variances = _m_step(x, np.exp(joint - norm[:, None]), reg_covar)
        if abs(float(norm.mean()) - previous) < tol:
            break
        previous = float(norm.mean())
    joint = _log_gaussians(x, means, variances) + np.log(weights)[None]
    return joint.argmax(1), weights, means, variances


def _features(
    image: Image, mask: np.ndarray | Image | None, features: str, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, F)`` features of the voxels inside the mask, and the ``(*spatial)`` mask."""
    if not isinstance(image, Image):
        raise ConfigError(f"{name}: image must be a medseg.io.Image, got {type(image).__name__}")
    array = np.asarray(image.channels_first(), dtype=np.float64)
    if np.isnan(array).any():
        raise DatasetError(f"{name}: the image has NaN voxels; fill or mask them first")
    inside = np.ones(image.spatial_shape, dtype=bool)
    if mask is not None:
        inside = np.asarray(mask.array if isinstance(mask, Image) else mask).astype(bool)
        if inside.shape != image.spatial_shape:
            raise ConfigError(
                f"{name}: mask of shape {inside.shape} for an image {image.spatial_shape}"
            )
    columns = [channel[inside] for channel in array]
    if features == "intensity+position":
        # each channel to unit variance; the position (mm) by one common factor to unit mean
        # variance per axis, so distances keep their proportions (a long image splits along
        # its long axis)
        columns = [(c - c.mean()) / (c.std() or 1.0) for c in columns]
        grid = np.indices(image.spatial_shape, dtype=np.float64)
        position = [a[inside] * step for a, step in zip(grid, image.spacing, strict=True)]
        scale = np.sqrt(np.mean([p.var() for p in position])) or 1.0
        columns += [(p - p.mean()) / scale for p in position]
    elif features != "intensity":
        raise ConfigError(
            f"{name}: features must be intensity or intensity+position, got {features!r}"
        )
    return np.stack(columns, axis=1), inside


def _cluster_means(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """``(k, F)`` mean feature of each cluster (inf for an empty one: ordered last)."""
    return np.array(
        [
            x[labels == j].mean(0) if (labels == j).any() else np.full(x.shape[1], np.inf)
            for j in range(k)
        ]
    )


def _check_k(k: int, count: int, name: str) -> None:
    if count == 0:
        raise ConfigError(f"{name}: the mask is empty; no voxels to cluster")
    if not 1 <= int(k) <= min(count, 255):
        raise ConfigError(f"{name}: k must be between 1 and {min(count, 255)} (voxels), got {k}")


def _ordered_label_map(
    image: Image, inside: np.ndarray, labels: np.ndarray, centres: np.ndarray, channels: int
) -> Image:
    """Relabel clusters by increasing mean intensity (mean over the intensity columns)."""
    order = np.argsort(centres[:, :channels].mean(1), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    out = np.zeros(image.spatial_shape, dtype=np.uint8)
    out[inside] = rank[labels]
    return label_image(image, out)


@CLASSIC.register(
    "kmeans", description="k-means clustering (k-means++, Lloyd)", task="segmentation"
)
def kmeans(
    image: Image,
    k: int = 3,
    *,
    mask: np.ndarray | Image | None = None,
    seed: int = 0,
    features: Features = "intensity",
) -> Image:
    """k-means segmentation of the voxels (:func:`kmeans_fit`).

    Args:
        image: a 2D or 3D image, one or more channels (each channel is a feature).
        k: clusters.
        mask: optional boolean array (or Image) of the spatial shape; only voxels inside are
            clustered, the others get 0.
        seed: seed of the k-means++ draws (same seed, same output).
        features: ``intensity`` (the channels as they are) or ``intensity+position`` (the
            channels, each scaled to unit variance, and the voxel position in mm, scaled by
            one factor to unit mean variance per axis), which favours spatially compact
            clusters.

    Returns:
        A uint8 label map, labels ``0..k-1`` by increasing mean intensity.

    Raises:
        ConfigError: k outside ``[1, min(voxels, 255)]``, a mask of another shape, unknown
            features.
        DatasetError: NaN intensities.
    """
    x, inside = _features(image, mask, features, "kmeans")
    _check_k(k, len(x), "kmeans")
    labels, centres = kmeans_fit(x, int(k), seed=seed)
    if features != "intensity":  # order by each cluster's mean of the raw intensities
        raw = np.stack([c[inside] for c in image.channels_first()], axis=1)
        centres = _cluster_means(raw.astype(np.float64), labels, int(k))
    return _ordered_label_map(image, inside, labels, centres, image.num_channels)


@CLASSIC.register("gmm", description="Gaussian mixture (EM, diagonal)", task="segmentation")
def gmm(
    image: Image, k: int = 3, *, mask: np.ndarray | Image | None = None, seed: int = 0
) -> Image:
    """Gaussian-mixture segmentation of the voxel intensities (:func:`gmm_fit`, diagonal
    covariances over the channels); each voxel gets its most probable component.

    Args:
        image: a 2D or 3D image, one or more channels.
        k: components.
        mask: optional boolean array (or Image); voxels outside get 0.
        seed: seed of the k-means initialisation.

    Returns:
        A uint8 label map, labels ``0..k-1`` by increasing component mean intensity.

    Raises:
        ConfigError: k outside ``[1, min(voxels, 255)]`` or a mask of another shape.
        DatasetError: NaN intensities.
    """
    x, inside = _features(image, mask, "intensity", "gmm")
    _check_k(k, len(x), "gmm")
    labels, _, means, _ = gmm_fit(x, int(k), seed=seed)
    return _ordered_label_map(image, inside, labels, means, image.num_channels)
