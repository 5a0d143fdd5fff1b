"""Voxel-wise predictive uncertainty of an ensemble: the entropy of the mean softmax.

``predict_case`` averages the softmax probabilities over test-time mirrors, overlapping
sliding-window tiles and the models of the ensemble (folds, configurations). The entropy of
that mean, ``H(p) = -sum_k p_k log p_k``, is 0 where every member puts probability 1 on one
class and largest, ``log K``, where the mean is uniform over the ``K`` classes. It is
normalised here by ``log K`` so that it lies in [0, 1] whatever the number of classes (the
*predictive entropy* of Lakshminarayanan et al. 2017; it mixes what each member is unsure
about with where the members disagree).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.special import xlogy

from medseg.errors import ConfigError
from medseg.fileutil import csv_safe


def entropy_map(probs: np.ndarray) -> np.ndarray:
    """Per-voxel entropy of class probabilities, normalised by ``log K`` to [0, 1].

    Args:
        probs: ``(K, *spatial)`` probabilities summing to 1 over axis 0, ``K >= 2``.

    Returns:
        ``(*spatial)`` float32 in [0, 1]: exactly 0 where one class has probability 1
        (``0 log 0 = 0`` via ``scipy.special.xlogy``), 1 where all ``K`` classes have ``1/K``.

    Raises:
        ConfigError: fewer than 2 classes, or negative or non-finite probabilities.

    Example:
        >>> entropy_map(np.array([[1.0, 0.5], [0.0, 0.5]])).tolist()
        [0.0, 1.0]
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim < 2 or probs.shape[0] < 2:
        raise ConfigError(
            f"probabilities must be (K, *spatial) with K >= 2 classes, got shape {probs.shape}"
        )
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ConfigError("probabilities must be finite and non-negative")
    # 0 - sum rather than -sum: a certain voxel gives +0.0, not -0.0
    entropy = (0.0 - xlogy(probs, probs).sum(axis=0)) / np.log(probs.shape[0])
    # rounding can push a uniform voxel a few ulps past 1 or a certain one below 0
    return np.clip(entropy, 0.0, 1.0).astype(np.float32)


def foreground_band(foreground: np.ndarray) -> np.ndarray:
    """The predicted foreground plus its 1-voxel (face-connected) dilation: ``(*spatial)`` bool.

    The band includes the background voxels touching the foreground, where a boundary error
    (the usual failure) shows as uncertainty; averaging over the whole image would dilute it
    in the certain background.
    """
    foreground = np.asarray(foreground, dtype=bool)
    if not foreground.any():
        return foreground.copy()
    return ndimage.binary_dilation(foreground)


def case_uncertainty(probs: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    """Summary uncertainty of one predicted case: ``summarize_entropy(entropy_map(probs), label)``.

    Args:
        probs: ``(K, *spatial)`` mean probabilities of the ensemble.
        label: ``(*spatial)`` predicted label map (background 0).

    Returns:
        See ``summarize_entropy``.

    Example:
        >>> probs = np.array([[1.0, 0.5, 1.0], [0.0, 0.5, 0.0]])
        >>> case_uncertainty(probs, np.array([0, 1, 0]))["foreground_entropy"]
        0.3333333333333333
    """
    return summarize_entropy(entropy_map(probs), label)


def summarize_entropy(entropy: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    """Mean entropy over the image and over the predicted foreground band, and its volume.

    Args:
        entropy: ``(*spatial)`` normalised entropy (``entropy_map``, or a stored
            ``uncertainty/CASE`` image).
        label: ``(*spatial)`` predicted label map (background 0); the foreground is the
            union of the non-zero labels.

    Returns:
        ``{"mean_entropy", "foreground_entropy", "foreground_voxels"}``: the mean entropy over
        the image, over the foreground band (``foreground_band``: the foreground and its
        1-voxel dilation; NaN when nothing is predicted), and the number of predicted
        foreground voxels.

    Raises:
        ConfigError: ``label``'s shape differs from ``entropy``'s.
    """
    entropy = np.asarray(entropy)
    label = np.asarray(label)
    if label.shape != entropy.shape:
        raise ConfigError(f"label shape {label.shape} differs from the entropy's {entropy.shape}")
    foreground = label != 0
    band = foreground_band(foreground)
    return {
        "mean_entropy": float(entropy.mean(dtype=np.float64)),
        "foreground_entropy": (
            float(entropy[band].mean(dtype=np.float64)) if band.any() else float("nan")
        ),
        "foreground_voxels": int(foreground.sum()),
    }


UNCERTAINTY_COLUMNS = ("case", "mean_entropy", "foreground_entropy", "foreground_voxels")


def uncertainty_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows ``{"case", **summarize_entropy(...)}`` as CSV text with ``UNCERTAINTY_COLUMNS``.

    Case ids go through ``medseg.fileutil.csv_safe``; NaN is written ``nan``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(UNCERTAINTY_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                csv_safe(str(row["case"])),
                *(repr(float(row[name])) for name in UNCERTAINTY_COLUMNS[1:3]),
                str(int(row["foreground_voxels"])),
            ]
        )
    return buffer.getvalue()


__all__ = [
    "UNCERTAINTY_COLUMNS",
    "case_uncertainty",
    "entropy_map",
    "foreground_band",
    "summarize_entropy",
    "uncertainty_csv",
]
