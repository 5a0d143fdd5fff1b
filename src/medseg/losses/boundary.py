"""Boundary loss (Kervadec et al. 2019): a region integral of the softmax over the target's
signed distance map.

    ``L_B = mean_x sum_{c in classes} phi_c(x) p_c(x)``

``phi_c`` is the signed distance to the boundary of class ``c`` (negative inside, positive
outside), precomputed from the target. Probability mass outside the object costs its
distance, mass inside earns it, so ``L_B`` is smallest (negative) at the perfect prediction
and, unlike Dice, it still has useful gradients for tiny structures. Kervadec et al. pair it
with a regional loss (GDL) whose weight decreases over training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor, nn

from medseg.losses.inputs import Activation, prepare


def signed_distance_map(
    onehot: np.ndarray | Tensor, *, spacing: Sequence[float] | None = None
) -> np.ndarray | Tensor:
    """Signed distance maps of one-hot masks, as in Kervadec et al.'s reference code.

    ``phi = d_out * (1 - g) - (d_in - 1) * g`` with ``d_out`` the distance to the object for
    outside voxels and ``d_in`` the distance to the background for inside voxels: 0 on the
    object's inner border, ``-(k)`` ``k`` voxels deeper inside, ``+k`` at ``k`` voxels outside.
    An empty channel gives zeros.

    Args:
        onehot: ``(B, K, *spatial)`` binary masks, NumPy or torch.
        spacing: voxel size per spatial axis (mm), or None for voxel units.

    Returns:
        Float maps of the same shape and kind (a tensor on the input's device for a tensor).

    Example:
        >>> signed_distance_map(np.array([[[0, 1, 1, 1, 0, 0]]]))[0, 0]
        array([ 1.,  0., -1.,  0.,  1.,  2.], dtype=float32)
    """
    is_tensor = isinstance(onehot, Tensor)
    masks = onehot.detach().cpu().numpy() if is_tensor else np.asarray(onehot)
    masks = masks > 0.5
    if masks.ndim < 3:
        raise ValueError(f"expected (B, K, *spatial) masks, got shape {masks.shape}")
    flat = masks.reshape(-1, *masks.shape[2:])
    out = np.zeros(flat.shape, dtype=np.float32)
    for i, mask in enumerate(flat):
        if mask.any():
            outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
            inside = ndimage.distance_transform_edt(mask, sampling=spacing)
            out[i] = np.where(mask, 1.0 - inside, outside)
    out = out.reshape(masks.shape)
    return torch.from_numpy(out).to(onehot.device) if is_tensor else out


class BoundaryLoss(nn.Module):
    """Boundary loss ``loss(logits, target, distance_map=None)``.

    Pass ``distance_map`` ``(B, K, *spatial)`` from :func:`signed_distance_map` (computed
    once per case in the data pipeline); without it the maps are computed here from the
    target on the CPU.

    Args:
        include_background: also use channel 0 (paper: foreground classes only).
        activation: ``softmax`` or ``sigmoid``.
        ignore_index: label whose voxels are left out.
        spacing: voxel size for the maps computed here.

    Returns (``forward``):
        A scalar, minimal (negative) at the perfect prediction; not bounded below by 0.
    """

    def __init__(
        self,
        *,
        include_background: bool = False,
        activation: Activation = "softmax",
        ignore_index: int | None = None,
        spacing: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.include_background = include_background
        self.activation = activation
        self.ignore_index = ignore_index
        self.spacing = spacing

    def forward(self, logits: Tensor, target: Tensor, distance_map: Tensor | None = None) -> Tensor:
        probs, onehot, mask = prepare(
            logits,
            target,
            activation=self.activation,
            ignore_index=self.ignore_index,
            include_background=True,
        )
        if distance_map is None:
            distance_map = signed_distance_map(onehot, spacing=self.spacing)
        distance_map = distance_map.to(probs)
        if not self.include_background and self.activation == "softmax":
            probs, distance_map = probs[:, 1:], distance_map[:, 1:]
        weighted = (probs * distance_map).sum(dim=1, keepdim=True)
        if mask is None:
            return weighted.mean()
        return weighted.sum() / mask.sum().clamp_min(1e-8)
