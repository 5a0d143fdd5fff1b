"""Check and batch a user's prompts before they reach the prompt encoder.

Coordinates are voxel indices in array axis order; voxel ``i`` covers ``[i - 0.5, i + 0.5]``
along its axis, so a coordinate is inside an image of size ``n`` when it lies in
``[-0.5, n - 0.5]``. Every problem a user can cause is a :class:`~medseg.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from medseg.errors import ConfigError

VALID_LABELS = (-1, 0, 1)


@dataclass(frozen=True)
class Prompts:
    """Batched, checked prompts: ``points`` ``(coords (B, N, D), labels (B, N))`` or None,
    ``box`` ``(B, 2 D)`` or None, ``mask_logits`` ``(B, 1, *mask_size)`` or None."""

    points: tuple[Tensor, Tensor] | None
    box: Tensor | None
    mask_logits: Tensor | None
    batch: int


def _outside(coords: Tensor, image_size: Sequence[int]) -> Tensor:
    """``(*, D)`` -> ``(*,)``: True where a coordinate lies outside the image."""
    extent = torch.as_tensor(tuple(image_size), dtype=coords.dtype, device=coords.device)
    return ((coords < -0.5) | (coords > extent - 0.5)).any(-1)


def _check_finite(values: Tensor, name: str) -> None:
    if not torch.isfinite(values).all():
        raise ConfigError(f"{name} contain NaN or infinite values; give finite voxel indices")


def _points(
    points: Tensor, labels: Tensor | None, image_size: Sequence[int]
) -> tuple[Tensor, Tensor]:
    dims = len(image_size)
    coords = torch.as_tensor(points, dtype=torch.float32)
    coords = coords[None] if coords.ndim == 2 else coords
    if coords.ndim != 3 or coords.shape[-1] != dims:
        raise ConfigError(
            f"points must be (N, {dims}) or (B, N, {dims}) voxel indices in array order, "
            f"got shape {tuple(points.shape)}"
        )
    if labels is None:  # no labels: every point is a positive click
        labels = torch.ones(coords.shape[:2], dtype=torch.long)
    labels = torch.as_tensor(labels).to(torch.long)
    labels = labels[None] if labels.ndim == 1 else labels
    if labels.shape != coords.shape[:2]:
        raise ConfigError(
            f"point_labels shape {tuple(labels.shape)} does not match points "
            f"{tuple(coords.shape)}: one label per point"
        )
    bad = sorted({int(v) for v in labels.unique()} - set(VALID_LABELS))
    if bad:
        raise ConfigError(
            f"point labels must be 1 (positive), 0 (negative) or -1 (padding), got {bad}"
        )
    _check_finite(coords, "points")
    outside = _outside(coords, image_size) & (labels != -1)  # padding points may be anywhere
    if outside.any():
        first = coords[outside][0].tolist()
        raise ConfigError(
            f"point {first} lies outside the image of size {tuple(image_size)}: coordinates "
            f"are voxel indices in array order, from -0.5 to size - 0.5 along each axis"
        )
    return coords, labels


def _box(box: Tensor, image_size: Sequence[int]) -> Tensor:
    dims = len(image_size)
    box = torch.as_tensor(box, dtype=torch.float32)
    box = box[None] if box.ndim == 1 else box
    if box.ndim != 2 or box.shape[-1] != 2 * dims:
        raise ConfigError(
            f"box must be ({2 * dims},) or (B, {2 * dims}) as (lo_0..lo_{dims - 1}, "
            f"hi_0..hi_{dims - 1}) in array order, got shape {tuple(box.shape)}"
        )
    _check_finite(box, "boxes")
    low, high = box[:, :dims], box[:, dims:]
    if (high < low).any():
        raise ConfigError(
            f"box {box[(high < low).any(1)][0].tolist()} is inverted: every high corner "
            f"coordinate (last {dims} values) must be >= the low one (first {dims})"
        )
    if _outside(torch.stack([low, high], 1), image_size).any():
        raise ConfigError(
            f"a box lies (partly) outside the image of size {tuple(image_size)}: corners are "
            f"voxel indices in array order, from -0.5 to size - 0.5 along each axis"
        )
    return box


def _mask(mask_logits: Tensor, mask_size: Sequence[int]) -> Tensor:
    mask = torch.as_tensor(mask_logits, dtype=torch.float32)
    mask = mask[None] if mask.ndim == len(mask_size) + 1 else mask
    if mask.ndim != len(mask_size) + 2 or tuple(mask.shape[1:]) != (1, *mask_size):
        raise ConfigError(
            f"mask_logits must be (B, 1, {', '.join(map(str, mask_size))}) low-resolution "
            f"logits (4x the embedding grid), got shape {tuple(mask_logits.shape)}"
        )
    return mask


def _expand(value: Tensor | None, batch: int) -> Tensor | None:
    return None if value is None else value.expand(batch, *value.shape[1:])


def check_prompts(
    *,
    points: Tensor | None,
    point_labels: Tensor | None,
    box: Tensor | None,
    mask_logits: Tensor | None,
    image_size: Sequence[int],
    mask_size: Sequence[int],
    embedding_batch: int,
) -> Prompts:
    """Validate prompts and give them one batch size (unbatched prompts get batch 1; a batch
    of 1 is expanded to the others' batch).

    Args:
        points: ``(N, D)`` or ``(B, N, D)`` voxel indices in array order, or None.
        point_labels: ``(N,)`` or ``(B, N)``: 1 positive, 0 negative, -1 padding; None means
            all positive.
        box: ``(2 D,)`` or ``(B, 2 D)`` as ``(lo..., hi...)``, or None.
        mask_logits: ``(1, *mask_size)`` or ``(B, 1, *mask_size)`` logits, or None.
        image_size: the image size the coordinates refer to.
        mask_size: the size of a mask prompt (4x the embedding grid).
        embedding_batch: batch of the image embedding (1 is shared by every prompt set).

    Returns:
        The checked :class:`Prompts`, on the CPU in float32 / int64.

    Raises:
        ConfigError: no prompt at all, wrong shapes, labels other than 1/0/-1, an inverted
            box, points or boxes outside the image, inconsistent batch sizes.

    Example:
        >>> p = check_prompts(points=torch.tensor([[3.0, 4.0]]), point_labels=None, box=None,
        ...                   mask_logits=None, image_size=(8, 8), mask_size=(8, 8),
        ...                   embedding_batch=2)
        >>> p.points[0].shape, p.points[1].tolist(), p.batch
        (torch.Size([2, 1, 2]), [[1], [1]], 2)
    """
    if points is None and box is None and mask_logits is None:
        raise ConfigError("no prompt given: pass points (with point_labels), a box or mask_logits")
    if points is None and point_labels is not None:
        raise ConfigError("point_labels given without points")
    coords_labels = None if points is None else _points(points, point_labels, image_size)
    box = None if box is None else _box(box, image_size)
    mask = None if mask_logits is None else _mask(mask_logits, mask_size)
    given = [t for t in (*(coords_labels or ()), box, mask) if t is not None]
    batches = {int(t.shape[0]) for t in given} | {embedding_batch}
    batch = max(batches)
    if batches - {1, batch}:
        raise ConfigError(
            f"prompt and embedding batch sizes {sorted(batches)} disagree: give one prompt set "
            "per image, or a batch of 1 to share"
        )
    if coords_labels is not None:
        coords_labels = (_expand(coords_labels[0], batch), _expand(coords_labels[1], batch))
    return Prompts(coords_labels, _expand(box, batch), _expand(mask, batch), batch)
