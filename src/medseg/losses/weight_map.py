"""The U-Net border weight map (Ronneberger et al. 2015, eq. 2).

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))``

``d1``/``d2``: distances to the nearest and second-nearest object; ``w_c`` balances the
foreground/background frequencies. The border term is large only in thin background gaps
between two objects, which forces the network to learn the separating borders of touching
instances (cells, nuclei). Computed with NumPy/SciPy on the CPU, once per case.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def unet_weight_map(
    mask: np.ndarray,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    spacing: Sequence[float] | None = None,
    balance_classes: bool = True,
) -> np.ndarray:
    """Per-voxel loss weights from an instance label map.

    Args:
        mask: ``(*spatial)`` integer object labels, 0 = background, one id per object (use
            ``scipy.ndimage.label`` on a binary mask to get them).
        w0: height of the border term (paper: 10).
        sigma: width of the border term, in voxels, or mm when ``spacing`` is given
            (paper: about 5 pixels).
        spacing: voxel size per axis for anisotropic distances; None = 1.
        balance_classes: ``w_c = N / (2 N_c)`` for foreground and background (each class
            gets half the total weight), else ``w_c = 1``.

    Returns:
        ``(*spatial)`` float64 weights, ``>= w_c``. The border term is only added on
        background voxels (inside an object ``d1 = 0`` and it would only blur the object), and
        is zero with fewer than two objects (``d2`` undefined).

    Example:
        >>> m = np.zeros((1, 7), int); m[0, :3] = 1; m[0, 4:] = 2   # gap at column 3
        >>> w = unet_weight_map(m, balance_classes=False)
        >>> int(np.argmax(w[0])), round(float(w[0, 3]), 3)   # d1 = d2 = 1: 1 + 10 exp(-4/50)
        (3, 10.231)
    """
    labels = np.asarray(mask)
    foreground = labels > 0
    weights = np.ones(labels.shape, dtype=np.float64)
    n_fg = int(foreground.sum())
    if balance_classes and 0 < n_fg < labels.size:
        weights[foreground] = labels.size / (2.0 * n_fg)
        weights[~foreground] = labels.size / (2.0 * (labels.size - n_fg))
    ids = np.unique(labels[foreground])
    if len(ids) < 2:
        return weights
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    for obj in ids:  # running smallest and second-smallest distance, O(N) memory
        d = ndimage.distance_transform_edt(labels != obj, sampling=spacing)
        d2 = np.minimum(d2, np.maximum(d1, d))
        d1 = np.minimum(d1, d)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    return weights + np.where(foreground, 0.0, border)
