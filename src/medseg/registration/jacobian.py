"""The Jacobian determinant of a deformation and the share of folded voxels.

For a flow ``u`` (:mod:`.warp` conventions) the deformation is ``phi(p) = p + u(p)`` and its
Jacobian ``J = I + grad u``. ``det J > 0`` everywhere means ``phi`` keeps orientation
(no folding); ``det J <= 0`` marks voxels where the deformation folds space onto itself. The
derivatives are central differences (one-sided at the borders, ``torch.gradient``), exact for
an affine field.

The determinant does not depend on units as long as displacement and position share them:
a voxel flow (``spacing=None``) and the same flow in millimetres with ``spacing`` give the
same value.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from medseg.errors import ConfigError
from medseg.registration.warp import check_flow


def jacobian_determinant(flow: Tensor, spacing: Sequence[float] | None = None) -> Tensor:
    """``det(I + grad u)`` at every voxel.

    Args:
        flow: ``(B, D, *spatial)`` displacement, in voxels (``spacing=None``) or in mm
            (``spacing`` given, array axis order), each spatial axis at least 2 voxels long.
        spacing: voxel size in mm per array axis when ``flow`` is in mm.

    Returns:
        ``(B, *spatial)`` determinants (float64 for float64 flows, else float32).

    Raises:
        ConfigError: a flow with the wrong channels, an axis shorter than 2 voxels, or a
            spacing of the wrong length.

    Example:
        >>> flow = torch.zeros(1, 2, 4, 4)
        >>> flow[0, 0] = 0.5 * torch.arange(4.0).view(4, 1)  # stretch axis 0 by 1.5
        >>> float(jacobian_determinant(flow)[0, 1, 1])
        1.5
    """
    dims = check_flow(flow)
    if min(flow.shape[2:]) < 2:
        raise ConfigError(
            f"jacobian_determinant: every axis needs >= 2 voxels, got {tuple(flow.shape)}"
        )
    if spacing is None:
        steps = [1.0] * dims
    elif len(spacing) != dims or any(not s > 0 for s in spacing):
        raise ConfigError(f"spacing {tuple(spacing)}: expected {dims} positive values")
    else:
        steps = [float(s) for s in spacing]
    dtype = torch.float64 if flow.dtype == torch.float64 else torch.float32
    u = flow.to(dtype)
    # grads[i][:, j] = d u_j / d x_i  (B, D, *spatial)
    grads = torch.gradient(u, spacing=steps, dim=list(range(2, 2 + dims)))
    jac = torch.stack(grads, dim=-1)  # (B, D_j, *spatial, D_i): d u_j / d x_i
    jac = jac.movedim(1, -2)  # (B, *spatial, D_j, D_i)
    jac = jac + torch.eye(dims, dtype=dtype, device=flow.device)
    return torch.linalg.det(jac)


def folding_percent(flow: Tensor, spacing: Sequence[float] | None = None) -> float:
    """Percentage of voxels (all of the batch) where ``det J <= 0``.

    Example:
        >>> float(folding_percent(torch.zeros(1, 3, 4, 4, 4)))
        0.0
    """
    det = jacobian_determinant(flow, spacing)
    return float((det <= 0).double().mean() * 100.0)
