"""Intensity corrections applied before normalisation: N4 bias-field correction and
Nyul-Udupa histogram standardisation (both off unless a plan asks for them).

* ``n4_correct``: N4 (Tustison et al. 2010, SimpleITK's ``N4BiasFieldCorrectionImageFilter``)
  estimates a smooth multiplicative bias field (MRI coil inhomogeneity) on a shrunken copy of
  the image, then divides the full-resolution image by the field, evaluated at full
  resolution (``GetLogBiasFieldAsImage``), so a 3D volume costs little more than its
  shrunken copy.
* ``histogram_landmarks`` / ``match_histogram``: Nyul & Udupa (2000) histogram
  standardisation, as TorchIO's ``HistogramStandardization``. Training: each image's
  percentiles (1, 10, 20, ..., 90, 99 of its non-zero voxels) are mapped linearly so the
  1st/99th fall on a standard scale ``[0, 100]``, then averaged over the images into the
  dataset's landmarks. Applying: an image's own percentiles are mapped piecewise-linearly
  onto the landmarks; values below the 1st or above the 99th percentile extrapolate with the
  slope of the first or last segment.
* ``correct_intensities``: both, per channel of a ``(C, *spatial)`` image, as a plan
  prescribes; ``preprocess_arrays`` calls it, so training and prediction cannot drift.

All functions take 2D or 3D arrays (spatial axes only, array order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

DEFAULT_PERCENTILES: tuple[float, ...] = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99)
STANDARD_RANGE: tuple[float, float] = (0.0, 100.0)
N4_SHRINK = 4
N4_ITERATIONS: tuple[int, ...] = (50, 50, 50, 50)
_MIN_SHRUNK_SIZE = 8  # voxels per axis left after shrinking
_MIN_MASK_VOXELS = 16


def n4_correct(
    image: np.ndarray,
    spacing: Sequence[float],
    *,
    mask: np.ndarray | None = None,
    shrink: int = N4_SHRINK,
    iterations: int | Sequence[int] = N4_ITERATIONS,
) -> np.ndarray:
    """``image`` divided by the multiplicative bias field N4 estimates in it (float32).

    Args:
        image: a 2D or 3D intensity array (one channel).
        spacing: its voxel spacing in mm (array order); the B-spline field is fitted in
            physical space.
        mask: voxels the field is fitted on (default: an Otsu threshold of the image, as in
            SimpleITK's N4 example). Voxels <= 0 are always left out (N4 fits the log
            intensity); every voxel is corrected.
        shrink: the field is estimated on the image shrunk by this factor per axis (at most
            down to 8 voxels on an axis), then evaluated at full resolution.
        iterations: maximum iterations per fitting level (one entry per level; an int: one
            level).

    Returns:
        The corrected image; a copy of ``image`` when the mask holds fewer than 16 voxels
        (nothing to fit).

    Raises:
        ValueError: the image is not 2D or 3D, or ``spacing`` does not match it.
    """
    array = np.asarray(image, dtype=np.float32)
    if array.ndim not in (2, 3) or len(spacing) != array.ndim:
        raise ValueError(
            f"n4_correct needs a 2D or 3D image with one spacing per axis, got shape "
            f"{array.shape} and spacing {tuple(spacing)}"
        )
    # N4 cannot fit along an axis of one voxel: fit on the remaining axes
    keep = [a for a, size in enumerate(array.shape) if size > 1]
    if len(keep) < 2:
        return array.copy()
    squeezed = array.reshape([array.shape[a] for a in keep])
    spacing_kept = [float(spacing[a]) for a in keep]
    sitk_image = sitk.GetImageFromArray(squeezed)
    sitk_image.SetSpacing(spacing_kept[::-1])  # SimpleITK orders axes x, y, z
    if mask is None:
        fit = sitk.GetArrayFromImage(sitk.OtsuThreshold(sitk_image, 0, 1, 200)).astype(bool)
    else:
        fit = np.asarray(mask, dtype=bool).reshape(squeezed.shape)
    fit &= squeezed > 0
    if int(fit.sum()) < _MIN_MASK_VOXELS:
        return array.copy()
    sitk_mask = sitk.GetImageFromArray(fit.astype(np.uint8))
    sitk_mask.CopyInformation(sitk_image)
    factors = [max(1, min(int(shrink), size // _MIN_SHRUNK_SIZE)) for size in squeezed.shape]
    small_image = sitk.Shrink(sitk_image, factors[::-1])
    small_mask = sitk.Shrink(sitk_mask, factors[::-1])
    levels = [int(iterations)] if isinstance(iterations, int) else [int(i) for i in iterations]
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(levels)
    corrector.Execute(small_image, small_mask)
    log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(sitk_image))
    corrected = squeezed / np.exp(log_field, dtype=np.float32)
    return corrected.astype(np.float32, copy=False).reshape(array.shape)


def _foreground_values(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The voxels percentiles are taken over: ``mask``'s, else the non-zero ones (every voxel
    when all are zero)."""
    array = np.asarray(image)
    if mask is not None:
        return array[np.asarray(mask, dtype=bool)]
    nonzero = array[array != 0]
    return nonzero if nonzero.size else array.ravel()


