"""Deterministic intensity functions on batches, with per-sample, per-channel parameters.

Every function takes ``image`` ``(B, C, *spatial)`` and parameters of shape ``(B, C)`` (or
``(B, C, D)`` for per-axis values) and returns a new tensor; statistics such as mean, min
and max are taken per sample and channel over the spatial axes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.transforms.base import expand_to
from medseg.transforms.separable import (
    apply_along_axis,
    expand_separable,
    gaussian_matrices,
    vandermonde_matrix,
)


def _spatial(image: Tensor) -> tuple[int, ...]:
    return tuple(range(2, image.ndim))


def shift_intensity(image: Tensor, shift: Tensor) -> Tensor:
    """Additive brightness: ``image + shift``."""
    return image + expand_to(shift, image)


def scale_intensity(image: Tensor, factor: Tensor) -> Tensor:
    """Multiplicative brightness: ``image * factor``."""
    return image * expand_to(factor, image)


def adjust_contrast(image: Tensor, factor: Tensor, *, preserve_range: bool = True) -> Tensor:
    """Scale deviations from the mean: ``(x - mean) * factor + mean`` (nnU-Net's contrast).

    Args:
        factor: ``(B, C)``; > 1 increases contrast.
        preserve_range: clip the result to each channel's input [min, max].
    """
    mean = image.mean(dim=_spatial(image), keepdim=True)
    out = (image - mean) * expand_to(factor, image) + mean
    if preserve_range:
        out = torch.clamp(
            out,
            image.amin(dim=_spatial(image), keepdim=True),
            image.amax(dim=_spatial(image), keepdim=True),
        )
    return out


def adjust_gamma(
    image: Tensor,
    gamma: Tensor,
    *,
    invert: bool = False,
    retain_stats: bool = True,
    eps: float = 1e-7,
) -> Tensor:
    """Gamma on the range-normalised image: ``((x - min) / range) ** gamma * range + min``.

    Args:
        gamma: ``(B, C)`` exponents; < 1 brightens dark values.
        invert: apply to the negated image (nnU-Net's "inverted" gamma), then negate back.
        retain_stats: restore each channel's input mean and standard deviation afterwards.
        eps: added to the range so constant channels stay finite.
    """
    x = -image if invert else image
    dims = _spatial(x)
    low = x.amin(dim=dims, keepdim=True)
    span = x.amax(dim=dims, keepdim=True) - low + eps
    out = ((x - low) / span).pow(expand_to(gamma, x)) * span + low
    if retain_stats:
        mean, std = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True)
        new_mean, new_std = out.mean(dim=dims, keepdim=True), out.std(dim=dims, keepdim=True)
        out = (out - new_mean) / (new_std + 1e-8) * std + mean
    return -out if invert else out


def add_rician_noise(image: Tensor, noise_real: Tensor, noise_imag: Tensor) -> Tensor:
    """Rician noise of a magnitude image: ``sqrt((x + n_r)^2 + n_i^2)`` (non-negative result)."""
    return torch.sqrt((image + noise_real) ** 2 + noise_imag**2)


def gaussian_blur(image: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with per-sample, per-channel, per-axis sigma (voxels).

    Args:
        image: ``(B, C, *spatial)``.
        sigma: ``(B, C, D)``; 0 leaves that axis unchanged. Edges are replicated and the kernel
            is cut at 3 sigma (``scipy.ndimage.gaussian_filter(mode="nearest", truncate=3)``).
    """
    out = image
    for d in range(image.ndim - 2):
        axis_sigma = sigma[:, :, d]
        if float(axis_sigma.abs().max()) == 0.0:
            continue
        if bool((axis_sigma == axis_sigma.flatten()[0]).all()):  # one shared matrix: one GEMM
            matrix = gaussian_matrices(image.shape[2 + d], axis_sigma.flatten()[:1])[0]
        else:
            matrix = gaussian_matrices(image.shape[2 + d], axis_sigma)
        out = apply_along_axis(out, matrix, 2 + d)
    return out


def sharpen(image: Tensor, sigma: Tensor, amount: Tensor) -> Tensor:
    """Unsharp masking: ``x + amount * (x - blur(x, sigma))``.

    Args:
        sigma: ``(B, C, D)`` blur sigma in voxels.
        amount: ``(B, C)`` strength; 0 is the identity.
    """
    return image + expand_to(amount, image) * (image - gaussian_blur(image, sigma))


def equalize_histogram(image: Tensor, *, num_bins: int = 256) -> Tensor:
    """Histogram equalisation per sample and channel, mapped back onto the input [min, max].

    Each voxel becomes the fraction of voxels in its bin or below (the empirical CDF over
    ``num_bins`` bins), rescaled to the channel's range; constant channels are unchanged.
    """
    b, c = image.shape[:2]
    flat = image.reshape(b * c, -1)
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    bins = ((flat - low) / span.clamp_min(1e-12) * num_bins).long().clamp(0, num_bins - 1)
    counts = torch.zeros(b * c, num_bins, device=image.device, dtype=image.dtype)
    counts.scatter_add_(1, bins, torch.ones_like(flat))
    cdf = counts.cumsum(dim=1) / flat.shape[1]
    out = torch.gather(cdf, 1, bins) * span + low
    out = torch.where(span > 0, out, flat)
    return out.view_as(image)


def bias_field(shape: tuple[int, ...], coefficients: Tensor) -> Tensor:
    """Smooth multiplicative field ``exp(sum_k c_k * monomial_k)`` (polynomial in log space).

    Args:
        shape: spatial shape.
        coefficients: ``(B, C, order + 1, ..., order + 1)`` (one axis per spatial axis);
            entry ``[i, j, k]`` weighs ``z^i y^j x^k`` with coordinates in [-1, 1]. Entries
            with total degree above the order should be 0.

    Returns:
        ``(B, C, *shape)`` positive field, 1 everywhere for zero coefficients.
    """
    order = coefficients.shape[-1] - 1
    matrices = [vandermonde_matrix(n, order).to(coefficients.device) for n in shape]
    return torch.exp(expand_separable(coefficients, matrices))


def box_mask(
    shape: tuple[int, ...], lower: Tensor, upper: Tensor, *, device: torch.device
) -> Tensor:
    """Union of axis-aligned boxes per sample: ``(B, 1, *shape)`` bool.

    Args:
        lower, upper: ``(B, K, D)`` int voxel bounds of ``K`` boxes (``[lower, upper)``).
    """
    b, k, dims = lower.shape
    mask = torch.zeros(b, 1, *shape, dtype=torch.bool, device=device)
    for box in range(k):
        inside = torch.ones(b, 1, *[1] * dims, dtype=torch.bool, device=device)
        for d, n in enumerate(shape):
            idx = torch.arange(n, device=device)
            axis = (idx >= lower[:, box, d, None].to(device)) & (
                idx < upper[:, box, d, None].to(device)
            )
            view = [b, 1] + [1] * dims
            view[2 + d] = n
            inside = inside & axis.view(view)
        mask |= inside
    return mask


def erase_boxes(image: Tensor, mask: Tensor, fill: Tensor) -> Tensor:
    """Replace voxels inside ``mask`` ``(B, 1, *spatial)`` by ``fill`` ``(B, C)`` or a tensor like
    image."""
    value = fill if fill.shape == image.shape else expand_to(fill, image)
    return torch.where(mask, value, image)


def simulate_low_resolution(image: Tensor, zoom: Tensor) -> Tensor:
    """Downsample with nearest neighbour by ``zoom`` and upsample back linearly (nnU-Net).

    Args:
        image: ``(B, C, *spatial)``.
        zoom: ``(B, C)`` factors in (0, 1]; 1 leaves the channel unchanged.
    """
    out = image.clone()
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[image.ndim - 2]
    shape = image.shape[2:]
    for b in range(image.shape[0]):
        for c in range(image.shape[1]):
            factor = float(zoom[b, c])
            if factor >= 1.0:
                continue
            small = [max(1, math.floor(n * factor + 0.5)) for n in shape]
            channel = image[b : b + 1, c : c + 1]
            down = F.interpolate(channel, size=small, mode="nearest-exact")
            out[b : b + 1, c : c + 1] = F.interpolate(
                down, size=list(shape), mode=mode, align_corners=False
            )
    return out
