"""Image registration with SimpleITK: rigid, affine and B-spline; label propagation.

``register(fixed, moving)`` returns the transform that maps **fixed** world points (mm, LPS)
to **moving** world points, i.e. the one ``SimpleITK.Resample(moving, fixed, transform)``
needs; ``propagate`` uses it to bring a moving label map onto the fixed grid. 2D and 3D by the
same code; the images' spacing, origin and direction are respected (``medseg.io.to_sitk``).

Every registration is multi-resolution (shrink 4, 2, 1 with Gaussian smoothing of shrink / 2
voxels: 2, 1, 0), starts from a centred initialisation (image centres,
``CenteredTransformInitializer``) and samples the metric at random with a fixed seed, so a run
is reproducible for a given ``seed`` and thread count. With ``max_size`` the images are first
block-averaged (ITK's ``BinShrink``) to a copy whose longest side is at most ``max_size``
voxels; the copy keeps the physical extent, so the transform found on it (in mm) applies to
the full-resolution images unchanged.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from medseg.classic.common import checked_image
from medseg.classic.registration_stages import (
    BSPLINE_CONTROL_SPACING_MM,
    BSPLINE_ITERATIONS,
    METRICS,
    SAMPLING_PERCENTAGE,
    TRANSFORMS,
    StageSettings,
    bspline_stage,
    downsampled,
    linear_stages,
    stage_metric,
)
from medseg.device import available_cpus
from medseg.errors import ConfigError, GeometryError
from medseg.io import Image
from medseg.io.formats import to_sitk


@dataclass
class Registration:
    """The result of :func:`register`.

    Attributes:
        transform: SimpleITK transform mapping fixed world points to moving world points.
        metric_before: metric at the centred initial transform (lower is better: SimpleITK
            minimises negative mutual information / negative correlation).
        metric_after: metric at ``transform``, evaluated the same way.
        kind: the transform kind actually returned (``"affine"`` after a B-spline fallback).
    """

    transform: sitk.Transform
    metric_before: float
    metric_after: float
    kind: str


def _float_sitk(image: Image, name: str) -> sitk.Image:
    """Single-channel float32 SimpleITK image with the image's geometry."""
    array = checked_image(image, name=name).astype(np.float32)
    return to_sitk(image.with_array(array))


def metric_value(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
    *,
    metric: str,
    seed: int,
    threads: int | None = None,
) -> float:
    """The registration metric of ``moving`` mapped by ``transform`` onto ``fixed``.

    Evaluated on the images as given (no pyramid), with the sampling of :func:`register`.
    """
    settings = StageSettings(metric, seed, threads=threads or available_cpus())
    return stage_metric(fixed, moving, transform, settings)


def _settings(
    transform: str,
    metric: str,
    seed: int,
    *,
    max_size: int | None,
    sampling: float,
    mesh_mm: float,
    iterations: int,
    threads: int | None,
) -> StageSettings:
    """The checked options as :class:`StageSettings`; one ``ConfigError`` line for a bad value."""
    if transform not in TRANSFORMS:
        raise ConfigError(f"register: transform {transform!r} is not one of {TRANSFORMS}")
    if metric not in METRICS:
        raise ConfigError(f"register: metric {metric!r} is not one of {METRICS}")
    checks = {
        "seed": (seed, isinstance(seed, int) and 0 <= seed < 2**31 - 1, "an int in [0, 2**31 - 2]"),
        "max_size": (
            max_size,
            max_size is None or (isinstance(max_size, int) and max_size >= 16),
            "None or an int >= 16 (voxels)",
        ),
        "sampling": (sampling, 0 < sampling <= 1, "a fraction in (0, 1]"),
        "mesh_mm": (mesh_mm, mesh_mm > 0, "a positive distance in mm"),
        "iterations": (iterations, isinstance(iterations, int) and iterations >= 1, "an int >= 1"),
        "threads": (
            threads,
            threads is None or (isinstance(threads, int) and threads >= 1),
            "None or an int >= 1",
        ),
    }
    for name, (value, ok, expected) in checks.items():
        if not ok:
            raise ConfigError(f"register: {name} must be {expected}, got {value!r}")
    return StageSettings(metric, seed, sampling, threads or available_cpus(), mesh_mm, iterations)


