"""Image-quality metrics of a restored image against its reference: PSNR and SSIM.

Both need ``data_range``, the span of values the image type can take (1.0 for images in
[0, 1], 4095 for 12-bit MR, 255 for 8-bit pictures, or the reference's ``max - min`` when
that is what you mean). It is a required keyword and is never guessed from the data: the
same pair of images gets a PSNR 20 dB higher with a range ten times larger, so a figure
without its range cannot be compared with anything.

* :func:`psnr`: ``10 log10(data_range^2 / MSE)``, the MSE over every voxel or a mask's
  voxels; identical images give ``inf``. Equals ``skimage.metrics.peak_signal_noise_ratio``.
* :func:`ssim`: structural similarity (Wang et al. 2004, IEEE TIP 13(4)) with a Gaussian
  window (sigma 1.5, truncated at 3.5 sigma: radius ``int(3.5 sigma + 0.5)`` = 5, an
  11-voxel window), ``K1 = 0.01``, ``K2 = 0.03``, population (biased) local variances and
  half-sample symmetric ("reflect") padding. Without a mask the SSIM map is averaged after
  cropping ``(win_size - 1) // 2`` voxels at every border, as scikit-image does, so it equals
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=...)``; with a mask it is averaged over the mask's
  voxels (no crop). 2D and 3D; NumPy arrays or torch tensors.
* :func:`ssim_map` / :func:`ssim_torch`: the same computation on ``(B, C, *spatial)``
  tensors, differentiable, for a loss ``1 - ssim_torch(pred, target, data_range=1.0)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.errors import ConfigError, GeometryError

TRUNCATE = 3.5  # scikit-image's (and scipy.ndimage's default 4.0 is not used) window truncation


def _check_range(data_range: Any) -> float:
    if data_range is None:
        raise ConfigError(
            "data_range is required: the span of values of the image type (e.g. 1.0 for [0, 1] "
            "images, 4095 for 12-bit scans, or the reference's max - min); it is never guessed "
            "from the data, since PSNR and SSIM change with it"
        )
    value = float(data_range)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"data_range must be a finite number > 0, got {data_range!r}")
    return value


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _pair(x: Any, y: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    a, b = _as_array(x), _as_array(y)
    if a.shape != b.shape:
        raise GeometryError(f"images differ in shape: {a.shape} and {b.shape}")
    if mask is None:
        return a, b, None
    m = _as_array(mask) != 0
    if m.shape != a.shape:
        raise GeometryError(f"mask of shape {m.shape} does not match the images {a.shape}")
    return a, b, m


def psnr(x: Any, y: Any, *, data_range: float | None = None, mask: Any = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range^2 / mean((x - y)^2))``.

    Args:
        x: the reference image ``(*spatial)`` (array or tensor; computed in float64).
        y: the test image, same shape.
        data_range: required: the span of values of the image type (never guessed).
        mask: optional ``(*spatial)`` boolean mask: the MSE over its voxels only.

    Returns:
        PSNR in dB; ``inf`` when the images (or their masked voxels) are identical, NaN for an
        empty mask.

    Raises:
        ConfigError: ``data_range`` missing, not finite or <= 0.
        GeometryError: the shapes differ.

    Example:
        >>> psnr(np.zeros(4), np.full(4, 0.1), data_range=1.0)
        20.0
    """
    data_range = _check_range(data_range)
    a, b, m = _pair(x, y, mask)
    diff = (a - b) ** 2
    if m is not None:
        if not m.any():
            return math.nan
        diff = diff[m]
    mse = float(np.mean(diff))
    if mse == 0:
        return math.inf
    return float(10 * np.log10(data_range**2 / mse))


