"""3D segmentation from one 3D box with a 2D promptable model: box propagation (MedSAM).

The key slice (by default the middle slice of the box along ``axis``) is segmented with the
box's in-plane extent as a box prompt. Then the slices are visited one by one in both
directions; each is prompted with the bounding box of the previous slice's mask, grown by
``margin`` voxels and clipped to the 3D box. A direction stops at the first empty mask or at
the end of the 3D box, so an object is followed slice by slice and nothing beyond a gap is
picked up. Voxels outside the 3D box are never labelled.

A native 3D model (``spatial_dims == 3``) needs no propagation: the 3D box is its prompt
(one ``embed`` and one ``predict`` with the 3D box), and :func:`segment_volume_from_box`
does just that for it.

Boxes are ``(lo_0, lo_1, lo_2, hi_0, hi_1, hi_2)``: the first and last voxel inside, in
array axis order (see :mod:`medseg.prompt.everything`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from medseg.errors import ConfigError
from medseg.prompt.everything import Predictor, as_model_input


def _check_box(box_3d: Sequence[float], shape: tuple[int, ...]) -> tuple[int, ...]:
    box = tuple(int(round(float(v))) for v in box_3d)
    if len(box) != 6:
        raise ConfigError(
            f"box_3d has {len(box)} values; give 6: (lo_0, lo_1, lo_2, hi_0, hi_1, hi_2)"
        )
    for axis, size in enumerate(shape):
        if not 0 <= box[axis] <= box[3 + axis] < size:
            raise ConfigError(
                f"box_3d={box} is inverted or outside the volume {shape} along axis {axis}: "
                f"need 0 <= lo <= hi < {size}"
            )
    return box


def _nonzero_box(mask: np.ndarray) -> list[int]:
    """Inclusive box ``(lo..., hi...)`` of a non-empty mask."""
    where = np.nonzero(mask)
    return [int(w.min()) for w in where] + [int(w.max()) for w in where]


def _best_mask(result: object) -> np.ndarray:
    """The proposal of the first batch item with the highest predicted IoU, as booleans."""
    best = int(result.iou[0].argmax())  # type: ignore[attr-defined]
    return (result.logits[0, best] > 0).cpu().numpy()  # type: ignore[attr-defined]


def _segment_slice(
    model: Predictor, volume: Tensor, axis: int, index: int, plane_box: list[int]
) -> np.ndarray:
    """Mask of one slice ``(H, W)`` from a 2D box prompt, kept inside ``plane_box``."""
    image = volume.select(axis + 1, index)[None]  # (1, C, H, W)
    embedding = model.embed(image)
    box = torch.tensor(plane_box, dtype=torch.float32, device=embedding.device)
    mask = _best_mask(model.predict(embedding, box=box[None], multimask=False))
    inside = np.zeros_like(mask)
    inside[plane_box[0] : plane_box[2] + 1, plane_box[1] : plane_box[3] + 1] = True
    return mask & inside


def _plane_box(box: tuple[int, ...], axis: int) -> list[int]:
    """The in-plane part ``(lo_a, lo_b, hi_a, hi_b)`` of a 3D box."""
    kept = [a for a in range(3) if a != axis]
    return [box[a] for a in kept] + [box[3 + a] for a in kept]


def _grown_box(mask: np.ndarray, margin: int, limit: list[int]) -> list[int]:
    """Box of ``mask`` grown by ``margin`` and clipped to the in-plane ``limit`` box."""
    lo_a, lo_b, hi_a, hi_b = _nonzero_box(mask)
    return [
        max(lo_a - margin, limit[0]),
        max(lo_b - margin, limit[1]),
        min(hi_a + margin, limit[2]),
        min(hi_b + margin, limit[3]),
    ]


def _propagate(
    model: Predictor,
    volume: Tensor,
    box: tuple[int, ...],
    axis: int,
    start: int,
    step: int,
    out: np.ndarray,
    margin: int,
) -> None:
    """Fill ``out`` slice by slice from ``start`` (exclusive) in direction ``step``."""
    limit = _plane_box(box, axis)
    previous = np.take(out, start, axis=axis)
    index = start + step
    while box[axis] <= index <= box[3 + axis] and previous.any():
        mask = _segment_slice(model, volume, axis, index, _grown_box(previous, margin, limit))
        np.moveaxis(out, axis, 0)[index] = mask
        previous = mask
        index += step


@torch.no_grad()
def segment_volume_from_box(
    model: Predictor,
    volume: Tensor | np.ndarray,
    box_3d: Sequence[float],
    *,
    key_slice: int | None = None,
    axis: int = 0,
    margin: int = 3,
) -> np.ndarray:
    """Segment one object of a volume from a 3D box.

    A 2D model segments slice by slice along ``axis`` with box propagation from the key
    slice (see the module docstring); a 3D model is prompted with the 3D box directly.

    Args:
        model: A predictor (``PromptableModel``), 2D or 3D.
        volume: ``(C, d0, d1, d2)``, preprocessed; for a 2D model every slice along ``axis``
            must have the model's ``image_size``, for a 3D model the volume itself.
        box_3d: ``(lo_0, lo_1, lo_2, hi_0, hi_1, hi_2)`` inclusive voxel indices.
        key_slice: Index along ``axis`` to start from; the middle of the box by default.
        axis: The slicing axis of the spatial axes (0, 1 or 2).
        margin: Voxels added on every side of the previous slice's box.

    Returns:
        ``(d0, d1, d2)`` boolean mask.
    """
    tensor = torch.as_tensor(volume).float()
    if tensor.ndim != 4:
        raise ConfigError(f"volume has shape {tuple(tensor.shape)}; give (C, d0, d1, d2)")
    shape = tuple(int(s) for s in tensor.shape[1:])
    box = _check_box(box_3d, shape)
    if axis not in (0, 1, 2):
        raise ConfigError(f"axis={axis}: the slicing axis must be 0, 1 or 2")
    if margin < 0:
        raise ConfigError(f"margin={margin}: it must be at least 0")
    out = np.zeros(shape, dtype=bool)
    region = tuple(slice(box[a], box[3 + a] + 1) for a in range(3))
    if model.spatial_dims == 3:
        embedding = model.embed(as_model_input(model, tensor))
        prompt = torch.tensor(box, dtype=torch.float32, device=embedding.device)[None]
        out[region] = _best_mask(model.predict(embedding, box=prompt, multimask=False))[region]
        return out
    if model.spatial_dims != 2:
        raise ConfigError(f"a {model.spatial_dims}D model cannot segment a volume")
    plane = tuple(s for a, s in enumerate(shape) if a != axis)
    if plane != tuple(int(s) for s in model.image_size):
        raise ConfigError(
            f"slices along axis {axis} are {plane}; the model takes {tuple(model.image_size)}: "
            "resize the volume first"
        )
    key = (box[axis] + box[3 + axis]) // 2 if key_slice is None else int(key_slice)
    if not box[axis] <= key <= box[3 + axis]:
        raise ConfigError(
            f"key_slice={key} is outside the box, which spans {box[axis]}..{box[3 + axis]} "
            f"along axis {axis}"
        )
    np.moveaxis(out, axis, 0)[key] = _segment_slice(model, tensor, axis, key, _plane_box(box, axis))
    for step in (1, -1):
        _propagate(model, tensor, box, axis, key, step, out, margin)
    return out
