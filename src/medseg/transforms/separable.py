"""Separable linear maps: one small matrix per spatial axis, applied with BLAS.

Blurring, smooth random fields (elastic displacements, bias fields) and polynomial fields
are all of the form ``out = M_0 x_0 M_1 x_1 ... x`` -- a matrix applied along each spatial
axis. Applying a dense ``(n_out, n_in)`` matrix per axis is a batched matrix product, which
on CPU is several times faster than ``conv3d`` with a thin kernel and works unchanged in
2-D and 3-D.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def apply_along_axis(x: Tensor, matrix: Tensor, axis: int) -> Tensor:
    """Multiply ``x`` by ``matrix`` along one axis:
    ``out[..., i, ...] = sum_j M[i, j] x[..., j, ...]``.

    Args:
        x: ``(B, C, *spatial)``.
        matrix: ``(n_out, n_in)`` shared by all samples, or ``(B, C, n_out, n_in)`` per sample
            and channel (``B``/``C`` may be 1 to broadcast).
        axis: the axis of ``x`` to map (``>= 2``; negative values count from the end).

    Returns:
        ``x`` with axis ``axis`` of length ``n_out``, contiguous.
    """
    axis = axis % x.ndim
    n_in = x.shape[axis]
    pre = math.prod(x.shape[2:axis])
    post = math.prod(x.shape[axis + 1 :])
    n_out = matrix.shape[-2]
    matrix = matrix.to(device=x.device, dtype=x.dtype)
    b, c = x.shape[:2]
    if post == 1:  # last axis: rows @ M^T
        flat = x.reshape(b, c, pre, n_in)
        out = flat @ matrix.transpose(-1, -2)
    else:
        flat = x.reshape(b, c, pre, n_in, post)
        m = matrix if matrix.ndim == 2 else matrix.unsqueeze(2)
        out = m @ flat
    return out.reshape(*x.shape[:axis], n_out, *x.shape[axis + 1 :])


def expand_separable(coefficients: Tensor, matrices: Sequence[Tensor]) -> Tensor:
    """Map a small ``(B, C, *k)`` coefficient grid to ``(B, C, *n)`` with one matrix per axis.

    Args:
        coefficients: ``(B, C, k_0, ..., k_{D-1})``.
        matrices: ``D`` matrices of shape ``(n_d, k_d)``.

    Returns:
        ``(B, C, n_0, ..., n_{D-1})``. The smallest axes are expanded first to keep the
        intermediate tensors small.
    """
    out = coefficients
    for d in reversed(range(len(matrices))):
        out = apply_along_axis(out, matrices[d], 2 + d)
    return out


def gaussian_matrices(size: int, sigma: Tensor) -> Tensor:
    """Gaussian blur along one axis as matrices, edges replicated ("nearest" boundary).

    Args:
        size: length of the axis.
        sigma: ``(...)`` standard deviations in voxels; 0 gives the identity matrix.

    Returns:
        ``(..., size, size)`` float32 matrices whose rows sum to 1 (kernel truncated at
        3 sigma, as ``scipy.ndimage.gaussian_filter`` with ``truncate=3`` and mode "nearest").
    """
    sigma = sigma.to(torch.float64)
    radius = max(1, math.ceil(3.0 * float(sigma.max()))) if sigma.numel() else 1
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    safe = sigma.clamp_min(1e-12).unsqueeze(-1)
    weights = torch.exp(-0.5 * (offsets / safe) ** 2)
    weights = torch.where(offsets.abs() <= 3.0 * safe + 0.5, weights, torch.zeros_like(weights))
    weights = torch.where(sigma.unsqueeze(-1) > 0, weights, (offsets == 0).to(weights.dtype))
    weights = weights / weights.sum(-1, keepdim=True)
    rows = torch.arange(size)
    cols = (rows[:, None] + offsets[None, :].long()).clamp(0, size - 1)  # replicate the edges
    batch = weights.shape[:-1]
    matrix = torch.zeros(*batch, size, size, dtype=torch.float64)
    index = cols.expand(*batch, size, offsets.numel())
    matrix.scatter_add_(-1, index, weights.unsqueeze(-2).expand(*batch, size, offsets.numel()))
    return matrix.to(torch.float32)


def _cubic_bspline(t: Tensor) -> Tensor:
    t = t.abs()
    inner = (4.0 - 6.0 * t**2 + 3.0 * t**3) / 6.0
    outer = (2.0 - t).clamp_min(0.0) ** 3 / 6.0
    return torch.where(t < 1.0, inner, outer)


def bspline_matrix(size: int, num_control_points: int) -> Tensor:
    """Cubic B-spline interpolation from control points to voxels along one axis.

    Control points are evenly spaced with the first and last one a spacing outside the axis,
    so every voxel has full spline support (the rows sum to 1 and the field is C2 smooth).

    Args:
        size: number of voxels along the axis.
        num_control_points: at least 4.

    Returns:
        ``(size, num_control_points)`` float32.
    """
    if num_control_points < 4:
        raise ValueError(f"num_control_points must be >= 4, got {num_control_points}")
    spacing = max(size - 1, 1) / (num_control_points - 3)
    position = torch.arange(size, dtype=torch.float64) / spacing + 1.0  # in control units
    knots = torch.arange(num_control_points, dtype=torch.float64)
    return _cubic_bspline(position[:, None] - knots[None, :]).to(torch.float32)


def vandermonde_matrix(size: int, order: int) -> Tensor:
    """Powers ``0..order`` of voxel coordinates rescaled to [-1, 1]: ``(size, order + 1)``."""
    coords = torch.linspace(-1.0, 1.0, size, dtype=torch.float64)
    return (coords[:, None] ** torch.arange(order + 1, dtype=torch.float64)).to(torch.float32)
