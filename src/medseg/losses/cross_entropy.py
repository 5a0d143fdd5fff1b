"""Cross-entropy, with optional class weights and per-voxel weights (U-Net weight map).

Softmax: ``CE(x) = -sum_c g_c(x) log p_c(x)``; sigmoid: the binary CE of every channel,
``-[g log p + (1 - g) log(1 - p)]``. The loss is the weighted mean over valid voxels

    ``L = sum_x w_pix(x) w_cls(x) CE(x) / sum_x w_cls(x)``,

``w_cls(x) = sum_c w_c g_c(x)`` (class weights, normalised like ``torch.nn.CrossEntropyLoss``)
and ``w_pix`` a weight map (Ronneberger et al. 2015: :func:`medseg.losses.unet_weight_map`)
that is deliberately not normalised, so emphasised borders raise the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn

from medseg.losses.inputs import Activation, check_shapes, one_hot_target
from medseg.losses.weight_map import unet_weight_map


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    activation: Activation = "softmax",
    class_weights: Sequence[float] | Tensor | None = None,
    pixel_weights: Tensor | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    """Mean (weighted) cross-entropy on logits.

    Args:
        logits: ``(B, K, *spatial)``.
        target: ``(B, 1, *spatial)`` labels or ``(B, K, *spatial)`` one-hot/soft target.
        activation: ``softmax`` (``K >= 2``) or ``sigmoid`` (binary CE per channel).
        class_weights: ``K`` weights, or None.
        pixel_weights: ``(B, 1, *spatial)`` (or broadcastable) voxel weights, or None.
        ignore_index: label to leave out (label targets only).

    Returns:
        A scalar; 0 for a perfect hard prediction only in the limit of infinite logits.

    Example:
        >>> logits = torch.tensor([[[0.0], [0.0]]])  # (1, 2, 1): p = (0.5, 0.5)
        >>> round(cross_entropy(logits, torch.tensor([[[1]]])).item(), 4)  # ln 2
        0.6931
    """
    check_shapes(logits, target)
    onehot, mask = one_hot_target(target, logits.shape[1], ignore_index=ignore_index)
    onehot = onehot.to(logits.dtype)
    if activation == "softmax":
        if logits.shape[1] < 2:
            raise ValueError(
                "softmax cross-entropy needs >= 2 channels; use activation='sigmoid' for one"
            )
        ce = -(onehot * logits.log_softmax(dim=1)).sum(dim=1, keepdim=True)
    elif activation == "sigmoid":
        ce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    else:
        raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
    weight = torch.ones_like(ce[:, :1]) if mask is None else mask
    if class_weights is not None:
        cw = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        if cw.numel() != logits.shape[1]:
            raise ValueError(
                f"class_weights has {cw.numel()} entries for {logits.shape[1]} classes"
            )
        cw = cw.view(1, -1, *([1] * (logits.ndim - 2)))
        per_class = onehot * cw  # sigmoid: per channel; softmax: collapse to the target's class
        weight = weight * (
            per_class.sum(dim=1, keepdim=True) if activation == "softmax" else per_class
        )
    weight = weight.expand_as(ce)
    numerator = ce * weight if pixel_weights is None else ce * weight * pixel_weights
    return numerator.sum() / weight.sum().clamp_min(1e-8)


class CrossEntropyLoss(nn.Module):
    """Cross-entropy loss ``loss(logits, target)``; see :func:`cross_entropy`.

    Args:
        activation: ``softmax`` or ``sigmoid``.
        class_weights: ``K`` class weights or None.
        ignore_index: label to leave out.

    Example:
        >>> loss = CrossEntropyLoss()
        >>> loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.long)).item() > 0
        True
    """

    def __init__(
        self,
        *,
        activation: Activation = "softmax",
        class_weights: Sequence[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.class_weights = class_weights
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(
            logits,
            target,
            activation=self.activation,
            class_weights=self.class_weights,
            ignore_index=self.ignore_index,
        )


class WeightedCrossEntropyLoss(nn.Module):
    """Cross-entropy weighted by the U-Net border weight map (Ronneberger et al. 2015).

    ``loss(logits, target, weight_map=None)``: pass a precomputed ``(B, 1, *spatial)`` map
    (best: computed once per case in preprocessing with :func:`unet_weight_map` from the
    instance labels). Without one, the map is computed here on the CPU from the target, with
    the connected components of the foreground as the objects: correct, but slow for big
    batches.

    Args:
        w0: border weight.
        sigma: border width in voxels.
        activation: ``softmax`` or ``sigmoid``.
        ignore_index: label to leave out.
    """

    def __init__(
        self,
        *,
        w0: float = 10.0,
        sigma: float = 5.0,
        activation: Activation = "softmax",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.w0, self.sigma = w0, sigma
        self.activation = activation
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor, weight_map: Tensor | None = None) -> Tensor:
        if weight_map is None:
            weight_map = self.weight_map_from_target(target)
        return cross_entropy(
            logits,
            target,
            activation=self.activation,
            pixel_weights=weight_map.to(logits),
            ignore_index=self.ignore_index,
        )

    def weight_map_from_target(self, target: Tensor) -> Tensor:
        """``(B, 1, *spatial)`` weight maps; objects = connected components of foreground
        (label > 0, or any channel > 0.5 but the first for a one-hot target)."""
        if target.shape[1] == 1:
            labels = target[:, 0].detach().cpu().numpy()
            if self.ignore_index is not None:
                labels = np.where(labels == self.ignore_index, 0, labels)
            foreground = labels > 0
        else:
            foreground = (target[:, 1:] > 0.5).any(dim=1).detach().cpu().numpy()
        maps = [
            unet_weight_map(ndimage.label(fg)[0], w0=self.w0, sigma=self.sigma) for fg in foreground
        ]
        return torch.from_numpy(np.stack(maps)[:, None]).float().to(target.device)
