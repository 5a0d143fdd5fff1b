"""Axis-aligned boxes in voxel indices: validation, volume, IoU, NMS, boxes of label maps.

**Box convention** (the one place it is defined; everything in medseg that holds a box uses
it). A box in ``D`` spatial dimensions is a row of ``2 * D`` numbers::

    (lo_0, ..., lo_{D-1}, hi_0, ..., hi_{D-1})

in array axis order (``(y0, x0, y1, x1)`` in 2D, ``(z0, y0, x0, z1, y1, x1)`` in 3D), as
corner voxel **indices** with **inclusive** ``hi``: a box covering exactly voxel ``(3, 5)``
is ``(3, 5, 3, 5)``, its size along an axis is ``hi - lo + 1``. In continuous coordinates a
box covers ``[lo, hi + 1)`` on each axis; float boxes (a detector's regression) use the same
rule, so ``box_iou`` of float boxes is the area overlap of those half-open intervals. COCO's
``(x, y, w, h)`` of a 2D box is ``(lo_1, lo_0, hi_1 - lo_1 + 1, hi_0 - lo_0 + 1)``.

A set of ``N`` boxes is a ``(N, 2 * D)`` torch tensor or NumPy array; ``box_iou`` and the NMS
functions work in torch (float64 and integer boxes compute in float64, other floats in
float32), the label-map
functions in NumPy. ``hi < lo`` on any axis is refused (``check_boxes``).
"""

from __future__ import annotations

import cc3d
import numpy as np
import torch
from scipy import ndimage

from medseg.errors import ConfigError

__all__ = [
    "batched_nms",
    "box_area",
    "box_iou",
    "boxes_from_labels",
    "boxes_from_mask",
    "check_boxes",
    "nms",
]

BoxArray = torch.Tensor | np.ndarray
_FULL_MATRIX = 2048  # NMS of more boxes computes IoU rows on demand (memory N * N)


def check_boxes(boxes: BoxArray, spatial_dims: int, name: str = "boxes") -> BoxArray:
    """Check that ``boxes`` is ``(N, 2 * spatial_dims)`` with finite values and ``hi >= lo``.

    Args:
        boxes: ``(N, 2 * spatial_dims)`` tensor or array (see the module docstring).
        spatial_dims: 1, 2 or 3.
        name: what the message calls the boxes.

    Returns:
        ``boxes``, unchanged.

    Raises:
        ConfigError: wrong shape, non-finite values, or a box with ``hi < lo``.

    Example:
        >>> check_boxes(np.array([[0, 0, 2, 3]]), 2).shape
        (1, 4)
    """
    if spatial_dims not in (1, 2, 3):
        raise ConfigError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    width = 2 * spatial_dims
    values = boxes.detach().cpu().numpy() if isinstance(boxes, torch.Tensor) else np.asarray(boxes)
    if values.ndim != 2 or values.shape[1] != width:
        raise ConfigError(
            f"{name}: expected shape (N, {width}) = (lo_0..lo_{spatial_dims - 1}, "
            f"hi_0..hi_{spatial_dims - 1}) for {spatial_dims}D boxes, got {tuple(values.shape)}"
        )
    if values.dtype.kind not in "iuf" and values.size:
        raise ConfigError(f"{name}: boxes must be numbers, got dtype {values.dtype}")
    if values.size and not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise ConfigError(f"{name}: box {bad} has a non-finite coordinate {values[bad].tolist()}")
    lo, hi = values[:, :spatial_dims], values[:, spatial_dims:]
    wrong = np.argwhere(hi < lo)
    if wrong.size:
        i, axis = (int(v) for v in wrong[0])
        raise ConfigError(
            f"{name}: box {i} has x1 < x0 on axis {axis} (lo {lo[i, axis]}, hi {hi[i, axis]}); "
            f"boxes are (lo_0..lo_{spatial_dims - 1}, hi_0..hi_{spatial_dims - 1}) with "
            f"inclusive hi >= lo ({len(wrong)} coordinate(s) wrong in all)"
        )
    return boxes


def box_area(boxes: BoxArray) -> BoxArray:
    """Volume of each box in voxels: ``prod(hi - lo + 1)`` (inclusive ``hi``).

    Args:
        boxes: ``(N, 2 * D)`` tensor or array.

    Returns:
        ``(N,)`` of the same kind (tensor or array).

    Example:
        >>> box_area(np.array([[0, 0, 0, 0], [2, 3, 4, 7]])).tolist()
        [1, 15]
    """
    d = _dims(boxes)
    extent = boxes[:, d:] - boxes[:, :d] + 1
    if isinstance(extent, torch.Tensor):
        return extent.prod(dim=1)
    return np.prod(extent, axis=1)


