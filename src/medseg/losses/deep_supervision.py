"""Deep supervision: one loss per decoder resolution, weighted (nnU-Net's scheme).

A network with deep supervision returns, in training mode, logits at decreasing resolution
(highest first). Each output ``i`` is compared with the target down-sampled by nearest
neighbour to its size, and the losses are combined with weights ``1, 1/2, 1/4, ...``; the
lowest-resolution output gets weight 0 (as nnU-Net: it is too coarse to help), and the weights
are normalised to sum to 1:

    ``L = sum_i w_i L(out_i, down_i(target))``,  ``w = normalise([1, 1/2, ..., 1/2^(n-2), 0])``.

A single output (one output, or eval mode) gives ``L(out, target)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def deep_supervision_weights(num_outputs: int) -> list[float]:
    """nnU-Net's weights: halving per level, last one 0, normalised (one output: ``[1.0]``).

    Example:
        >>> deep_supervision_weights(4)
        [0.5714285714285714, 0.2857142857142857, 0.14285714285714285, 0.0]
    """
    if num_outputs == 1:
        return [1.0]
    raw = [0.5**i for i in range(num_outputs - 1)] + [0.0]
    return [w / sum(raw) for w in raw]


def downsample_target(target: Tensor, size: Sequence[int]) -> Tensor:
    """Nearest-neighbour resize of a label ``(B, 1, *spatial)`` or one-hot target to ``size``,
    keeping its dtype (labels stay labels)."""
    if tuple(target.shape[2:]) == tuple(size):
        return target
    resized = F.interpolate(target.float(), size=tuple(size), mode="nearest")
    return resized.to(target.dtype)


class DeepSupervisionLoss(nn.Module):
    """Wrap a loss for a list of outputs; ``loss(outputs, target)``.

    Args:
        loss: any ``loss(logits, target)``.
        weights: one weight per output (normalised to sum 1); None: nnU-Net's
            :func:`deep_supervision_weights`. U-Net++ (all outputs at full resolution, the
            paper averages them): pass equal weights.

    Example:
        >>> import torch
        >>> from medseg.losses.dice import DiceLoss
        >>> ds = DeepSupervisionLoss(DiceLoss())
        >>> outs = [torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)]
        >>> ds(outs, torch.ones(1, 1, 8, 8, dtype=torch.long)).shape
        torch.Size([])
    """

    def __init__(self, loss: nn.Module, *, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.weights = None if weights is None else [float(w) for w in weights]

    def forward(self, outputs: Tensor | Sequence[Tensor], target: Tensor) -> Tensor:
        if isinstance(outputs, Tensor):
            return self.loss(outputs, target)
        weights = deep_supervision_weights(len(outputs)) if self.weights is None else self.weights
        if len(weights) != len(outputs):
            raise ValueError(f"{len(weights)} deep-supervision weights for {len(outputs)} outputs")
        total = sum(weights)
        terms = [
            w / total * self.loss(out, downsample_target(target, out.shape[2:]))
            for w, out in zip(weights, outputs, strict=True)
            if w != 0
        ]
        return sum(terms[1:], terms[0])