def gaussian_window(sigma: float, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The normalised 1-D Gaussian of radius ``int(3.5 sigma + 0.5)`` (scipy's kernel).

    Example:
        >>> gaussian_window(1.5).numel()
        11
    """
    radius = int(TRUNCATE * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 / float(sigma) ** 2 * x**2)
    return (phi / phi.sum()).to(dtype)


def _symmetric_index(size: int, pad: int, device: torch.device) -> Tensor:
    """Indices of an axis padded by ``pad`` on both sides, half-sample symmetric
    (``d c b a | a b c d | d c b a``: scipy's "reflect"), for any ``pad``."""
    index = torch.arange(-pad, size + pad, device=device)
    period = 2 * size
    index = torch.remainder(index, period)
    return torch.where(index >= size, period - 1 - index, index)


def _gaussian_filter(x: Tensor, window: Tensor) -> Tensor:
    """Separable Gaussian filter of ``(N, 1, *spatial)`` with symmetric padding."""
    spatial_dims, pad = x.ndim - 2, (window.numel() - 1) // 2
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial_dims]
    for axis in range(spatial_dims):
        dim = axis + 2
        x = x.index_select(dim, _symmetric_index(x.shape[dim], pad, x.device))
        shape = [1, 1] + [1] * spatial_dims
        shape[dim] = window.numel()
        x = conv(x, window.view(shape))
    return x


def ssim_map(
    x: Tensor,
    y: Tensor,
    *,
    data_range: float | None = None,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """The local SSIM ``(B, C, *spatial)`` of two ``(B, C, *spatial)`` tensors (differentiable).

    ``SSIM = (2 mu_x mu_y + C1)(2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2))``
    with ``C1 = (k1 R)^2``, ``C2 = (k2 R)^2``, Gaussian-weighted local means and population
    (co)variances (Wang et al. 2004). Each channel is filtered separately.

    Raises:
        ConfigError: ``data_range`` missing or <= 0, ``sigma`` <= 0.
        GeometryError: the shapes differ or the tensors have no spatial axis.
    """
    data_range = _check_range(data_range)
    if not sigma > 0:
        raise ConfigError(f"sigma must be > 0, got {sigma}")
    if x.shape != y.shape or x.ndim not in (3, 4, 5):
        raise GeometryError(
            f"expected two (B, C, *spatial) tensors of one shape: {x.shape}, {y.shape}"
        )
    batch, channels, *spatial = x.shape
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    window = gaussian_window(sigma, dtype=dtype).to(x.device)
    a, b = x.to(dtype).reshape(-1, 1, *spatial), y.to(dtype).reshape(-1, 1, *spatial)
    stats = _gaussian_filter(torch.cat([a, b, a * a, b * b, a * b]), window).split(a.shape[0])
    mu_x, mu_y, xx, yy, xy = stats
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (numerator / denominator).reshape(batch, channels, *spatial)


def border_crop(sigma: float) -> int:
    """Voxels scikit-image drops at each border before averaging: ``(win_size - 1) // 2``."""
    return int(TRUNCATE * float(sigma) + 0.5)


def ssim_torch(
    x: Tensor,
    y: Tensor,
    *,
    data_range: float | None = None,
    mask: Tensor | None = None,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    crop: bool = True,
) -> Tensor:
    """Mean SSIM per image ``(B,)`` of ``(B, C, *spatial)`` tensors, differentiable.

    Args:
        mask: ``(B, 1 or C, *spatial)``: average the map over the mask (no border crop).
        crop: without a mask, drop ``border_crop(sigma)`` voxels per border first (as
            scikit-image); False averages the whole map (a loss on small patches).

    Raises:
        GeometryError: the crop leaves nothing (an axis of 2 * crop voxels or fewer).
    """
    values = ssim_map(x, y, data_range=data_range, sigma=sigma, k1=k1, k2=k2)
    if mask is not None:
        weight = mask.to(values.dtype).expand_as(values)
        dims = tuple(range(1, values.ndim))
        return (values * weight).sum(dims) / weight.sum(dims)
    if crop:
        pad = border_crop(sigma)
        if min(values.shape[2:]) <= 2 * pad:
            raise GeometryError(
                f"image of size {tuple(values.shape[2:])} is too small for the SSIM window "
                f"(the {pad}-voxel border crop leaves nothing); give a mask or a larger image"
            )
        values = values[(slice(None), slice(None), *([slice(pad, -pad)] * (values.ndim - 2)))]
    return values.flatten(1).mean(1)


def ssim(
    x: Any,
    y: Any,
    *,
    data_range: float | None = None,
    mask: Any = None,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Mean structural similarity of two ``(*spatial)`` images (2D or 3D), in float64.

    Args:
        x: the reference image (array or tensor).
        y: the test image, same shape.
        data_range: required: the span of values of the image type (never guessed).
        mask: optional ``(*spatial)`` mask: the SSIM map's mean over its voxels, without the
            border crop (voxels near the border use symmetric padding). NaN for an empty mask.
        sigma, k1, k2: Gaussian window sigma and the stabilising constants.

    Returns:
        The mean SSIM in [-1, 1]; without a mask over the map cropped by ``(win_size-1)//2``
        voxels per border, which equals scikit-image's ``structural_similarity`` with
        ``gaussian_weights=True, use_sample_covariance=False``.

    Raises:
        ConfigError: ``data_range`` missing or <= 0.
        GeometryError: shapes differ, not 2D/3D, or too small for the window without a mask.

    Example:
        >>> image = np.random.default_rng(0).random((16, 16))
        >>> ssim(image, image, data_range=1.0)
        1.0
    """
    data_range = _check_range(data_range)
    a, b, m = _pair(x, y, mask)
    if a.ndim not in (2, 3):
        raise GeometryError(f"ssim takes 2D or 3D images, got shape {a.shape}")
    if m is not None and not m.any():
        return math.nan
    ta, tb = torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]
    tm = None if m is None else torch.from_numpy(m)[None, None]
    with torch.no_grad():
        value = ssim_torch(ta, tb, data_range=data_range, mask=tm, sigma=sigma, k1=k1, k2=k2)
    return float(value[0])