def box_iou(a: BoxArray, b: BoxArray) -> torch.Tensor:
    """Intersection over union of every pair of boxes, 1D to 3D.

    Args:
        a: ``(N, 2 * D)`` boxes.
        b: ``(M, 2 * D)`` boxes.

    Returns:
        ``(N, M)`` torch tensor on ``a``'s device (float64 if either input is float64 or
        integer, else float32); entries in ``[0, 1]``.

    Raises:
        ConfigError: bad boxes (``check_boxes``) or different ``D``.

    Example:
        >>> box_iou(np.array([[0, 0, 1, 1]]), np.array([[1, 1, 2, 2]])).tolist()
        [[0.14285714285714285]]
    """
    ta, tb = _as_float(a), _as_float(b)
    d = _dims(ta)
    if _dims(tb) != d:
        raise ConfigError(f"box_iou: boxes of different dimension ({ta.shape[1]} vs {tb.shape[1]})")
    check_boxes(ta, d, "box_iou a")
    check_boxes(tb, d, "box_iou b")
    dtype = torch.promote_types(ta.dtype, tb.dtype)
    return _iou(ta.to(dtype), tb.to(dtype=dtype, device=ta.device))


def nms(boxes: BoxArray, scores: BoxArray, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression.

    Boxes are visited by decreasing score (ties: lower index first); a box is kept unless it
    overlaps an already kept box with IoU **greater than** ``iou_threshold`` (torchvision's
    rule).

    Args:
        boxes: ``(N, 2 * D)`` boxes.
        scores: ``(N,)`` scores.
        iou_threshold: in ``[0, 1]``.

    Returns:
        ``(K,)`` int64 tensor: indices of the kept boxes, by decreasing score.

    Raises:
        ConfigError: bad boxes, scores of another length or not finite, a threshold outside
            ``[0, 1]``.

    Example:
        >>> nms(np.array([[0, 0, 9, 9], [1, 1, 9, 9], [20, 20, 29, 29]]),
        ...     np.array([0.5, 0.9, 0.7]), 0.5).tolist()
        [1, 2]
    """
    tboxes, tscores = _boxes_and_scores(boxes, scores, iou_threshold)
    order = torch.sort(tscores, descending=True, stable=True).indices
    if order.numel() == 0:
        return order
    ranked = tboxes[order]
    iou = _iou(ranked, ranked) if len(order) <= _FULL_MATRIX else None  # else row by row
    suppressed = torch.zeros(order.numel(), dtype=torch.bool)
    keep = []
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        keep.append(i)
        row = iou[i] if iou is not None else _iou(ranked[i : i + 1], ranked)[0]
        suppressed |= row.cpu() > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def batched_nms(
    boxes: BoxArray, scores: BoxArray, classes: BoxArray, iou_threshold: float
) -> torch.Tensor:
    """Class-wise NMS: boxes of different classes never suppress each other.

    Args:
        boxes: ``(N, 2 * D)`` boxes.
        scores: ``(N,)`` scores.
        classes: ``(N,)`` integer class of each box.
        iou_threshold: in ``[0, 1]``.

    Returns:
        ``(K,)`` int64 tensor: indices of the kept boxes, by decreasing score over all classes
        (ties: lower index first).

    Raises:
        ConfigError: as ``nms``, or ``classes`` of another length.

    Example:
        >>> batched_nms(np.array([[0, 0, 9, 9], [1, 1, 9, 9]]), np.array([0.5, 0.9]),
        ...             np.array([0, 1]), 0.5).tolist()
        [1, 0]
    """
    tboxes, tscores = _boxes_and_scores(boxes, scores, iou_threshold)
    tclasses = torch.as_tensor(classes).reshape(-1).to(tscores.device)
    if tclasses.numel() != tscores.numel():
        raise ConfigError(f"batched_nms: {tclasses.numel()} classes for {tscores.numel()} boxes")
    kept = [
        torch.nonzero(tclasses == c).reshape(-1)[
            nms(tboxes[tclasses == c], tscores[tclasses == c], iou_threshold)
        ]
        for c in torch.unique(tclasses)
    ]
    if not kept:
        return torch.zeros(0, dtype=torch.long, device=tscores.device)
    index = torch.sort(torch.cat(kept)).values  # index order first, so the stable sort breaks
    return index[torch.sort(tscores[index], descending=True, stable=True).indices]  # ties by index


def boxes_from_labels(instance_map: np.ndarray, spatial_dims: int) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of every instance of a label map.

    Args:
        instance_map: ``(*spatial)`` non-negative integer labels, 0 = background; the labels
            need not be consecutive.
        spatial_dims: must equal ``instance_map.ndim`` (1, 2 or 3).

    Returns:
        ``(boxes, ids)``: ``(N, 2 * spatial_dims)`` int64 boxes (inclusive ``hi``) and the
        ``(N,)`` int64 instance ids they belong to, in increasing id order.

    Raises:
        ConfigError: wrong dimension, non-integer or negative labels.

    Example:
        >>> labels = np.zeros((4, 5), int); labels[1:3, 2] = 7
        >>> boxes, ids = boxes_from_labels(labels, 2)
        >>> boxes.tolist(), ids.tolist()
        ([[1, 2, 2, 2]], [7])
    """
    labels = np.asarray(instance_map)
    if spatial_dims not in (1, 2, 3) or labels.ndim != spatial_dims:
        raise ConfigError(
            f"boxes_from_labels: a {spatial_dims}D label map must have {spatial_dims} axes, got "
            f"shape {labels.shape}"
        )
    if labels.dtype.kind not in "biu":
        raise ConfigError(f"boxes_from_labels: labels must be integers, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ConfigError(f"boxes_from_labels: labels must be >= 0, found {labels.min()}")
    ids, inverse = np.unique(labels, return_inverse=True)
    dense = inverse.reshape(labels.shape)  # 0..K-1, background first when present
    if ids.size and ids[0] == 0:
        ids = ids[1:]
    else:
        dense = dense + 1
    slices = ndimage.find_objects(dense, max_label=ids.size) if ids.size else []
    boxes = np.array(
        [[s.start for s in box] + [s.stop - 1 for s in box] for box in slices], dtype=np.int64
    ).reshape(-1, 2 * spatial_dims)
    return boxes, ids.astype(np.int64)


def boxes_from_mask(mask: np.ndarray, *, connectivity: int | None = None) -> np.ndarray:
    """Boxes of the connected components of a binary mask (``mask > 0``).

    Args:
        mask: ``(*spatial)`` 2D or 3D mask.
        connectivity: 4/8 in 2D, 6/18/26 in 3D; None: full (8 or 26).

    Returns:
        ``(N, 2 * D)`` int64 boxes, one per component, components in ``cc3d`` (raster) order.

    Raises:
        ConfigError: a mask that is not 2D/3D or a bad connectivity.

    Example:
        >>> mask = np.zeros((5, 5), bool); mask[0, 0] = mask[3:5, 2:4] = True
        >>> boxes_from_mask(mask).tolist()
        [[0, 0, 0, 0], [3, 2, 4, 3]]
    """
    values = np.asarray(mask)
    allowed = {2: (4, 8), 3: (6, 18, 26)}.get(values.ndim)
    if allowed is None:
        raise ConfigError(f"boxes_from_mask: needs a 2D or 3D mask, got shape {values.shape}")
    if connectivity is not None and connectivity not in allowed:
        raise ConfigError(f"connectivity in {values.ndim}D must be one of {allowed}")
    components = cc3d.connected_components(
        values > 0, connectivity=connectivity or allowed[-1], out_dtype=np.uint32
    )
    return boxes_from_labels(components.astype(np.int64), values.ndim)[0]


def _dims(boxes: BoxArray) -> int:
    if boxes.ndim != 2 or boxes.shape[1] % 2 or not 2 <= boxes.shape[1] <= 6:
        raise ConfigError(
            f"boxes must have shape (N, 2 * D) with D in 1..3, got {tuple(boxes.shape)}"
        )
    return int(boxes.shape[1]) // 2


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` IoU of checked boxes of one dtype and device."""
    d = a.shape[1] // 2
    lo = torch.maximum(a[:, None, :d], b[None, :, :d])
    hi = torch.minimum(a[:, None, d:], b[None, :, d:])
    inter = (hi - lo + 1).clamp(min=0).prod(dim=2)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union


def _as_float(boxes: BoxArray) -> torch.Tensor:
    tensor = torch.as_tensor(boxes)
    if tensor.dtype == torch.float64 or not tensor.is_floating_point():
        return tensor.to(torch.float64)  # integer boxes: exact IoU
    return tensor.to(torch.float32)


def _boxes_and_scores(
    boxes: BoxArray, scores: BoxArray, iou_threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    tboxes = _as_float(boxes)
    check_boxes(tboxes, _dims(tboxes), "nms boxes")
    tscores = torch.as_tensor(scores).reshape(-1).to(device=tboxes.device)
    if tscores.numel() != tboxes.shape[0]:
        raise ConfigError(f"nms: {tscores.numel()} scores for {tboxes.shape[0]} boxes")
    if not torch.isfinite(tscores.double()).all():
        raise ConfigError("nms: scores must be finite")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ConfigError(f"nms: iou_threshold must be in [0, 1], got {iou_threshold!r}")
    return tboxes, tscores
