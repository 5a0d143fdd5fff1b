"""Seeded region growing with SimpleITK (connected threshold and confidence connected).

Region growing starts from seed voxels and adds neighbours whose intensity passes a test; the
result is connected to the seeds (the seeds' advantage over a global threshold) but needs
homogeneous regions and seeds, and leaks through thin gaps. Seeds are voxel indices in medseg's
array axis order; SimpleITK indexes ``(x, y, z)``, the reverse, and this module converts.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np

from medseg.classic.common import checked_image, checked_seeds, label_image
from medseg.classic.registry import CLASSIC
from medseg.errors import ConfigError
from medseg.io import Image


def _threshold_band(
    array: np.ndarray,
    points: np.ndarray,
    *,
    lower: float | None,
    upper: float | None,
    tolerance: float | None,
) -> tuple[float, float]:
    """The accepted band ``(lower, upper)`` of threshold mode; ConfigError if it is ill-posed."""
    if tolerance is not None and (lower is not None or upper is not None):
        raise ConfigError("region_grow: give either tolerance or lower/upper, not both")
    if tolerance is None and lower is None and upper is None:
        raise ConfigError("region_grow: threshold mode needs lower/upper or tolerance")
    if tolerance is not None:
        if tolerance < 0:
            raise ConfigError(f"region_grow: tolerance must be >= 0, got {tolerance}")
        centre = float(array[tuple(points.T)].mean())
        lower, upper = centre - tolerance, centre + tolerance
    lower = float(array.min()) if lower is None else float(lower)
    upper = float(array.max()) if upper is None else float(upper)
    if lower > upper:
        raise ConfigError(f"region_grow: lower {lower} > upper {upper}; the band is empty")
    return lower, upper


def _checked_points(
    seeds: Sequence[Sequence[int]], array: np.ndarray, *, connectivity: int
) -> np.ndarray:
    """The seeds as an ``(N, D)`` index array; ConfigError for no seeds or a bad connectivity."""
    points = checked_seeds(seeds, array.shape)
    if len(points) == 0:
        raise ConfigError("region_grow: no seeds given; pass at least one voxel index")
    if not 1 <= int(connectivity) <= array.ndim:
        raise ConfigError(
            f"region_grow: connectivity must be 1 (face) .. {array.ndim} (full), got {connectivity}"
        )
    return points


def _confidence_grower(
    itk_seeds: list[tuple[int, ...]],
    *,
    bounds_given: bool,
    connectivity: int,
    multiplier: float,
    iterations: int,
):  # noqa: ANN202 - a SimpleITK filter, imported lazily
    """The ConfidenceConnected filter; ConfigError for options confidence mode does not accept."""
    import SimpleITK as sitk

    if bounds_given:
        raise ConfigError("region_grow: lower/upper/tolerance apply to mode 'threshold' only")
    if int(connectivity) != 1:
        raise ConfigError("region_grow: mode 'confidence' is face-connected (connectivity=1)")
    if multiplier <= 0 or iterations < 0:
        raise ConfigError(
            f"region_grow: multiplier must be > 0 and iterations >= 0, "
            f"got {multiplier}, {iterations}"
        )
    grower = sitk.ConfidenceConnectedImageFilter()
    grower.SetSeedList(itk_seeds)
    grower.SetMultiplier(float(multiplier))
    grower.SetNumberOfIterations(int(iterations))
    grower.SetInitialNeighborhoodRadius(1)
    grower.SetReplaceValue(1)
    return grower


@CLASSIC.register(
    "region_grow",
    description="seeded region growing (SimpleITK connected threshold / confidence)",
    task="segmentation",
)
def region_grow(
    image: Image,
    seeds: Sequence[Sequence[int]],
    *,
    lower: float | None = None,
    upper: float | None = None,
    tolerance: float | None = None,
    connectivity: int = 1,
    mode: Literal["threshold", "confidence"] = "threshold",
    multiplier: float = 2.5,
    iterations: int = 4,
) -> Image:
    """Grow a region from seeds: the voxels connected to a seed through accepted voxels.

    Mode ``"threshold"`` (SimpleITK ``ConnectedThreshold``) accepts ``lower <= I <= upper``;
    with ``tolerance`` the band is ``mean(seed intensities) -/+ tolerance``; a missing bound is
    the image's minimum / maximum. Mode ``"confidence"`` (SimpleITK ``ConfidenceConnected``)
    accepts ``mean -/+ multiplier * std`` of the current region (started from the seeds' 3^D
    neighbourhoods), re-estimated ``iterations`` times; it is face-connected only.

    Args:
        image: a single-channel 2D or 3D image.
        seeds: voxel indices ``(N, D)`` in array axis order.
        lower: lowest accepted intensity (threshold mode).
        upper: highest accepted intensity (threshold mode).
        tolerance: half-width of the band around the mean seed intensity (threshold mode;
            not together with ``lower``/``upper``).
        connectivity: 1 = face neighbours (4 in 2D, 6 in 3D); any other value up to D =
            full neighbourhood (8 in 2D, 26 in 3D).
        mode: ``"threshold"`` or ``"confidence"``.
        multiplier: band half-width in standard deviations (confidence mode).
        iterations: re-estimations of mean and std (confidence mode).

    Returns:
        A uint8 label map (1 = region) on the image's grid. Seeds whose intensity is outside
        the band do not grow; if none grows the map is empty and a ``UserWarning`` says so.

    Raises:
        ConfigError: no seeds, a seed outside the image, ``lower > upper``, a negative
            tolerance, tolerance together with bounds, no bound at all in threshold mode, an
            unknown mode or connectivity.
        DatasetError: for a multi-channel image or NaN intensities.
    """
    import SimpleITK as sitk

    array = checked_image(image, keep_float32=True)  # SimpleITK grows in the image's type
    points = _checked_points(seeds, array, connectivity=connectivity)
    # SimpleITK indexes (x, y, z): the reverse of the array axis order
    itk_seeds = [tuple(int(v) for v in point[::-1]) for point in points]
    itk_image = sitk.GetImageFromArray(array)
    if mode == "threshold":
        lower, upper = _threshold_band(array, points, lower=lower, upper=upper, tolerance=tolerance)
        grower = sitk.ConnectedThresholdImageFilter()
        grower.SetSeedList(itk_seeds)
        grower.SetLower(lower)
        grower.SetUpper(upper)
        grower.SetReplaceValue(1)
        grower.SetConnectivity(
            grower.FaceConnectivity if int(connectivity) == 1 else grower.FullConnectivity
        )
    elif mode == "confidence":
        grower = _confidence_grower(
            itk_seeds,
            bounds_given=lower is not None or upper is not None or tolerance is not None,
            connectivity=connectivity,
            multiplier=multiplier,
            iterations=iterations,
        )
    else:
        raise ConfigError(f"region_grow: unknown mode {mode!r}; use 'threshold' or 'confidence'")
    # both growers write 1 inside, 0 outside (uint8): a view, copied once by label_image
    grown = grower.Execute(itk_image)  # kept alive while its view is read
    region = sitk.GetArrayViewFromImage(grown)
    if not region.any():
        warnings.warn(
            "region_grow: no seed lies inside the accepted intensity band; the region is empty",
            UserWarning,
            stacklevel=2,
        )
    return label_image(image, region)