def register(
    fixed: Image,
    moving: Image,
    *,
    transform: str = "rigid",
    metric: str = "mattes_mi",
    seed: int = 0,
    max_size: int | None = None,
    sampling: float = SAMPLING_PERCENTAGE,
    mesh_mm: float = BSPLINE_CONTROL_SPACING_MM,
    iterations: int = BSPLINE_ITERATIONS,
    threads: int | None = None,
    initial: Registration | None = None,
) -> Registration:
    """Register ``moving`` onto ``fixed`` (multi-resolution, seeded random metric sampling).

    Args:
        fixed: single-channel ``(*spatial)`` image (2D or 3D) defining the reference space.
        moving: single-channel image of the same dimensionality (any grid and spacing).
        transform: ``"rigid"`` (Euler), ``"affine"``, or ``"bspline"`` (affine first, then a
            cubic B-spline, coarse to fine, optimised with L-BFGS).
        metric: ``"mattes_mi"`` (Mattes mutual information, 32 bins; different modalities)
            or ``"ncc"`` (normalised cross-correlation; same modality).
        seed: seed of the random metric sampling. Runs with the same seed and ``threads``
            sample the same voxels and give the same transform; another thread count can
            change the last bits of the metric sums (SimpleITK's documented caveat).
        max_size: register block-averaged copies of both images whose longest side is at
            most this many voxels (:func:`downsampled`; e.g. 256 for a 512^2 radiograph:
            ~4x faster in 2D, 8x in 3D); the transform is in mm, so it applies to the
            full-resolution images. None: full resolution.
        sampling: fraction of the fixed voxels the metric samples per pyramid level (at
            random, seeded), at least 3000 voxels (all of them when fewer).
        mesh_mm: B-spline control-point spacing at the finest level, in mm (the first level
            uses twice this spacing).
        iterations: L-BFGS iterations of the B-spline stage per level.
        threads: ITK threads of this registration; None: every available CPU.
        initial: a rigid or affine :class:`Registration` of the same pair; with
            ``transform="bspline"`` the B-spline stage starts from it and the linear stages
            are skipped (``multi_atlas`` ranks atlases after affine, then refines the top k).

    Returns:
        A :class:`Registration`; ``transform`` maps fixed to moving world points (mm);
        ``metric_before``/``metric_after`` are evaluated on the (downsampled) images.

    Raises:
        ConfigError: an unknown ``transform`` or ``metric``, an option out of range, or
            ``initial`` with a transform other than ``"bspline"``.
        GeometryError: images of different dimensionality.
        DatasetError: a multi-channel image, NaN intensities, or ITK's optimisation
            failing (e.g. no overlap between the images).

    Edge cases: a registration whose metric ends worse than at the centred start warns; for
    ``"bspline"`` a B-spline stage that ends worse than its affine stage warns and the affine
    result is returned (``kind == "affine"``).
    """
    settings = _settings(
        transform,
        metric,
        seed,
        max_size=max_size,
        sampling=sampling,
        mesh_mm=mesh_mm,
        iterations=iterations,
        threads=threads,
    )
    if initial is not None and (transform != "bspline" or initial.kind not in ("rigid", "affine")):
        raise ConfigError(
            "register: initial (a rigid or affine Registration) needs transform='bspline', "
            f"got transform={transform!r} and an initial of kind {initial.kind!r}"
        )
    if fixed.spatial_dims != moving.spatial_dims:
        raise GeometryError(
            f"register: fixed image is {fixed.spatial_dims}D but moving image is "
            f"{moving.spatial_dims}D"
        )
    fixed_itk = downsampled(_float_sitk(fixed, "fixed image"), max_size, threads=settings.threads)
    moving_itk = downsampled(
        _float_sitk(moving, "moving image"), max_size, threads=settings.threads
    )
    return _register_images(fixed_itk, moving_itk, transform, settings, initial)


