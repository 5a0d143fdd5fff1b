"""Level sets: morphological Chan-Vese and geodesic active contours (scikit-image).

Active contours from the seeds' classical methods: a closed surface evolves from an initial
region until it balances a region term (Chan-Vese: inside and outside each close to their
mean intensity) or stops on edges (geodesic active contour, GAC). The morphological variants
(Marquez-Neila et al., IEEE TPAMI 2014) replace the PDE by binary dilations, erosions and
curvature operators, so they are fast and need no re-initialisation. Both work in 2D and 3D.

scikit-image is imported lazily: it is part of the ``classic`` extra.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from medseg.classic.common import checked_image, label_image
from medseg.classic.registry import CLASSIC
from medseg.errors import ConfigError, GeometryError
from medseg.io import Image
from medseg.io.image import grid_mismatches

METHODS = ("chan_vese", "geodesic")


def _skimage_segmentation():  # noqa: ANN202 - the module
    try:
        from skimage import segmentation
    except ImportError as err:
        raise ConfigError(
            "level_set needs scikit-image; install the classic extra: pip install 'medseg[classic]'"
        ) from err
    return segmentation


def _checked_init(init: np.ndarray | Image, image: Image) -> np.ndarray:
    """``init`` as a boolean ``(*spatial)`` array on the image's grid."""
    if isinstance(init, Image):
        problems = grid_mismatches(init, image)
        if problems:
            raise GeometryError(
                f"level_set: init and image are on different grids ({'; '.join(problems)})"
            )
        if init.num_channels != 1:
            raise ConfigError(f"level_set: init has {init.num_channels} channels; give one mask")
        array = init.channels_first()[0]
    else:
        array = np.asarray(init)
    if array.shape != image.spatial_shape:
        raise GeometryError(
            f"level_set: init has shape {array.shape} but the image has spatial shape "
            f"{image.spatial_shape} (array axis order); give a mask of the image's shape"
        )
    mask = array != 0
    if not mask.any():
        raise ConfigError("level_set: init is empty; give a region inside or around the object")
    if mask.all():
        raise ConfigError("level_set: init covers the whole image; it needs a boundary to move")
    return mask


def edge_stopping(
    array: np.ndarray, spacing: tuple[float, ...], *, sigma_mm: float = 1.0, alpha: float = 100.0
) -> np.ndarray:
    """The GAC edge map ``g = 1 / sqrt(1 + alpha * |grad(G_sigma * I)|)``, small on edges.

    As scikit-image's ``inverse_gaussian_gradient``, but the Gaussian sigma is in mm (per-axis
    voxels from the spacing) and the intensities are first scaled to [0, 1] (min-max), so
    ``alpha`` means the same on CT, MR and 8-bit images. The gradient is per voxel, as
    scikit-image computes it.

    Args:
        array: ``(*spatial)`` intensities.
        spacing: voxel size in mm per array axis.
        sigma_mm: Gaussian smoothing before the gradient, in mm.
        alpha: steepness of the edge map (larger: ``g`` falls faster at edges).

    Returns:
        A float64 array of ``array``'s shape in (0, 1]; 1 on a constant image.

    Example:
        >>> step = np.zeros((16, 16)); step[:, 8:] = 1.0
        >>> g = edge_stopping(step, (1.0, 1.0))
        >>> bool(g[0, 7] < 0.5 < 0.99 < g[0, 0])
        True
    """
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array, dtype=float)
    sigma_voxels = [sigma_mm / s for s in spacing]
    gradient = ndimage.gaussian_gradient_magnitude(scaled, sigma_voxels, mode="nearest")
    return 1.0 / np.sqrt(1.0 + alpha * gradient)


def _check_options(*, method: str, iterations: int, smoothing: int, edge_sigma_mm: float) -> None:
    """Raise ConfigError for an unknown method or a bad level_set option."""
    if method not in METHODS:
        raise ConfigError(f"level_set: unknown method '{method}'; valid: {', '.join(METHODS)}")
    if int(iterations) != iterations or iterations < 0:
        raise ConfigError(f"level_set: iterations must be an integer >= 0, got {iterations}")
    if int(smoothing) != smoothing or smoothing < 0:
        raise ConfigError(f"level_set: smoothing must be an integer >= 0, got {smoothing}")
    if edge_sigma_mm <= 0:
        raise ConfigError(f"level_set: edge_sigma_mm must be > 0, got {edge_sigma_mm}")


