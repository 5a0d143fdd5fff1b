"""Dense displacement fields: warp an image, convert units, integrate a velocity, compose.

Conventions (every function of :mod:`medseg.registration`):

* a **flow** is a displacement field ``(B, D, *spatial)`` with ``D = spatial_dims`` channels in
  **voxels**, channel ``d`` along array axis ``d`` (the array axis order: ``z, y, x`` in 3D,
  ``row, col`` in 2D; SimpleITK's ``x, y, z`` is the reverse, see :mod:`.apply`);
* warping **pulls back**: ``warp(moving, flow)(p) = moving(p + flow(p))`` at every voxel ``p``
  of the fixed grid, as VoxelMorph's spatial transformer does; a registration predicts the
  flow that makes ``warp(moving, flow)`` look like the fixed image;
* sampling is :func:`torch.nn.functional.grid_sample` with ``align_corners=True`` (voxel
  centres at -1 and +1), so voxel ``p`` is exactly where ``p`` says. Outside the image the
  border voxels are repeated (``padding="border"``) or zeros are read (``"zeros"``).

A zero flow returns the image up to float rounding (the normalisation to [-1, 1] and back
is not exact in float32: below 1e-6 relative); nearest-neighbour warps by integer flows are
exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.errors import ConfigError, GeometryError

Mode = Literal["linear", "nearest"]
Padding = Literal["border", "zeros"]
_GRID_MODE = {"linear": "bilinear", "nearest": "nearest"}


def check_flow(flow: Tensor, *, name: str = "flow") -> int:
    """Check a flow is ``(B, D, *spatial)`` with ``D = spatial_dims``; returns ``D``.

    Raises:
        ConfigError: wrong rank, wrong channel count, or not a floating-point tensor.
    """
    if not isinstance(flow, Tensor) or flow.ndim not in (4, 5):
        shape = tuple(flow.shape) if isinstance(flow, Tensor) else type(flow).__name__
        raise ConfigError(
            f"{name}: expected a (B, D, *spatial) tensor with D = 2 or 3, got {shape}"
        )
    dims = flow.ndim - 2
    if flow.shape[1] != dims:
        raise ConfigError(
            f"{name} has {flow.shape[1]} channels for {dims} spatial axes (shape "
            f"{tuple(flow.shape)}); a flow needs one channel per spatial axis, in array axis order"
        )
    if not flow.is_floating_point():
        raise ConfigError(f"{name}: a flow must be a floating-point tensor, got {flow.dtype}")
    return dims


def identity_grid(shape: Sequence[int], *, device=None, dtype=torch.float32) -> Tensor:
    """Voxel coordinates ``(D, *shape)``: channel ``d`` holds each voxel's index on axis ``d``."""
    axes = [torch.arange(n, device=device, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def _sampling_grid(flow: Tensor) -> Tensor:
    """``grid_sample``'s grid ``(B, *spatial, D)``: positions ``p + flow`` in [-1, 1], in
    grid_sample's reversed (``x, y, z``) component order."""
    spatial = flow.shape[2:]
    position = identity_grid(spatial, device=flow.device, dtype=flow.dtype)[None] + flow
    scale = torch.tensor([2.0 / max(n - 1, 1) for n in spatial], dtype=flow.dtype)
    scale = scale.to(flow.device).view(1, -1, *([1] * len(spatial)))
    normalised = position * scale - 1.0
    return normalised.movedim(1, -1).flip(-1)


def warp(
    image: Tensor, flow: Tensor, *, mode: Mode = "linear", padding: Padding = "border"
) -> Tensor:
    """``image`` pulled back by ``flow``: ``out(p) = image(p + flow(p))``.

    Args:
        image: ``(B, C, *spatial)`` (or ``(1, C, *spatial)`` shared by the batch). A label map
            (an integer or bool tensor) takes ``mode="nearest"``; warp a one-hot float tensor
            to interpolate labels softly.
        flow: ``(B, D, *spatial)`` displacement in voxels, channels in array axis order.
        mode: ``"linear"`` (bi/trilinear) or ``"nearest"``.
        padding: ``"border"`` (repeat the edge) or ``"zeros"`` outside the image.

    Returns:
        ``(B, C, *spatial)``, the dtype of ``image``.

    Raises:
        ConfigError: a flow with the wrong channels, an unknown mode, a label map with
            ``mode="linear"``.
        GeometryError: image and flow of different spatial shape or batch size.

    Example:
        >>> img = torch.arange(12.0).view(1, 1, 3, 4)
        >>> flow = torch.zeros(1, 2, 3, 4); flow[:, 1] = 1.0  # one voxel along the columns
        >>> warp(img, flow, mode="nearest")[0, 0, 0].tolist()
        [1.0, 2.0, 3.0, 3.0]
    """
    dims = check_flow(flow)
    if mode not in _GRID_MODE:
        raise ConfigError(f"warp: mode must be 'linear' or 'nearest', got {mode!r}")
    if padding not in ("border", "zeros"):
        raise ConfigError(f"warp: padding must be 'border' or 'zeros', got {padding!r}")
    if image.ndim != dims + 2 or tuple(image.shape[2:]) != tuple(flow.shape[2:]):
        raise GeometryError(
            f"warp: image {tuple(image.shape)} and flow {tuple(flow.shape)} must be "
            "(B, C, *spatial) and (B, D, *spatial) on the same grid"
        )
    if image.shape[0] not in (1, flow.shape[0]):
        raise GeometryError(f"warp: batch of {image.shape[0]} images for {flow.shape[0]} flows")
    is_label = not image.is_floating_point()
    if is_label and mode == "linear":
        raise ConfigError(
            f"warp: refusing to interpolate a label map ({image.dtype}) linearly: labels are "
            "categories; use mode='nearest', or warp a one-hot float tensor for soft labels"
        )
    values = image.to(flow.dtype) if is_label else image
    if values.shape[0] != flow.shape[0]:
        values = values.expand(flow.shape[0], *values.shape[1:])
    out = F.grid_sample(
        values,
        _sampling_grid(flow.to(values.dtype)),
        mode=_GRID_MODE[mode],
        padding_mode=padding,
        align_corners=True,
    )
    return out.round().to(image.dtype) if is_label else out


def _spacing_view(flow: Tensor, spacing: Sequence[float]) -> Tensor:
    dims = check_flow(flow)
    if len(spacing) != dims or any(not s > 0 for s in spacing):
        raise ConfigError(
            f"spacing {tuple(spacing)}: expected {dims} positive values (array axis order)"
        )
    return torch.tensor(spacing, dtype=flow.dtype, device=flow.device).view(1, dims, *[1] * dims)


def flow_mm(flow: Tensor, spacing: Sequence[float]) -> Tensor:
    """A voxel flow in millimetres: channel ``d`` times ``spacing[d]`` (array axis order).

    Example:
        >>> flow_mm(torch.ones(1, 2, 2, 2), (2.0, 0.5))[0, :, 0, 0].tolist()
        [2.0, 0.5]
    """
    return flow * _spacing_view(flow, spacing)


def flow_voxels(flow: Tensor, spacing: Sequence[float]) -> Tensor:
    """A millimetre flow in voxels (the inverse of :func:`flow_mm`)."""
    return flow / _spacing_view(flow, spacing)


def compose(flow_a: Tensor, flow_b: Tensor) -> Tensor:
    """The flow of warping by ``flow_a`` and then by ``flow_b``:
    ``warp(warp(x, flow_a), flow_b) ~= warp(x, compose(flow_a, flow_b))``.

    ``compose(a, b)(p) = b(p) + a(p + b(p))`` (``a`` sampled linearly, borders repeated).

    Example:
        >>> a, b = torch.full((1, 2, 4, 4), 1.0), torch.full((1, 2, 4, 4), 0.5)
        >>> compose(a, b)[0, :, 1, 1].tolist()
        [1.5, 1.5]
    """
    check_flow(flow_a, name="flow_a")
    check_flow(flow_b, name="flow_b")
    if flow_a.shape[1:] != flow_b.shape[1:]:
        raise GeometryError(
            f"compose: flows {tuple(flow_a.shape)} and {tuple(flow_b.shape)} differ in shape"
        )
    return flow_b + warp(flow_a, flow_b)


def integrate_velocity(velocity: Tensor, steps: int = 7) -> Tensor:
    """The flow of a stationary velocity field by scaling and squaring (Arsigny 2006, as
    VoxelMorph's diffeomorphic variant): ``u = v / 2**steps``, then ``steps`` times
    ``u <- u + u o (id + u)``. The result is invertible when ``v / 2**steps`` is small.

    Args:
        velocity: ``(B, D, *spatial)`` in voxels.
        steps: squarings (0 returns the velocity itself).

    Raises:
        ConfigError: ``steps`` < 0 or a velocity with the wrong channels.

    Example:
        >>> v = torch.full((1, 2, 5, 5), 2.0)  # constant: the flow equals it
        >>> round(float(integrate_velocity(v)[0, 0, 2, 2]), 4)
        2.0
    """
    check_flow(velocity, name="velocity")
    if not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"integrate_velocity: steps must be an int >= 0, got {steps!r}")
    flow = velocity / (2**steps)
    for _ in range(steps):
        flow = flow + warp(flow, flow)
    return flow