def _register_images(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: str,
    settings: StageSettings,
    initial: Registration | None,
) -> Registration:
    """:func:`register` on checked SimpleITK images: the stages, fallback and warnings."""
    if initial is None:
        linear_kind = "rigid" if transform == "rigid" else "affine"
        start, result = linear_stages(fixed, moving, linear_kind, settings)
        before = stage_metric(fixed, moving, start, settings)
    else:
        linear_kind, result, before = initial.kind, initial.transform, initial.metric_before
    after = stage_metric(fixed, moving, result, settings)
    kind = linear_kind
    if transform == "bspline":
        result, after, kind = _bspline_or_fallback(fixed, moving, result, after, settings)
        kind = kind if kind == "bspline" else linear_kind
    if after > before:
        warnings.warn(
            f"register: {kind} registration ended worse than it started (metric {after:.4g} > "
            f"{before:.4g}); the images may not overlap or differ too much",
            stacklevel=3,
        )
    return Registration(transform=result, metric_before=before, metric_after=after, kind=kind)


def _bspline_or_fallback(
    fixed: sitk.Image,
    moving: sitk.Image,
    linear: sitk.Transform,
    linear_metric: float,
    settings: StageSettings,
) -> tuple[sitk.Transform, float, str]:
    """The B-spline stage on top of ``linear``, or ``linear`` (with a warning) when worse."""
    composite = bspline_stage(fixed, moving, linear, settings)
    after = stage_metric(fixed, moving, composite, settings)
    if after > linear_metric:
        warnings.warn(
            f"register: B-spline stage ended worse than the affine stage (metric "
            f"{after:.4g} > {linear_metric:.4g}); falling back to the affine result",
            stacklevel=4,
        )
        return linear, linear_metric, "linear"
    return composite, after, "bspline"


def resample(
    image: Image, transform: sitk.Transform, reference: Image, *, nearest: bool = False
) -> Image:
    """``image`` mapped onto ``reference``'s grid by ``transform`` (reference -> image points).

    Args:
        image: single-channel ``(*spatial)`` image.
        transform: maps reference world points to ``image`` world points (mm).
        reference: the output grid (its shape, spacing, origin, direction).
        nearest: nearest-neighbour interpolation (labels) instead of linear; voxels mapped
            outside ``image`` become 0.

    Returns:
        An ``Image`` on the reference grid with ``image``'s dtype (float32 when linear).
    """
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    source = to_sitk(image if nearest else image.with_array(image.array.astype(np.float32)))
    grid = to_sitk(reference.with_array(np.zeros(reference.spatial_shape, dtype=np.uint8)))
    out = sitk.Resample(source, grid, transform, interpolator, 0.0, source.GetPixelID())
    return reference.with_array(sitk.GetArrayFromImage(out))


def propagate(label: Image, transform: sitk.Transform, reference: Image) -> Image:
    """Propagate a label map onto ``reference``'s grid (nearest-neighbour resampling).

    Args:
        label: integer ``(*spatial)`` label map on the moving (atlas) grid.
        transform: ``Registration.transform`` of ``register(reference, atlas_image)``.
        reference: the target image; only its grid is used.

    Returns:
        The labels on the reference grid (uint8 when the labels fit, else the label dtype);
        voxels mapped outside the atlas are background (0).

    Raises:
        GeometryError: label and reference of different dimensionality.
    """
    if label.spatial_dims != reference.spatial_dims or label.has_channels:
        raise GeometryError(
            f"propagate: label map of shape {label.array.shape} does not fit a "
            f"{reference.spatial_dims}D reference"
        )
    array = label.array
    if array.dtype.kind == "b" or (array.size and array.min() >= 0 and array.max() <= 255):
        array = array.astype(np.uint8)
    return resample(label.with_array(array), transform, reference, nearest=True)
