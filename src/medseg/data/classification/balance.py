"""Class balance on integer labels: loss weights, sampling weights and stratified folds.

Each function takes ``(N,)`` class indices and returns a NumPy array (the data layer does not
need torch for them); training turns them into tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.errors import ConfigError


def _class_labels(labels: np.ndarray | Sequence[int], name: str = "labels") -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iub"):
        raise ConfigError(
            f"{name} must be a 1-D array of integer class indices, "
            f"got shape {array.shape} {array.dtype}"
        )
    if array.size and array.min() < 0:
        raise ConfigError(f"{name} must be >= 0, got {array.min()}")
    return array.astype(np.int64, copy=False)


def class_weights(labels: np.ndarray | Sequence[int], num_classes: int) -> np.ndarray:
    """Inverse-frequency class weights, normalised to mean 1 over the classes present.

    ``w_k = 1 / count_k`` scaled so the present classes' weights average 1 (for a loss such as
    ``CrossEntropyLoss(weight=...)``). A class with no samples gets weight 0.

    Args:
        labels: ``(N,)`` class indices in ``[0, num_classes)``.
        num_classes: number of classes.

    Returns:
        ``(num_classes,)`` float64.

    Raises:
        ConfigError: ``labels`` are not ``(N,)`` integers in ``[0, num_classes)``, or
            ``num_classes < 1``.

    Example:
        >>> class_weights([0, 0, 0, 1], 2).tolist()
        [0.5, 1.5]
    """
    labels = _class_labels(labels)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if labels.size and labels.max() >= num_classes:
        raise ConfigError(f"label {labels.max()} is out of range for num_classes={num_classes}")
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes, dtype=np.float64)
    present = counts > 0
    if not present.any():
        return weights
    weights[present] = 1.0 / counts[present]
    return weights * (present.sum() / weights.sum())


def balanced_sample_weights(labels: np.ndarray | Sequence[int]) -> np.ndarray:
    """Per-sample weights that make every class equally likely to be drawn.

    Sample ``i`` gets ``1 / count(labels[i])``, scaled to mean 1; pass them to
    ``torch.utils.data.WeightedRandomSampler(torch.as_tensor(w), num_samples, replacement=True)``.

    Args:
        labels: ``(N,)`` class indices.

    Returns:
        ``(N,)`` float64; empty for empty ``labels``.

    Raises:
        ConfigError: ``labels`` are not ``(N,)`` integers >= 0.

    Example:
        >>> balanced_sample_weights([0, 0, 0, 1]).tolist()
        [0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 2.0]
    """
    labels = _class_labels(labels)
    if not labels.size:
        return np.zeros(0, dtype=np.float64)
    counts = np.bincount(labels).astype(np.float64)
    weights = 1.0 / counts[labels]
    return weights * (labels.size / weights.sum())


def stratified_folds(
    labels: np.ndarray | Sequence[int], n_folds: int = 5, seed: int = 0
) -> np.ndarray:
    """A fold index per sample with every class spread evenly over the folds.

    Each class's samples are shuffled (``numpy.random.default_rng(seed)``) and dealt out in
    turn, continuing where the previous class stopped, so every fold holds within one sample
    of ``count_k / n_folds`` of each class ``k`` and the fold sizes differ by at most one.
    Deterministic for a given ``(labels, n_folds, seed)``. For regression, stratify on binned
    targets (e.g. ``np.digitize(y, np.quantile(y, [0.25, 0.5, 0.75]))``).

    Args:
        labels: ``(N,)`` class indices.
        n_folds: number of folds, ``2 <= n_folds <= N``.
        seed: shuffling seed.

    Returns:
        ``(N,)`` int64 fold indices in ``[0, n_folds)``.

    Raises:
        ConfigError: ``labels`` are not ``(N,)`` integers >= 0, or ``n_folds`` is not an
            integer in ``[2, N]``.

    Example:
        >>> stratified_folds([0, 0, 0, 1, 1, 1], n_folds=3, seed=0).tolist()
        [1, 2, 0, 2, 1, 0]
    """
    labels = _class_labels(labels)
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ConfigError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if n_folds > labels.size:
        raise ConfigError(f"n_folds={n_folds} is more than the {labels.size} samples")
    rng = np.random.default_rng(seed)
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == k)) for k in np.unique(labels)]
    )
    folds = np.empty(labels.size, dtype=np.int64)
    folds[order] = np.arange(order.size) % n_folds
    return folds