def image_percentiles(
    image: np.ndarray,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    *,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """``percentiles`` of the image's non-zero voxels (or of ``mask``'s), float64."""
    values = _foreground_values(image, mask)
    if values.size == 0:
        raise ValueError("histogram matching: the mask selects no voxel")
    return np.percentile(values.astype(np.float64), list(percentiles))


def histogram_landmarks(
    images: Iterable[np.ndarray],
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    *,
    standard_range: tuple[float, float] = STANDARD_RANGE,
) -> list[float]:
    """The dataset's reference landmarks for ``match_histogram`` (Nyul-Udupa training).

    Each image's ``percentiles`` (of its non-zero voxels) are mapped linearly so that the
    first and last fall on ``standard_range``; the landmarks are their mean over the images.
    Images whose foreground is constant carry no histogram shape and are skipped.

    Example:
        >>> ramp = np.arange(1.0, 1002.0)  # percentiles 11, 101, 201, ..., 901, 991
        >>> [round(v, 4) for v in histogram_landmarks([ramp, 2 * ramp + 5], (1, 10, 99))]
        [0.0, 9.1837, 100.0]

    Raises:
        ValueError: no image has a non-constant foreground.
    """
    return landmarks_from_percentiles(
        (image_percentiles(image, percentiles) for image in images),
        standard_range=standard_range,
    )


def landmarks_from_percentiles(
    points: Iterable[np.ndarray | Sequence[float]],
    *,
    standard_range: tuple[float, float] = STANDARD_RANGE,
) -> list[float]:
    """``histogram_landmarks`` from each image's percentiles (``image_percentiles``): each
    mapped linearly so its first and last fall on ``standard_range``, then averaged; constant
    ones (first == last) are skipped.

    Raises:
        ValueError: every one is constant (or there are none).
    """
    low, high = standard_range
    scaled = []
    for values in points:
        values = np.asarray(values, dtype=np.float64)
        spread = values[-1] - values[0]
        if spread > 0:
            scaled.append(low + (values - values[0]) / spread * (high - low))
    if not scaled:
        raise ValueError("histogram landmarks: no image with a non-constant foreground")
    return [float(v) for v in np.mean(scaled, axis=0)]


def match_histogram(
    image: np.ndarray,
    landmarks: Sequence[float],
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    *,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """``image`` mapped piecewise-linearly so its ``percentiles`` (of its non-zero voxels, or
    of ``mask``'s) fall on ``landmarks`` (float32; every voxel is mapped).

    Outside the first/last percentile the map extrapolates with the slope of the first/last
    segment. Percentiles that coincide (many equal voxels) are merged into one point whose
    target is the mean of theirs, so the map stays monotone; a constant foreground is shifted
    onto the mean landmark.

    Raises:
        ValueError: ``landmarks`` and ``percentiles`` differ in length, or the landmarks are
            not increasing.
    """
    targets = np.asarray(landmarks, dtype=np.float64)
    if targets.shape != (len(percentiles),):
        raise ValueError(
            f"histogram matching: {targets.size} landmarks for {len(percentiles)} percentiles"
        )
    if np.any(np.diff(targets) < 0):
        raise ValueError(f"histogram matching: landmarks must increase, got {list(landmarks)}")
    array = np.asarray(image, dtype=np.float64)
    sources = image_percentiles(array, percentiles, mask=mask)
    xp, inverse = np.unique(sources, return_inverse=True)
    fp = np.bincount(inverse, weights=targets) / np.bincount(inverse)
    if xp.size == 1:
        return (array - xp[0] + fp[0]).astype(np.float32)
    out = np.interp(array, xp, fp)
    first = (fp[1] - fp[0]) / (xp[1] - xp[0])
    last = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    below, above = array < xp[0], array > xp[-1]
    out[below] = fp[0] + (array[below] - xp[0]) * first
    out[above] = fp[-1] + (array[above] - xp[-1]) * last
    return out.astype(np.float32)


def correct_intensities(
    image: np.ndarray,
    spacing: Sequence[float],
    *,
    n4_channels: Sequence[int] = (),
    histogram_landmarks: Mapping[str, Sequence[float]] | None = None,
) -> np.ndarray:
    """N4 then histogram matching, per channel of ``(C, *spatial)``, as a plan prescribes.

    Args:
        image: ``(C, *spatial)`` at its original spacing.
        spacing: the spatial spacing (mm, array order).
        n4_channels: channels given ``n4_correct``.
        histogram_landmarks: channel index (str) -> landmarks for ``match_histogram``
            (``DEFAULT_PERCENTILES``).

    Returns:
        ``image`` itself when nothing is asked; else a float32 copy with those channels
        corrected.
    """
    landmarks = dict(histogram_landmarks or {})
    if not n4_channels and not landmarks:
        return image
    out = np.array(image, dtype=np.float32)
    for c in range(out.shape[0]):
        if c in n4_channels:
            out[c] = n4_correct(out[c], spacing)
        if str(c) in landmarks:
            out[c] = match_histogram(out[c], landmarks[str(c)])
    return out
