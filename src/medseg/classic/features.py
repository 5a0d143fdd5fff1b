"""ilastik's pixel features for the random-forest voxel classifier (2D and 3D).

Per voxel and channel: the intensity, then at each Gaussian scale sigma (in mm) the smoothed
intensity, the Laplacian of Gaussian, the gradient magnitude, the Hessian eigenvalues and the
structure-tensor eigenvalues (as ilastik's pixel classification; Sommer et al., ISBI 2011),
plus the voxel's normalised coordinates. Large images are processed in slabs along axis 0.
Also the checks and normalisation of the images and label maps the forest trains on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medseg.errors import ConfigError, DatasetError, GeometryError
from medseg.io import Image

FEATURES = (
    "intensity",
    "gaussian",
    "log",
    "gradient",
    "hessian",
    "structure_tensor",
    "coordinates",
)
SPACING_RTOL = 0.01  # images of one model agree on spacing within 1 %
SCALED = ("gaussian", "log", "gradient", "hessian", "structure_tensor")  # one set per sigma


def feature_names(
    features: Sequence[str], sigmas_mm: Sequence[float], spatial_dims: int, num_channels: int
) -> list[str]:
    """The name of every feature column, in the order :func:`voxel_features` computes them.

    Example:
        >>> feature_names(["intensity", "hessian"], [1.0], 2, 1)
        ['c0:intensity', 'c0:hessian_0@1mm', 'c0:hessian_1@1mm']
    """
    names = []
    for c in range(num_channels):
        if "intensity" in features:
            names.append(f"c{c}:intensity")
        for sigma in sigmas_mm:
            for name in SCALED:
                if name not in features:
                    continue
                if name in ("hessian", "structure_tensor"):
                    names += [f"c{c}:{name}_{i}@{sigma:g}mm" for i in range(spatial_dims)]
                else:
                    names.append(f"c{c}:{name}@{sigma:g}mm")
    if "coordinates" in features:
        names += [f"coordinate_{axis}" for axis in range(spatial_dims)]
    return names


def _derivative(
    array: np.ndarray, sigma: list[float], orders: list[int], spacing: Sequence[float]
) -> np.ndarray:
    """Gaussian derivative of ``array`` in mm units (per-axis orders, sigma in voxels)."""
    out = ndimage.gaussian_filter(array, sigma, order=orders, mode="reflect")
    scale = np.prod([s**o for s, o in zip(spacing, orders, strict=True)])
    return out / scale if scale != 1 else out


def _symmetric_eigenvalues(entries: dict[tuple[int, int], np.ndarray], dims: int) -> np.ndarray:
    """Eigenvalues (ascending) of the symmetric ``dims x dims`` matrix field ``entries``.

    2x2 and 3x3 use the closed forms (the 3x3 one trigonometric, Smith, CACM 1961): about
    ten times faster than ``numpy.linalg.eigvalsh`` on stacked matrices, which other sizes use
    (and the tests compare against).

    Args:
        entries: ``{(i, j): (*spatial)}`` for ``i <= j``.
        dims: the matrix size.

    Returns:
        ``(*spatial, dims)`` float32.
    """
    if dims == 2:
        a, b, c = entries[(0, 0)], entries[(0, 1)], entries[(1, 1)]
        mean, radius = (a + c) / 2, np.hypot((a - c) / 2, b)
        return np.stack([mean - radius, mean + radius], axis=-1).astype(np.float32)
    if dims == 3:
        a00, a11, a22 = entries[(0, 0)], entries[(1, 1)], entries[(2, 2)]
        a01, a02, a12 = entries[(0, 1)], entries[(0, 2)], entries[(1, 2)]
        q = (a00 + a11 + a22) / 3
        d00, d11, d22 = a00 - q, a11 - q, a22 - q
        p = np.sqrt((d00**2 + d11**2 + d22**2 + 2 * (a01**2 + a02**2 + a12**2)) / 6)
        safe = np.where(p > 0, p, 1.0)
        det = (
            d00 * (d11 * d22 - a12 * a12)
            - a01 * (a01 * d22 - a12 * a02)
            + a02 * (a01 * a12 - d11 * a02)
        )
        r = np.clip(det / (2 * safe**3), -1.0, 1.0)
        phi = np.arccos(r) / 3
        largest = q + 2 * p * np.cos(phi)
        smallest = q + 2 * p * np.cos(phi + 2 * np.pi / 3)
        middle = 3 * q - largest - smallest
        return np.stack([smallest, middle, largest], axis=-1).astype(np.float32)
    shape = entries[(0, 0)].shape
    matrix = np.empty((*shape, dims, dims), dtype=np.float64)
    for (i, j), value in entries.items():
        matrix[..., i, j] = value
        matrix[..., j, i] = value
    return np.linalg.eigvalsh(matrix).astype(np.float32)


def _channel_features(
    array: np.ndarray, spacing: Sequence[float], features: Sequence[str], sigmas_mm: Sequence[float]
) -> list[np.ndarray]:
    """The feature maps of one channel ``(*spatial)``, each ``(*spatial)`` float32."""
    dims = array.ndim
    maps: list[np.ndarray] = []
    if "intensity" in features:
        maps.append(array.astype(np.float32))
    unit = [[int(a == b) for b in range(dims)] for a in range(dims)]
    for sigma_mm in sigmas_mm:
        sigma = [sigma_mm / s for s in spacing]
        if "gaussian" in features:
            maps.append(ndimage.gaussian_filter(array, sigma, mode="reflect").astype(np.float32))
        need_hessian = "log" in features or "hessian" in features
        hessian = {}
        if need_hessian:
            for i in range(dims):
                for j in range(i, dims):
                    orders = [u + v for u, v in zip(unit[i], unit[j], strict=True)]
                    hessian[(i, j)] = _derivative(array, sigma, orders, spacing)
        if "log" in features:
            maps.append(sum(hessian[(i, i)] for i in range(dims)).astype(np.float32))
        need_gradient = "gradient" in features or "structure_tensor" in features
        gradient = (
            [_derivative(array, sigma, unit[i], spacing) for i in range(dims)]
            if need_gradient
            else []
        )
        if "gradient" in features:
            maps.append(np.sqrt(sum(g * g for g in gradient)).astype(np.float32))
        if "hessian" in features:
            values = _symmetric_eigenvalues(hessian, dims)
            maps += [values[..., i] for i in range(dims)]
        if "structure_tensor" in features:
            # ilastik: gradient at the inner scale sigma, products averaged at sigma / 2
            outer = [s / 2 for s in sigma]
            tensor = {
                (i, j): ndimage.gaussian_filter(gradient[i] * gradient[j], outer, mode="reflect")
                for i in range(dims)
                for j in range(i, dims)
            }
            values = _symmetric_eigenvalues(tensor, dims)
            maps += [values[..., i] for i in range(dims)]
    return maps


def _halo(spacing: Sequence[float], sigmas_mm: Sequence[float]) -> int:
    """Voxels along axis 0 a slab needs on each side so its filters equal the whole image's."""
    if not sigmas_mm:
        return 0
    largest = max(sigmas_mm) / spacing[0]
    # scipy's kernels reach ceil(4 sigma); the structure tensor chains sigma and sigma / 2
    return int(np.ceil(4 * largest)) + int(np.ceil(4 * largest / 2)) + 2


