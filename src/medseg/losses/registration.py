"""Losses of unsupervised (and label-assisted) image registration, as VoxelMorph trains.

* :func:`local_ncc`: local normalised cross-correlation over a ``window``-voxel cube (9 by
  default), VoxelMorph's image similarity for one modality; a similarity, the loss is
  ``-local_ncc``;
* :func:`mse`: mean squared intensity difference;
* :func:`gradient_smoothness`: the diffusion regulariser, mean squared forward difference of
  the flow along each axis;
* :func:`warped_label_dice`: soft Dice of the warped moving labels and the fixed labels
  (VoxelMorph's semi-supervised term); a similarity, the loss is ``1 - dice``.

Images are ``(B, C, *spatial)`` (C = 1 usually), flows ``(B, D, *spatial)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.errors import ConfigError

NCC_EPS = 1e-5  # VoxelMorph's: flat windows get a correlation near 0, not a division by 0


def _check_pair(fixed: Tensor, warped: Tensor, what: str) -> int:
    if fixed.shape != warped.shape or fixed.ndim not in (3, 4, 5):
        raise ConfigError(
            f"{what}: expected two (B, C, *spatial) tensors of the same shape, got "
            f"{tuple(fixed.shape)} and {tuple(warped.shape)}"
        )
    return fixed.ndim - 2


def _box_sum(x: Tensor, window: int) -> Tensor:
    """Sum over a ``window``-wide cube around each voxel, separable: per axis a cumulative sum
    and the difference of its ends (a few operations per voxel, not ``window ** D``); the
    border replicated, the output on the input grid."""
    dims = x.ndim - 2
    half = window // 2
    x = F.pad(x, [half, window - 1 - half] * dims, mode="replicate")
    for axis in range(2, 2 + dims):
        total = torch.cumsum(x, dim=axis)
        first = total.narrow(axis, window - 1, 1)  # the first window's sum
        x = torch.cat(
            [
                first,
                total.narrow(axis, window, total.shape[axis] - window)
                - total.narrow(axis, 0, total.shape[axis] - window),
            ],
            dim=axis,
        )
    return x


def local_ncc(fixed: Tensor, warped: Tensor, window: int = 9, *, squared: bool = True) -> Tensor:
    """Mean local normalised cross-correlation of two images (VoxelMorph's ``NCC``).

    In every ``window``-voxel cube: ``cc = cov(I, J)^2 / (var(I) var(J) + 1e-5)`` (sums over
    the window, as VoxelMorph), averaged over voxels and channels. ``squared=False`` gives
    the signed ``cov / sqrt(var var + 1e-5)`` instead. Unlike VoxelMorph's zero padding, the
    windows at the border repeat the edge voxels, so an image and any linear intensity map
    ``a I + b`` of it score 1 everywhere (where the window is not flat).

    Returns:
        A scalar similarity: in [0, 1] (``squared``) or [-1, 1]; the loss is its negative.

    Raises:
        ConfigError: images of different shapes, or a ``window`` that is not an odd int >= 1.

    Example:
        >>> x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> round(float(local_ncc(x, 3 * x + 1)), 4)
        1.0
    """
    dims = _check_pair(fixed, warped, "local_ncc")
    if not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ConfigError(f"local_ncc: window must be an odd int >= 1, got {window!r}")
    i, j = fixed.float(), warped.float()
    sums = _box_sum(torch.cat([i, j, i * i, j * j, i * j], dim=1), window)
    s_i, s_j, s_ii, s_jj, s_ij = sums.chunk(5, dim=1)
    size = float(window**dims)
    cross = s_ij - s_i * s_j / size
    var_i = (s_ii - s_i * s_i / size).clamp_min(0)
    var_j = (s_jj - s_j * s_j / size).clamp_min(0)
    if squared:
        cc = cross * cross / (var_i * var_j + NCC_EPS)
    else:
        cc = cross / torch.sqrt(var_i * var_j + NCC_EPS)
    return cc.mean()


def mse(fixed: Tensor, warped: Tensor) -> Tensor:
    """Mean squared difference (a loss: lower is better).

    Example:
        >>> float(mse(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)))
        1.0
    """
    _check_pair(fixed, warped, "mse")
    return (fixed.float() - warped.float()).pow(2).mean()


def gradient_smoothness(flow: Tensor) -> Tensor:
    """VoxelMorph's ``Grad('l2')``: the mean over axes of the mean squared forward difference
    of the flow along that axis (a loss; 0 for a constant flow).

    Args:
        flow: ``(B, D, *spatial)``, every axis at least 2 voxels long.

    Example:
        >>> flow = torch.zeros(1, 2, 3, 3); flow[0, 0] = torch.arange(3.0).view(3, 1)
        >>> float(gradient_smoothness(flow))  # slope 1 along axis 0 in one of 2 channels
        0.25
    """
    dims = flow.ndim - 2
    if dims < 1 or min(flow.shape[2:]) < 2:
        raise ConfigError(
            "gradient_smoothness: expected (B, D, *spatial) with axes >= 2, got "
            f"{tuple(flow.shape)}"
        )
    total = flow.new_zeros(())
    for axis in range(2, flow.ndim):
        total = total + torch.diff(flow.float(), dim=axis).pow(2).mean()
    return total / dims


def warped_label_dice(
    fixed_onehot: Tensor, warped_onehot: Tensor, *, include_background: bool = False
) -> Tensor:
    """Soft Dice of the fixed and the warped moving one-hot labels, averaged over classes
    (channel 0, the background, left out unless ``include_background``). A class absent from
    both scores 1.

    Args:
        fixed_onehot, warped_onehot: ``(B, K, *spatial)`` in [0, 1] (a one-hot map warped
            linearly is soft).

    Returns:
        A scalar in [0, 1]; the loss is ``1 - dice``.

    Example:
        >>> a = torch.zeros(1, 2, 4, 4); a[:, 1, :2] = 1; a[:, 0] = 1 - a[:, 1]
        >>> b = torch.zeros(1, 2, 4, 4); b[:, 1, 1:3] = 1; b[:, 0] = 1 - b[:, 1]
        >>> float(warped_label_dice(a, b))
        0.5
    """
    _check_pair(fixed_onehot, warped_onehot, "warped_label_dice")
    if not include_background:
        if fixed_onehot.shape[1] < 2:
            raise ConfigError("warped_label_dice: need >= 2 channels (background + a class)")
        fixed_onehot, warped_onehot = fixed_onehot[:, 1:], warped_onehot[:, 1:]
    axes = list(range(2, fixed_onehot.ndim))
    a, b = fixed_onehot.float(), warped_onehot.float()
    inter = (a * b).sum(axes)
    total = a.sum(axes) + b.sum(axes)
    dice = torch.where(total > 0, 2 * inter / total.clamp_min(1e-8), torch.ones_like(total))
    return dice.mean()
