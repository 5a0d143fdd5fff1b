"""Segment everything: prompt a promptable model with a regular grid of points (SAM's
automatic mask generator, without crops).

Every grid point is a positive point prompt; all proposals (multimask output) are kept when
the model's predicted IoU exceeds ``pred_iou_thresh`` and the *stability score* (the IoU of
the mask thresholded at ``+offset`` and at ``-offset`` on the logits) reaches
``stability_score_thresh``. Duplicates are removed by greedy box non-maximum suppression
(:func:`box_nms`), and what remains is sorted by predicted IoU.

Works in 2D and 3D alike: the grid has ``points_per_side`` points **per axis** (so
``points_per_side ** 3`` prompts in 3D; pass a tuple such as ``(8, 32, 32)`` to sample fewer
along one axis). Coordinates are voxel indices in array axis order, as everywhere in
:mod:`medseg.prompt`; boxes are ``(lo_0, ..., lo_{D-1}, hi_0, ..., hi_{D-1})`` with ``lo``
and ``hi`` the first and the last voxel inside (inclusive, as SAM's boxes of masks), so a box
of a mask can be fed back as a box prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from medseg.errors import ConfigError


class Predictor(Protocol):
    """What the tools of :mod:`medseg.prompt` need of a model (``PromptableModel`` has it)."""

    spatial_dims: int
    image_size: tuple[int, ...]

    def embed(self, image: Tensor) -> Tensor: ...

    def predict(self, embedding: Tensor, **prompts: Any) -> Any: ...

    def start(self, embedding: Tensor) -> Any: ...

    def refine(self, state: Any, click: Any) -> Any: ...


@dataclass(frozen=True)
class InstanceMask:
    """One object found by :func:`segment_everything`.

    Attributes:
        mask: Boolean array ``(*spatial)``.
        score: The model's predicted IoU of the mask.
        stability: IoU of the mask thresholded at ``+offset`` vs ``-offset``.
        box: ``(lo..., hi...)`` inclusive voxel indices in array order.
        point: The grid point (array order) that prompted the mask.
    """

    mask: np.ndarray
    score: float
    stability: float
    box: tuple[int, ...]
    point: tuple[float, ...]

    @property
    def area(self) -> int:
        """Number of voxels in the mask."""
        return int(self.mask.sum())


def as_model_input(model: Predictor, image: Tensor | np.ndarray) -> Tensor:
    """The image as a batch of one, ``(1, C, *image_size)``, checked against the model.

    Args:
        model: The predictor (its ``spatial_dims`` and ``image_size`` are checked).
        image: ``(C, *spatial)`` or ``(1, C, *spatial)``, already preprocessed.
    """
    tensor = torch.as_tensor(image)
    if tensor.ndim == model.spatial_dims + 1:
        tensor = tensor[None]
    size = tuple(int(s) for s in model.image_size)
    if tensor.ndim != model.spatial_dims + 2 or tensor.shape[0] != 1:
        raise ConfigError(
            f"image has shape {tuple(tensor.shape)}; a {model.spatial_dims}D model needs "
            f"(C, *{size}) or (1, C, *{size})"
        )
    if tuple(tensor.shape[2:]) != size:
        raise ConfigError(
            f"image size {tuple(tensor.shape[2:])} does not match the model's input size "
            f"{size}; resize the image first"
        )
    return tensor.float()


def point_grid(shape: Sequence[int], points_per_side: int | Sequence[int]) -> np.ndarray:
    """A regular grid of points at the centres of equal cells, in voxel indices.

    Args:
        shape: Spatial shape of the image, ``(*spatial)``.
        points_per_side: Points per axis, one number or one per axis.

    Returns:
        ``(P, D)`` float coordinates in array order (the last axis varies fastest).

    Example:
        >>> point_grid((4, 8), 2).tolist()
        [[0.5, 1.5], [0.5, 5.5], [2.5, 1.5], [2.5, 5.5]]
    """
    counts = [points_per_side] * len(shape) if isinstance(points_per_side, int) else points_per_side
    if len(counts) != len(shape) or min(counts) < 1:
        raise ConfigError(
            f"points_per_side={points_per_side!r}: give one positive number, or one per axis "
            f"of the {len(shape)}D image"
        )
    # cell centres in index space: cell i covers [i*s/n, (i+1)*s/n), voxel k is centred at k
    axes = [(np.arange(n) + 0.5) * size / n - 0.5 for n, size in zip(counts, shape, strict=True)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=-1)


def stability_score(logits: Tensor, offset: float = 1.0, threshold: float = 0.0) -> Tensor:
    """IoU of the masks at ``threshold + offset`` and ``threshold - offset`` (SAM's score).

    Args:
        logits: ``(K, *spatial)`` mask logits.
        offset: Half the width of the threshold band.
        threshold: The mask threshold on the logits.

    Returns:
        ``(K,)`` scores in [0, 1]; 0 for a mask that is empty at the low threshold.

    Example:
        >>> stability_score(torch.tensor([[3.0, 2.0, 0.5, -3.0, -0.5, -3.0]])).tolist()
        [0.5]
    """
    # the high mask lies inside the low one, so intersection / union = count ratio
    high = (logits > threshold + offset).flatten(1).sum(1)
    low = (logits > threshold - offset).flatten(1).sum(1)
    return high.float() / low.clamp(min=1).float()


def mask_boxes(masks: Tensor) -> Tensor:
    """Inclusive bounding boxes of boolean masks, ``(K, *spatial) -> (K, 2D)`` long.

    An empty mask gets the box of zeros. Example:
        >>> mask_boxes(torch.tensor([[[0, 0, 0], [0, 1, 1]]], dtype=torch.bool)).tolist()
        [[1, 1, 1, 2]]
    """
    spatial_dims = masks.ndim - 1
    lows, highs = [], []
    for axis in range(spatial_dims):
        other = [1 + a for a in range(spatial_dims) if a != axis]
        present = masks.amax(dim=other) if other else masks  # (K, size_axis)
        index = torch.arange(present.shape[1], device=masks.device)
        highs.append(torch.where(present, index, -1).amax(1).clamp(min=0))
        lows.append(torch.where(present, index, present.shape[1]).amin(1))
    boxes = torch.stack(lows + highs, dim=1)
    empty = ~masks.flatten(1).any(1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pairwise IoU of inclusive voxel boxes ``(Ka, 2D)``, ``(Kb, 2D)`` -> ``(Ka, Kb)``.

    A box ``(lo, hi)`` holds ``prod(hi - lo + 1)`` voxels. Example:
        >>> box_iou(torch.tensor([[0, 0, 1, 1]]), torch.tensor([[0, 0, 1, 3]])).tolist()
        [[0.5]]
    """
    dims = boxes_a.shape[1] // 2
    a, b = boxes_a.double(), boxes_b.double()
    lo = torch.maximum(a[:, None, :dims], b[None, :, :dims])
    hi = torch.minimum(a[:, None, dims:], b[None, :, dims:])
    inter = (hi - lo + 1).clamp(min=0).prod(-1)
    vol_a = (a[:, dims:] - a[:, :dims] + 1).prod(-1)
    vol_b = (b[:, dims:] - b[:, :dims] + 1).prod(-1)
    return inter / (vol_a[:, None] + vol_b[None, :] - inter)


def box_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression on inclusive voxel boxes, any dimension.

    Args:
        boxes: ``(K, 2D)`` boxes ``(lo..., hi...)``.
        scores: ``(K,)`` scores; higher is kept first (ties keep the earlier box).
        iou_threshold: A box is dropped when its IoU with a kept box exceeds this.

    Returns:
        ``(K',)`` long indices of the kept boxes, by decreasing score.

    Example:
        >>> boxes = torch.tensor([[0, 0, 9, 9], [1, 1, 9, 9], [20, 20, 29, 29]])
        >>> box_nms(boxes, torch.tensor([0.8, 0.9, 0.5]), 0.7).tolist()
        [1, 2]
    """
    boxes, scores = boxes.cpu(), scores.cpu()
    order = torch.sort(scores, descending=True, stable=True).indices
    overlaps = box_iou(boxes[order], boxes[order])
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    kept = []
    for rank in range(len(order)):
        if suppressed[rank]:
            continue
        kept.append(rank)
        suppressed |= overlaps[rank] > iou_threshold
    return order[torch.tensor(kept, dtype=torch.long)]


@torch.no_grad()
def segment_everything(
    model: Predictor,
    image: Tensor | np.ndarray,
    *,
    points_per_side: int | Sequence[int] = 32,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.95,
    stability_offset: float = 1.0,
    box_nms_thresh: float = 0.7,
    min_area: int = 0,
    points_per_batch: int = 64,
) -> list[InstanceMask]:
    """Every object a promptable model finds from a grid of positive point prompts.

    Args:
        model: A predictor (``PromptableModel``), 2D or 3D.
        image: ``(C, *image_size)`` or ``(1, C, *image_size)``, preprocessed as for ``embed``.
        points_per_side: Grid points per axis (one number or one per axis; 3D uses it per
            axis, so ``n ** 3`` prompts).
        pred_iou_thresh: Keep proposals whose predicted IoU is above this.
        stability_score_thresh: Keep proposals whose stability score is at least this.
        stability_offset: Half-width of the logit band of the stability score.
        box_nms_thresh: Box IoU above which the lower-scoring of two masks is dropped.
        min_area: Drop masks with fewer voxels than this.
        points_per_batch: Prompts decoded together (memory vs speed).

    Returns:
        The masks, by decreasing predicted IoU.
    """
    if points_per_batch < 1:
        raise ConfigError(f"points_per_batch={points_per_batch}: it must be at least 1")
    batch = as_model_input(model, image)
    embedding = model.embed(batch)
    grid = point_grid(batch.shape[2:], points_per_side)
    kept: dict[str, list[Tensor]] = {"masks": [], "scores": [], "stability": [], "points": []}
    for start in range(0, len(grid), points_per_batch):
        points = torch.as_tensor(grid[start : start + points_per_batch], dtype=torch.float32)
        points = points.to(embedding.device)
        result = model.predict(
            embedding,
            points=points[:, None, :],
            point_labels=torch.ones(len(points), 1, dtype=torch.long, device=points.device),
            multimask=True,
        )
        logits = result.logits.flatten(0, 1).float()  # (B * M, *spatial)
        scores = result.iou.flatten().float()
        proposals = result.logits.shape[1]
        stability = stability_score(logits, stability_offset)
        masks = logits > 0
        keep = (scores > pred_iou_thresh) & (stability >= stability_score_thresh)
        keep &= masks.flatten(1).sum(1) >= max(min_area, 1)
        kept["masks"].append(masks[keep])
        kept["scores"].append(scores[keep])
        kept["stability"].append(stability[keep])
        kept["points"].append(points.repeat_interleave(proposals, dim=0)[keep])
    found = {name: torch.cat(parts) for name, parts in kept.items()}
    boxes = mask_boxes(found["masks"])
    order = box_nms(boxes, found["scores"], box_nms_thresh)
    return [
        InstanceMask(
            mask=found["masks"][i].cpu().numpy(),
            score=float(found["scores"][i]),
            stability=float(found["stability"][i]),
            box=tuple(int(v) for v in boxes[i]),
            point=tuple(float(v) for v in found["points"][i]),
        )
        for i in order.tolist()
    ]


def instance_label_map(masks: Sequence[InstanceMask], shape: Sequence[int]) -> np.ndarray:
    """Paint masks into one label image: mask ``i`` gets label ``i + 1``.

    Where masks overlap, the one with the higher score wins (the earlier one on a tie).

    Args:
        masks: Instance masks, each ``(*shape)``.
        shape: Spatial shape of the label image.

    Returns:
        ``(*shape)`` int32 labels, 0 where no mask is.

    Example:
        >>> a = InstanceMask(np.array([1, 1, 0], bool), 0.9, 1.0, (0, 1), (0.0,))
        >>> b = InstanceMask(np.array([0, 1, 1], bool), 0.95, 1.0, (1, 2), (2.0,))
        >>> instance_label_map([a, b], (3,)).tolist()
        [1, 2, 2]
    """
    labels = np.zeros(tuple(shape), dtype=np.int32)
    # paint from the lowest score up so the highest is painted last
    order = sorted(range(len(masks)), key=lambda i: (masks[i].score, -i))
    for i in order:
        if masks[i].mask.shape != labels.shape:
            raise ConfigError(
                f"mask {i} has shape {masks[i].mask.shape}, the label image {labels.shape}"
            )
        labels[masks[i].mask] = i + 1
    return labels
