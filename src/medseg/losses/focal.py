"""Focal loss (Lin et al. 2017): cross-entropy that down-weights easy voxels.

    ``FL = -alpha_t (1 - p_t)^gamma log p_t``

``p_t`` is the probability of the true class; ``(1 - p_t)^gamma`` goes to 0 for
well-classified voxels, so training focuses on hard ones. ``gamma = 0`` and ``alpha = None``
give the cross-entropy exactly. Softmax: ``alpha_t = alpha_c`` of the target class; sigmoid:
per channel, ``alpha`` for positives and ``1 - alpha`` for negatives. Mean over valid voxels
(and channels, with sigmoid), like :func:`medseg.losses.cross_entropy`; MONAI's
``FocalLoss(use_softmax=True)`` also averages over the class axis, i.e. is ``K`` times smaller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.losses.inputs import Activation, check_shapes, one_hot_target


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    activation: Activation = "softmax",
    ignore_index: int | None = None,
) -> Tensor:
    """Mean focal loss on logits.

    Args:
        logits: ``(B, K, *spatial)``.
        target: ``(B, 1, *spatial)`` labels or ``(B, K, *spatial)`` one-hot.
        gamma: focusing parameter ``>= 0``.
        alpha: None (no class weighting); a float: ``1 - alpha`` for the background (channel
            0, softmax) or negatives (sigmoid) and ``alpha`` for the others; or one weight per
            class.
        activation: ``softmax`` or ``sigmoid``.
        ignore_index: label whose voxels are left out.

    Returns:
        A scalar.

    Example:
        >>> logits = torch.tensor([[[0.0], [0.0]]])   # p_t = 0.5
        >>> round(focal_loss(logits, torch.tensor([[[1]]]), gamma=2.0).item(), 4)  # 0.25 ln 2
        0.1733
    """
    num_classes = logits.shape[1]
    check_shapes(logits, target)
    onehot, mask = one_hot_target(target, num_classes, ignore_index=ignore_index)
    onehot = onehot.to(logits.dtype)
    weights = _alpha_weights(alpha, num_classes, activation, logits)
    if activation == "softmax":
        if num_classes < 2:
            raise ValueError(
                "softmax focal loss needs >= 2 channels; use activation='sigmoid' for one"
            )
        log_p = logits.log_softmax(dim=1)
        per_class = -onehot * (1.0 - log_p.exp()).pow(gamma) * log_p
        if weights is not None:
            per_class = per_class * weights
        loss = per_class.sum(dim=1, keepdim=True)
    elif activation == "sigmoid":
        log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
        p = log_p.exp()
        positive = -onehot * (1.0 - p).pow(gamma) * log_p
        negative = -(1.0 - onehot) * p.pow(gamma) * log_not_p
        if weights is not None:
            positive, negative = positive * weights, negative * (1.0 - weights)
        loss = positive + negative
    else:
        raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
    if mask is None:
        return loss.mean()
    mask = mask.expand_as(loss)
    return (loss * mask).sum() / mask.sum().clamp_min(1e-8)


def _alpha_weights(
    alpha: float | Sequence[float] | None, num_classes: int, activation: Activation, like: Tensor
) -> Tensor | None:
    """``(1, K, 1, ...)`` per-class alpha, or None."""
    if alpha is None:
        return None
    if isinstance(alpha, (int, float)):
        values = [float(alpha)] * num_classes
        if activation == "softmax":
            values[0] = 1.0 - float(alpha)
    else:
        values = [float(a) for a in alpha]
        if len(values) != num_classes:
            raise ValueError(f"alpha has {len(values)} entries for {num_classes} classes")
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(
        1, -1, *([1] * (like.ndim - 2))
    )


class FocalLoss(nn.Module):
    """Focal loss module, ``loss(logits, target)``; see :func:`focal_loss`.

    Args:
        gamma: focusing parameter (paper: 2).
        alpha: None, a float or per-class weights.
        activation: ``softmax`` or ``sigmoid``.
        ignore_index: label whose voxels are left out.
    """

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        activation: Activation = "softmax",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma, self.alpha = gamma, alpha
        self.activation = activation
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return focal_loss(
            logits,
            target,
            gamma=self.gamma,
            alpha=self.alpha,
            activation=self.activation,
            ignore_index=self.ignore_index,
        )
