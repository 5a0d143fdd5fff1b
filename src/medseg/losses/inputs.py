"""Turning ``(logits, target)`` into probabilities, a one-hot target and a valid-voxel mask.

Every loss takes logits ``(B, K, *spatial)`` and a target that is either

* integer labels ``(B, 1, *spatial)`` with values in ``[0, K)`` (or ``ignore_index``); float
  tensors holding integer values are accepted too; for a single-channel (``K = 1``,
  sigmoid) output the labels are 0/1; or
* one-hot / multi-label / soft targets ``(B, K, *spatial)`` as a float tensor (then
  ``ignore_index`` is not available: mask the loss yourself).

``activation="softmax"`` (mutually exclusive classes, ``K >= 2``) or ``"sigmoid"``
(independent binary channels, also ``K = 1``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

Activation = Literal["softmax", "sigmoid"]


class Prepared(NamedTuple):
    """Loss inputs on one grid.

    Attributes:
        probs: ``(B, K', *spatial)`` probabilities (``K' = K - 1`` without background).
        onehot: ``(B, K', *spatial)`` float target.
        mask: ``(B, 1, *spatial)`` float, 1 where the voxel counts, or None (all count).
    """

    probs: Tensor
    onehot: Tensor
    mask: Tensor | None


def probabilities(logits: Tensor, activation: Activation) -> Tensor:
    """Softmax over the channel axis, or a per-channel sigmoid.

    Raises:
        ValueError: for softmax on a single channel, or an unknown activation.
    """
    if activation == "softmax":
        if logits.shape[1] < 2:
            raise ValueError(
                "logits have 1 channel: use activation='sigmoid' for a single-channel binary "
                "output, or output 2 channels for softmax"
            )
        return logits.softmax(dim=1)
    if activation == "sigmoid":
        return logits.sigmoid()
    raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")


def one_hot_target(
    target: Tensor, num_classes: int, *, ignore_index: int | None = None
) -> tuple[Tensor, Tensor | None]:
    """A float ``(B, K, *spatial)`` target and the valid mask from labels or a one-hot target.

    Args:
        target: ``(B, 1, *spatial)`` labels or ``(B, K, *spatial)`` float one-hot.
        num_classes: ``K``, the logits' channels.
        ignore_index: label of voxels to leave out (labels only).

    Returns:
        ``(onehot, mask)``; ``mask`` is ``(B, 1, *spatial)`` float or None without
        ``ignore_index``; ignored voxels are all-zero in ``onehot``.

    Raises:
        ValueError: on a channel count that fits neither form, labels outside ``[0, K)``,
            or ``ignore_index`` with a one-hot target.

    Example:
        >>> onehot, mask = one_hot_target(torch.tensor([[[0, 2, 9]]]), 3, ignore_index=9)
        >>> onehot[0].tolist(), mask[0, 0].tolist()
        ([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [1.0, 1.0, 0.0])
    """
    is_labels = target.shape[1] == 1 and (
        num_classes > 1 or not target.is_floating_point() or ignore_index is not None
    )
    if not is_labels:
        if target.shape[1] != num_classes:
            raise ValueError(
                f"target has {target.shape[1]} channels; expected labels (1 channel) or one-hot "
                f"({num_classes})"
            )
        if ignore_index is not None:
            raise ValueError(
                "ignore_index needs an integer label target (B, 1, *spatial), not a one-hot one"
            )
        return target.float(), None
    labels = target[:, 0].long()
    mask = None
    if ignore_index is not None:
        valid = labels != ignore_index
        mask = valid.unsqueeze(1).float()
        labels = torch.where(valid, labels, torch.zeros_like(labels))
    top = 1 if num_classes == 1 else num_classes - 1
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > top):
        raise ValueError(
            f"target labels span [{int(labels.min())}, {int(labels.max())}] but the logits have "
            f"{num_classes} channel(s): labels must lie in [0, {top}]"
            + ("" if ignore_index is None else f" or be {ignore_index}")
        )
    if num_classes == 1:
        onehot = labels.unsqueeze(1).float()
    else:
        onehot = torch.zeros(labels.shape[0], num_classes, *labels.shape[1:], device=target.device)
        onehot.scatter_(1, labels.unsqueeze(1), 1.0)
    return (onehot if mask is None else onehot * mask), mask


def check_shapes(logits: Tensor, target: Tensor) -> None:
    """Raise ``ValueError`` unless the target has the logits' batch and spatial size."""
    if (
        target.ndim != logits.ndim
        or target.shape[0] != logits.shape[0]
        or target.shape[2:] != logits.shape[2:]
    ):
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}: "
            "expected (B, 1 or K, *spatial) with the same B and spatial size"
        )


def prepare(
    logits: Tensor,
    target: Tensor,
    *,
    activation: Activation = "softmax",
    ignore_index: int | None = None,
    include_background: bool = True,
) -> Prepared:
    """Probabilities, one-hot target and mask; ignored voxels are zeroed in both.

    ``include_background=False`` drops channel 0 with softmax. With sigmoid every channel is
    an independent foreground class (the background is implicit, ``1 - p``), so nothing is
    dropped.

    Raises:
        ValueError: when the target's batch or spatial shape differs from the logits'.
    """
    check_shapes(logits, target)
    probs = probabilities(logits, activation)
    onehot, mask = one_hot_target(target, logits.shape[1], ignore_index=ignore_index)
    onehot = onehot.to(probs.dtype)
    if mask is not None:
        probs = probs * mask
    if not include_background and activation == "softmax":
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    return Prepared(probs, onehot, mask)


def sum_voxels(x: Tensor, *, batch_dice: bool) -> Tensor:
    """Sum over the spatial axes -> ``(B, K)``, and over the batch too -> ``(K,)`` when
    ``batch_dice`` (one Dice per class for the whole batch, as nnU-Net's ``batch_dice``)."""
    dims = tuple(range(2, x.ndim))
    return x.sum(dim=(0, *dims) if batch_dice else dims)