def _evolve(
    array: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, ...],
    *,
    method: str,
    iterations: int,
    smoothing: int,
    lambda1: float,
    lambda2: float,
    balloon: float,
    edge_sigma_mm: float,
    edge_alpha: float,
) -> np.ndarray:
    """Run the scikit-image morphological level set ``method`` from ``mask``; its raw result."""
    segmentation = _skimage_segmentation()
    start = mask.astype(np.int8)
    if method == "chan_vese":
        result = segmentation.morphological_chan_vese(
            array,
            int(iterations),
            init_level_set=start,
            smoothing=int(smoothing),
            lambda1=lambda1,
            lambda2=lambda2,
        )
    else:
        edges = edge_stopping(array, spacing, sigma_mm=edge_sigma_mm, alpha=edge_alpha)
        result = segmentation.morphological_geodesic_active_contour(
            edges,
            int(iterations),
            init_level_set=start,
            smoothing=int(smoothing),
            threshold="auto",
            balloon=balloon,
        )
    return result


@CLASSIC.register(
    "level_set",
    description="morphological Chan-Vese or geodesic active contour from an initial region",
    task="segmentation",
)
def level_set(
    image: Image,
    init: np.ndarray | Image,
    *,
    method: Literal["chan_vese", "geodesic"] = "chan_vese",
    iterations: int = 100,
    smoothing: int = 1,
    lambda1: float = 1.0,
    lambda2: float = 1.0,
    balloon: float = -1.0,
    edge_sigma_mm: float = 1.0,
    edge_alpha: float = 100.0,
) -> Image:
    """Evolve ``init`` with a morphological level set; the final region is label 1.

    ``chan_vese`` (``morphological_chan_vese``) splits the image into two regions of
    near-constant intensity, keeping the region that grows out of ``init`` as label 1: it
    needs no edges, but both regions must be roughly homogeneous. ``geodesic``
    (``morphological_geodesic_active_contour``) moves the contour with a balloon force and
    stops it where the edge map :func:`edge_stopping` is small: ``balloon < 0`` shrinks a
    region drawn around the object, ``balloon > 0`` inflates one drawn inside it.

    scikit-image works in voxels: the curvature smoothing and the one-voxel-per-iteration
    speed are isotropic in voxels, not mm, and nothing is resampled, so on strongly
    anisotropic images (thick slices) resample first if the contour must be smooth in mm.
    Only the GAC edge map's Gaussian ``edge_sigma_mm`` is in mm.

    Args:
        image: a single-channel 2D or 3D image, ``(*spatial)`` or ``(1, *spatial)``.
        init: the initial region, a boolean (or 0/1) array of shape ``image.spatial_shape``
            or an ``Image`` on the image's grid; e.g. a box around the object.
        method: ``"chan_vese"`` or ``"geodesic"``.
        iterations: number of morphological iterations (the contour moves at most about one
            voxel per iteration).
        smoothing: curvature smoothing steps per iteration (0 = none; 1-4 typical).
        lambda1: Chan-Vese weight of the inside term (larger: inside more homogeneous).
        lambda2: Chan-Vese weight of the outside term.
        balloon: GAC balloon force; negative shrinks, positive inflates, 0 = none.
        edge_sigma_mm: GAC Gaussian smoothing before the gradient, in mm.
        edge_alpha: GAC edge-map steepness (on intensities scaled to [0, 1]).

    Returns:
        A uint8 label map ``Image`` on the input's grid: 1 = final region, 0 = background.
        The region may be empty (the contour vanished) or touch the border.

    Raises:
        ConfigError: unknown method, negative iterations/smoothing, empty or full init,
            scikit-image missing.
        GeometryError: ``init`` not of the image's shape (or grid, for an ``Image``).
        DatasetError: a multi-channel image or NaN intensities.

    Example:
        >>> yy, xx = np.mgrid[:40, :40]
        >>> disc = ((yy - 20) ** 2 + (xx - 20) ** 2 < 100).astype(float)
        >>> box = np.zeros((40, 40), bool); box[4:36, 4:36] = True
        >>> out = level_set(Image(disc, (1.0, 1.0)), box, iterations=40)
        >>> int(np.logical_xor(out.array, disc).sum()) < 20
        True
    """
    _check_options(
        method=method, iterations=iterations, smoothing=smoothing, edge_sigma_mm=edge_sigma_mm
    )
    array = checked_image(image)
    mask = _checked_init(init, image)
    result = _evolve(
        array,
        mask,
        image.spacing,
        method=method,
        iterations=iterations,
        smoothing=smoothing,
        lambda1=lambda1,
        lambda2=lambda2,
        balloon=balloon,
        edge_sigma_mm=edge_sigma_mm,
        edge_alpha=edge_alpha,
    )
    return label_image(image, np.asarray(result) != 0)
