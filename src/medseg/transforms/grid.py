"""Deterministic spatial functions: affine matrices, one sampling grid, resampling, crops.

Coordinates: a voxel ``i`` along an axis of length ``n`` has the centred coordinate
``u = i - (n - 1) / 2`` (voxel units, array axis order ``(z, y, x)``). An affine *content*
transform maps input coordinates to output coordinates, ``u_out = A u_in + t``; to resample
we need the inverse, ``u_in = A^-1 (u_out - t)``, plus an optional elastic displacement
(voxels, input axes) defined on the output grid. The whole chain becomes one grid for one
``torch.nn.functional.grid_sample`` call per batch, so the image is interpolated once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

ImagePadding = Literal["zeros", "border", "reflection"]
LabelMode = Literal["nearest", "linear"]


def rotation_planes(spatial_dims: int) -> list[tuple[int, int]]:
    """Axis pairs that rotations act in: 2-D ``[(0, 1)]``, 3-D ``[(0, 1), (0, 2), (1, 2)]``.

    In 3-D the plane ``(1, 2)`` is the in-plane ``(y, x)`` rotation about the ``z`` axis.
    """
    return list(itertools.combinations(range(spatial_dims), 2))


def affine_matrix(
    *,
    angles: Tensor | None = None,
    scale: Tensor | None = None,
    shear: Tensor | None = None,
    spatial_dims: int,
    batch_size: int,
) -> Tensor:
    """Content transform matrices ``A = R @ diag(scale) @ S`` in array axis order.

    Args:
        angles: ``(B, P)`` radians, one per plane of ``rotation_planes(spatial_dims)``.
        scale: ``(B, D)`` size factors per axis; > 1 enlarges the content (zoom in).
        shear: ``(B, D, D)`` shear factors; only off-diagonal entries are used.
        spatial_dims: ``D`` (2 or 3).
        batch_size: ``B``.

    Returns:
        ``(B, D, D)`` float64 matrices; the identity when all parts are None or neutral.
    """
    eye = torch.eye(spatial_dims, dtype=torch.float64).expand(batch_size, -1, -1)
    matrix = eye.clone()
    if angles is not None:
        for p, (i, j) in enumerate(rotation_planes(spatial_dims)):
            rot = eye.clone()
            cos, sin = torch.cos(angles[:, p]), torch.sin(angles[:, p])
            rot[:, i, i], rot[:, j, j], rot[:, i, j], rot[:, j, i] = cos, cos, -sin, sin
            matrix = matrix @ rot
    if scale is not None:
        matrix = matrix * scale.to(torch.float64)[:, None, :]
    if shear is not None:
        off = shear.to(torch.float64) * (1 - eye)
        matrix = matrix @ (eye + off)
    return matrix


def sampling_grid(
    matrix: Tensor,
    offset: Tensor,
    in_shape: Sequence[int],
    out_shape: Sequence[int],
    *,
    displacement: Tensor | None = None,
) -> Tensor:
    """Build the ``grid_sample`` grid for ``u_in = matrix @ u_out + offset (+ displacement)``.

    Args:
        matrix: ``(B, D, D)`` sampling matrix (output -> input, voxel units, array axis order).
        offset: ``(B, D)`` input-space offset in voxels.
        in_shape: input spatial shape.
        out_shape: output spatial shape.
        displacement: ``(B, D, *out_shape)`` extra input-space displacement in voxels, or None.

    Returns:
        ``(B, *out_shape, D)`` float32 grid in ``grid_sample`` convention (normalised to
        [-1, 1] with ``align_corners=False``, last axis in ``(x, y, z)`` order). When the
        shapes differ by an odd number of voxels the output grid is shifted by half a voxel
        so that the identity transform lands exactly on input voxels (as a crop would).
    """
    batch, dims = matrix.shape[0], len(out_shape)
    device = displacement.device if displacement is not None else matrix.device
    grid = torch.empty(batch, *out_shape, dims, dtype=torch.float32, device=device)
    coords = [
        torch.arange(n, dtype=torch.float64) - (n - 1) / 2 + (math.floor((m - n) / 2) - (m - n) / 2)
        for n, m in zip(out_shape, in_shape, strict=True)
    ]
    matrix, offset = matrix.to(torch.float64).cpu(), offset.to(torch.float64).cpu()
    for k in range(dims):
        to_normal = 2.0 / in_shape[k]
        # small per-axis terms (float64 on CPU), summed by broadcasting on the device
        total = (offset[:, k] * to_normal).view(batch, *([1] * dims)).to(device, torch.float32)
        for j in range(dims):
            shape = [batch] + [1] * dims
            shape[1 + j] = out_shape[j]
            term = (matrix[:, k, j, None] * coords[j] * to_normal).view(shape)
            total = total + term.to(device=device, dtype=torch.float32)
        if displacement is not None:
            total = total + displacement[:, k] * to_normal
        grid[..., dims - 1 - k] = total
    return grid


def resample(
    image: Tensor,
    label: Tensor | None,
    grid: Tensor,
    *,
    label_mode: LabelMode = "nearest",
    image_padding: ImagePadding = "zeros",
    label_fill: int = 0,
) -> tuple[Tensor, Tensor | None]:
    """Resample image (linear) and label on one grid.

    Args:
        image: ``(B, C, *spatial)`` float; all channels share one ``grid_sample`` call.
        label: ``(B, 1, *spatial)`` or None.
        grid: ``(B, *out, D)`` from ``sampling_grid``.
        label_mode: ``"nearest"`` (fast) or ``"linear"``: each label value is interpolated as a
            one-hot channel and the largest wins (smoother borders, costs one channel per
            value). Both return only values present in the input or ``label_fill``.
        image_padding: value outside the input: ``"zeros"`` (0), ``"border"`` (edge value) or
            ``"reflection"``.
        label_fill: label value outside the input (0, or e.g. -1 as an ignore value).

    Returns:
        ``(image, label)`` on the output grid, label in its input dtype.
    """
    grid = grid.to(device=image.device)
    out = F.grid_sample(
        image,
        grid.to(image.dtype),
        mode="bilinear",
        padding_mode=image_padding,
        align_corners=False,
    )
    if label is None:
        return out, None
    as_float = label.to(torch.float32)
    if label_mode == "nearest":
        shifted = F.grid_sample(
            as_float - label_fill, grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        return out, (shifted + label_fill).round().to(label.dtype)
    values = torch.unique(
        torch.cat([as_float.flatten(), torch.tensor([float(label_fill)], device=label.device)])
    )
    onehot = (as_float == values.view(1, -1, *([1] * (label.ndim - 2)))).to(torch.float32)
    weights = F.grid_sample(
        onehot, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    fill_index = int(torch.nonzero(values == float(label_fill))[0])
    weights[:, fill_index] += 1.0 - weights.sum(dim=1)
    return out, values[weights.argmax(dim=1, keepdim=True)].to(label.dtype)


def crop_or_pad(
    x: Tensor, start: Sequence[int], size: Sequence[int], *, fill: float = 0.0
) -> Tensor:
    """Cut the box ``[start, start + size)`` from every sample, filling outside with ``fill``.

    Args:
        x: ``(B, C, *spatial)``.
        start: first input index per spatial axis (negative or past the end pads).
        size: output spatial shape.
        fill: value of voxels outside ``x``.

    Returns:
        ``(B, C, *size)``, exact (no interpolation).
    """
    spatial = x.shape[2:]
    src, dst = [], []
    for s, n, length in zip(start, size, spatial, strict=True):
        lo, hi = max(s, 0), min(s + n, length)
        if hi <= lo:
            return x.new_full((*x.shape[:2], *size), fill)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    if list(size) == list(spatial) and all(s == 0 for s in start):
        return x
    out = x.new_full((*x.shape[:2], *size), fill)
    out[(..., *dst)] = x[(..., *src)]
    return out


def centre_start(in_shape: Sequence[int], out_shape: Sequence[int]) -> list[int]:
    """Start index of a centred ``out_shape`` box (matches ``sampling_grid``'s identity)."""
    return [math.floor((m - n) / 2) for n, m in zip(out_shape, in_shape, strict=True)]


def flip(x: Tensor, flips: Tensor) -> Tensor:
    """Flip each sample along its chosen spatial axes (exact).

    Args:
        x: ``(B, C, *spatial)``.
        flips: ``(B, D)`` bool, True where spatial axis ``d`` of sample ``b`` is flipped.

    Returns:
        A new tensor (or ``x`` when nothing flips).
    """
    if not bool(flips.any()):
        return x
    out = x.clone()
    for pattern in torch.unique(flips, dim=0):
        if not bool(pattern.any()):
            continue
        rows = (flips == pattern).all(dim=1).to(x.device)
        axes = [2 + d for d in range(flips.shape[1]) if bool(pattern[d])]
        out[rows] = x[rows].flip(axes)
    return out


def rot90(x: Tensor, turns: Tensor, axes: tuple[int, int]) -> Tensor:
    """Rotate each sample by ``turns[b]`` quarter turns in the plane of two spatial axes (exact).

    Args:
        x: ``(B, C, *spatial)``; the plane must be square unless all turns are even.
        turns: ``(B,)`` int in {0, 1, 2, 3}.
        axes: two spatial axis indices (0-based, array order).

    Returns:
        A new tensor (or ``x`` when no sample turns).
    """
    a, b = 2 + axes[0], 2 + axes[1]
    if bool((turns % 2 == 1).any()) and x.shape[a] != x.shape[b]:
        raise ValueError(f"odd quarter turns need a square plane, got {x.shape[a]} x {x.shape[b]}")
    if not bool((turns % 4 != 0).any()):
        return x
    out = x.clone()
    for k in (1, 2, 3):
        rows = (turns % 4 == k).to(x.device)
        if bool(rows.any()):
            out[rows] = torch.rot90(x[rows], k, dims=(a, b))
    return out
