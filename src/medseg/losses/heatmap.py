"""CenterNet's losses and heatmap targets (Zhou et al. 2019, "Objects as Points"), N-D.

* :func:`heatmap_focal_loss`: the penalty-reduced pixel-wise focal loss of CornerNet/CenterNet
  on sigmoid logits ``x`` with a Gaussian target ``y`` (``p = sigmoid(x)``)::

      L = -1/N * sum( (1 - p)^alpha log(p)                 where y == 1
                      (1 - y)^beta p^alpha log(1 - p)       elsewhere )

  ``alpha = 2``, ``beta = 4``, ``N`` = number of objects (voxels with ``y == 1``; at least 1).
* :func:`size_l1_loss`: L1 of the size regression at the objects' centre voxels, averaged
  over objects.
* :func:`draw_gaussian`: an unnormalised Gaussian (peak exactly 1) drawn into a heatmap by
  element-wise maximum; :func:`gaussian_sigma` sets its per-axis sigma from the box extent
  (TTFNet's elliptical Gaussian, Liu et al. 2019: ``sigma_d = 0.54 * extent_d / 6``, which
  reduces to CenterNet's radius rule for square boxes), so the target works in any number of
  dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: TTFNet's ``alpha``: the Gaussian's sigma is this share of the extent divided by 6.
GAUSSIAN_ALPHA = 0.54


def heatmap_focal_loss(
    logits: Tensor, target: Tensor, *, alpha: float = 2.0, beta: float = 4.0
) -> Tensor:
    """CenterNet's penalty-reduced focal loss (sum over voxels / number of objects).

    Args:
        logits: ``(B, K, *spatial)`` heatmap logits.
        target: ``(B, K, *spatial)`` Gaussian heatmaps in [0, 1], 1 exactly at centres.

    Example:
        >>> logits = torch.zeros(1, 1, 2)  # p = 0.5 everywhere
        >>> target = torch.tensor([[[1.0, 0.0]]])
        >>> round(float(heatmap_focal_loss(logits, target)), 4)  # 2 * 0.25 * log 2
        0.3466
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    logits, target = logits.float(), target.float()
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    positive = target >= 1.0
    pos = (1 - p).pow(alpha) * log_p
    neg = (1 - target).pow(beta) * p.pow(alpha) * log_not_p
    total = torch.where(positive, pos, neg).sum()
    return -total / positive.sum().clamp_min(1)


def size_l1_loss(size: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean L1 of the size regression over the objects' centre voxels.

    Args:
        size: ``(B, S, *spatial)`` regressed sizes.
        target: ``(B, S, *spatial)`` target sizes (read only where ``mask``).
        mask: ``(B, 1, *spatial)`` bool, the centre voxels.
    """
    mask = mask.to(size.dtype)
    count = mask.sum().clamp_min(1)
    return ((size.float() - target.float()).abs() * mask).sum() / count


def gaussian_sigma(extent: Sequence[float], *, alpha: float = GAUSSIAN_ALPHA) -> tuple[float, ...]:
    """Per-axis sigma of a box's Gaussian: ``alpha * extent_d / 6`` and at least 1/3 voxel
    (a radius of 1).

    Example:
        >>> [round(s, 3) for s in gaussian_sigma((60, 12))]
        [5.4, 1.08]
    """
    return tuple(max(alpha * float(e) / 6.0, 1.0 / 3.0) for e in extent)


def draw_gaussian(heatmap: np.ndarray, centre: Sequence[int], sigma: Sequence[float]) -> None:
    """Draw ``exp(-sum((x_d - c_d)^2 / (2 sigma_d^2)))`` into ``heatmap`` in place by maximum,
    within ``3 sigma`` of the (integer) centre, which gets exactly 1.

    Args:
        heatmap: ``(*spatial)`` float array.
        centre: the centre voxel index (inside ``heatmap``).
        sigma: per-axis sigma (voxels).

    Example:
        >>> h = np.zeros((1, 5))
        >>> draw_gaussian(h, (0, 2), (1.0, 1.0))
        >>> np.round(h, 3).tolist()
        [[0.135, 0.607, 1.0, 0.607, 0.135]]
    """
    if len(centre) != heatmap.ndim or len(sigma) != heatmap.ndim:
        raise ValueError(f"centre {tuple(centre)} / sigma do not match a {heatmap.ndim}-D map")
    slices, profiles = [], []
    for axis, (c, s) in enumerate(zip(centre, sigma, strict=True)):
        radius = int(np.ceil(3 * s))
        lo, hi = max(int(c) - radius, 0), min(int(c) + radius + 1, heatmap.shape[axis])
        x = np.arange(lo, hi) - int(c)
        slices.append(slice(lo, hi))
        profiles.append(np.exp(-(x**2) / (2 * s * s)))
    gauss = profiles[0]
    for profile in profiles[1:]:
        gauss = np.multiply.outer(gauss, profile)
    region = heatmap[tuple(slices)]
    np.maximum(region, gauss, out=region)