def voxel_features(
    channels: np.ndarray,
    spacing: Sequence[float],
    *,
    features: Sequence[str] = FEATURES,
    sigmas_mm: Sequence[float] = (0.7, 1.6, 3.5),
    rows: slice | None = None,
) -> np.ndarray:
    """Per-voxel features of a ``(C, *spatial)`` image, optionally of a slab along axis 0.

    Derivatives are in mm (Gaussian derivatives divided by the spacing), so a feature means
    the same at any spacing; coordinates are ``index / (size - 1)`` in [0, 1] per axis.
    A slab (``rows``) is computed from the slab plus a halo wide enough that its values equal
    those of the whole image.

    Args:
        channels: ``(C, *spatial)`` float intensities (already normalised).
        spacing: voxel size in mm per spatial axis.
        features: which feature groups (see ``FEATURES``).
        sigmas_mm: Gaussian scales in mm.
        rows: a slice of spatial axis 0 (step 1); None for the whole image.

    Returns:
        ``(N, F)`` float32, one row per voxel of the slab in C order, columns as
        :func:`feature_names`.
    """
    spatial = channels.shape[1:]
    rows = rows or slice(0, spatial[0])
    start, stop = rows.start or 0, min(rows.stop, spatial[0])
    halo = _halo(spacing, sigmas_mm)
    low, high = max(0, start - halo), min(spatial[0], stop + halo)
    inner = slice(start - low, stop - low)
    columns: list[np.ndarray] = []
    for channel in channels:
        slab = np.asarray(channel[low:high], dtype=np.float64)
        for feature_map in _channel_features(slab, spacing, features, sigmas_mm):
            columns.append(feature_map[inner].ravel())
    if "coordinates" in features:
        shape = (stop - start, *spatial[1:])
        grid = np.indices(shape, dtype=np.float32)
        grid[0] += start
        for axis, size in enumerate(spatial):
            columns.append((grid[axis] / max(size - 1, 1)).ravel())
    return np.stack(columns, axis=1).astype(np.float32, copy=False)


