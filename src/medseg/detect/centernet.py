"""CenterNet targets and decoding (Zhou et al. 2019), N-D.

Boxes are ``(N, 2 * D)`` corner voxel indices ``(lo_0..lo_{D-1}, hi_0..hi_{D-1})`` with an
inclusive high corner (:mod:`medseg.metrics.boxes`), in input-image voxels. At output stride
``s`` (per axis) a box's centre ``c = (lo + hi) / 2`` falls in the cell ``p = floor(c / s)``,
whose own position in input voxels is ``a = p * s + (s - 1) / 2``; the targets are

* ``heatmap[k]``: a Gaussian (peak exactly 1 at ``p``, sigma from the extent / ``s``,
  :func:`medseg.losses.heatmap.gaussian_sigma`) per object of class ``k``, merged by maximum;
* ``size``: ``(a - lo, hi - a)`` at ``p`` (``2 * D`` channels), read only at centres
  (``mask``). Measured from the cell, the sizes absorb the sub-cell offset of the centre, so
  decoding is exact without CenterNet's separate offset head.

Decoding (:func:`decode_centernet`): sigmoid, peaks = voxels equal to their 3^D max-pool,
the ``top_k`` highest, those above ``score_threshold``, boxes ``round(a - lo_dist)`` ..
``round(a + hi_dist)`` clipped to the image, then class-wise NMS
(:func:`medseg.metrics.boxes.batched_nms`). A perfect target decodes to its boxes exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.losses.heatmap import draw_gaussian, gaussian_sigma
from medseg.metrics.boxes import batched_nms


@dataclass
class CenterNetTargets:
    """Targets of one image at the output resolution ``out``.

    Attributes:
        heatmap: ``(K, *out)`` float32 Gaussians.
        size: ``(2D, *out)`` float32 distances (input voxels) from the cell to the corners.
        mask: ``(1, *out)`` bool, the centre cells.
    """

    heatmap: np.ndarray
    size: np.ndarray
    mask: np.ndarray


def _cell_position(cell: np.ndarray, stride: np.ndarray) -> np.ndarray:
    """The position (input voxels) of output cells ``cell`` at ``stride``."""
    return cell * stride + (stride - 1) / 2.0


def centernet_targets(
    boxes: np.ndarray,
    classes: Sequence[int],
    image_shape: Sequence[int],
    num_classes: int,
    stride: Sequence[int] | int = 1,
) -> CenterNetTargets:
    """Heatmap, size and centre-mask targets of ``boxes`` (``(N, 2D)`` inclusive voxel
    corners) of classes ``classes`` in an image of ``image_shape`` (a multiple of ``stride``).

    Two boxes with the same centre cell share it; the later one's size is kept.

    Example:
        >>> t = centernet_targets(np.array([[2, 1, 4, 6]]), [0], (8, 8), 1)
        >>> np.argwhere(t.heatmap[0] == 1).tolist(), t.size[:, 3, 3].tolist()
        ([[3, 3]], [1.0, 2.0, 1.0, 3.0])
    """
    dims = len(image_shape)
    stride_a = np.broadcast_to(np.asarray(stride, dtype=np.int64), (dims,))
    out = tuple(int(n) // int(s) for n, s in zip(image_shape, stride_a, strict=True))
    heatmap = np.zeros((num_classes, *out), np.float32)
    size = np.zeros((2 * dims, *out), np.float32)
    mask = np.zeros((1, *out), bool)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 2 * dims)
    for box, cls in zip(boxes, classes, strict=True):
        lo, hi = box[:dims], box[dims:]
        cell = np.clip(np.floor((lo + hi) / 2.0 / stride_a), 0, np.asarray(out) - 1).astype(int)
        anchor = _cell_position(cell, stride_a)
        draw_gaussian(heatmap[int(cls)], cell, gaussian_sigma((hi - lo + 1) / stride_a))
        size[(slice(None), *cell)] = np.concatenate([anchor - lo, hi - anchor])
        mask[(0, *cell)] = True
    return CenterNetTargets(heatmap, size, mask)


@dataclass
class Detections:
    """Decoded objects of one image: ``boxes (N, 2D)`` int64 inclusive corners (input
    voxels), ``scores (N,)`` float32, ``classes (N,)`` int64; highest score first."""

    boxes: Tensor
    scores: Tensor
    classes: Tensor


def peaks(heatmap: Tensor) -> Tensor:
    """``heatmap`` ``(K, *out)`` with every voxel that is not the maximum of its 3^D
    neighbourhood set to 0."""
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[heatmap.ndim - 1]
    pooled = pool(heatmap[None], kernel_size=3, stride=1, padding=1)[0]
    return heatmap * (heatmap == pooled)


def decode_centernet(
    heatmap_logits: Tensor,
    size: Tensor,
    *,
    stride: Sequence[int] | int = 1,
    image_shape: Sequence[int] | None = None,
    top_k: int = 100,
    score_threshold: float = 0.1,
    nms_iou: float | None = 0.5,
) -> Detections:
    """Boxes, scores and classes from one image's head outputs.

    Args:
        heatmap_logits: ``(K, *out)`` heatmap logits.
        size: ``(2D, *out)`` corner distances (input voxels).
        stride: the heads' output stride.
        image_shape: the input size boxes are clipped to (default ``out * stride``).
        top_k: peaks kept before thresholding.
        score_threshold: lowest kept score.
        nms_iou: class-wise NMS IoU threshold (None: no NMS).
    """
    heat = torch.sigmoid(heatmap_logits.detach().float())
    size = size.detach().float()
    num_classes, out = heat.shape[0], heat.shape[1:]
    dims = len(out)
    stride_t = torch.as_tensor(np.broadcast_to(np.asarray(stride), (dims,)).copy()).float()
    shape = torch.as_tensor(
        tuple(image_shape) if image_shape is not None else tuple(int(o) for o in out)
    )
    if image_shape is None:
        shape = (shape * stride_t).long()
    flat = peaks(heat).flatten()
    scores, index = flat.topk(min(top_k, flat.numel()))
    keep = scores >= score_threshold
    scores, index = scores[keep], index[keep]
    cells = torch.stack(torch.unravel_index(index, (num_classes, *out)), dim=1)
    classes, cells = cells[:, 0], cells[:, 1:]
    anchor = _cell_position(cells.float(), stride_t)
    dist = size.flatten(1)[:, index % int(np.prod(out))].T  # (N, 2D)
    lo = torch.round(anchor - dist[:, :dims])
    hi = torch.round(anchor + dist[:, dims:])
    lo = torch.minimum(lo.clamp_min(0), (shape - 1).float())
    hi = torch.maximum(torch.minimum(hi, (shape - 1).float()), lo)
    boxes = torch.cat([lo, hi], dim=1).long()
    if nms_iou is not None and len(boxes):
        kept = batched_nms(boxes, scores, classes, nms_iou)
        boxes, scores, classes = boxes[kept], scores[kept], classes[kept]
    return Detections(boxes, scores, classes)