def _slabs(spatial: Sequence[int], num_features: int, max_bytes: int) -> list[slice]:
    """Slices of axis 0 whose feature matrices stay under ``max_bytes`` (at least one row)."""
    row_bytes = int(np.prod(spatial[1:])) * num_features * 4
    step = max(1, max_bytes // max(row_bytes, 1))
    return [slice(s, min(s + step, spatial[0])) for s in range(0, spatial[0], step)]


# ---------------------------------------------------------------- training inputs


def _channels(image: Image, name: str) -> np.ndarray:
    """``(C, *spatial)`` float64 channels, NaN refused."""
    if not isinstance(image, Image):
        raise ConfigError(f"{name} must be a medseg.io.Image, got {type(image).__name__}")
    channels = np.asarray(image.channels_first(), dtype=np.float64)
    nan_count = int(np.isnan(channels).sum())
    if nan_count:
        raise DatasetError(f"{name} has {nan_count} NaN voxel(s); fill or mask them first")
    return channels


def _normalised(channels: np.ndarray) -> np.ndarray:
    """Each channel z-scored over the image (constant channel -> zeros), so intensities of
    differently scaled scans (MR) are comparable."""
    mean = channels.mean(axis=tuple(range(1, channels.ndim)), keepdims=True)
    std = channels.std(axis=tuple(range(1, channels.ndim)), keepdims=True)
    return (channels - mean) / np.where(std > 0, std, 1.0)


def _checked_label_maps(images: Sequence[Image], labels: Sequence[Image]) -> list[np.ndarray]:
    """The label maps as ``(*spatial)`` uint8, after checking images and labels agree.

    Raises:
        ConfigError: no images, counts differ, an image that is not an ``Image``.
        DatasetError: dims, channel counts or spacings that differ; labels outside 0..255.
        GeometryError: a label map not of its image's spatial shape.
    """
    if len(images) == 0 or len(images) != len(labels):
        raise ConfigError(
            f"forest.fit: need as many label maps as images (>= 1), got {len(images)} "
            f"images and {len(labels)} label maps"
        )
    for index, image in enumerate(images):
        if not isinstance(image, Image):
            raise ConfigError(
                f"forest.fit: image {index} must be a medseg.io.Image, got {type(image).__name__}"
            )
    first = images[0]
    maps = []
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        if image.spatial_dims != first.spatial_dims or image.num_channels != first.num_channels:
            raise DatasetError(
                f"forest.fit: image {index} is {image.spatial_dims}D with "
                f"{image.num_channels} channel(s), image 0 {first.spatial_dims}D with "
                f"{first.num_channels}; train on one kind of image"
            )
        if not np.allclose(image.spacing, first.spacing, rtol=SPACING_RTOL, atol=0):
            raise DatasetError(
                f"forest.fit: image {index} has spacing {image.spacing} mm, image 0 "
                f"{first.spacing} mm; resample the images to one spacing first"
            )
        array = np.asarray(label.array if isinstance(label, Image) else label)
        if array.ndim == image.spatial_dims + 1 and array.shape[0] == 1:
            array = array[0]
        if array.shape != image.spatial_shape:
            raise GeometryError(
                f"forest.fit: label map {index} has shape {array.shape}, its image "
                f"{image.spatial_shape}"
            )
        if array.size and (
            not np.array_equal(array, np.round(array)) or array.min() < 0 or array.max() > 255
        ):
            raise DatasetError(f"forest.fit: label map {index} must hold integers 0..255")
        maps.append(array.astype(np.uint8))
    return maps
