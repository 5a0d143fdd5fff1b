"""The working copy of a mask being corrected: brush, eraser, fill holes, keep largest,
undo and redo.

Every operation computes the voxels it changes and records them as one ``Change`` (flat
indices, old values, new values), so undo and redo are exact and cheap. Brush and eraser
paint discs of a radius in mm on a displayed slice (``medseg.viewer.volumes`` for the
planes): a pixel belongs to the disc when the distance between its centre and the stroke
point, in mm along the slice's two axes, is at most the radius.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from medseg.viewer.volumes import display_to_voxel, plane_slice, plane_spacing

MAX_UNDO = 200


@dataclass(frozen=True)
class Change:
    """Voxels (flat indices of the ``(z, y, x)`` array) and their values before and after."""

    indices: np.ndarray
    before: np.ndarray
    after: np.ndarray


def stroke_disc_mask(
    shape: tuple[int, int],
    points: list[tuple[float, float]],
    radius_mm: float,
    spacing: tuple[float, float],
) -> np.ndarray:
    """Boolean ``(rows, cols)`` mask of discs of ``radius_mm`` around each stroke point and
    along the segments between them (points in pixel units, pixel centres at integers).

    Example:
        >>> int(stroke_disc_mask((5, 5), [(2.0, 2.0)], 1.0, (1.0, 1.0)).sum())
        5
    """
    row_mm, col_mm = spacing
    dense: list[tuple[float, float]] = []
    step = max(0.25, 0.5 * radius_mm / max(row_mm, col_mm))
    for i, point in enumerate(points):
        if i:
            prev = np.array(points[i - 1])
            n = int(np.ceil(np.linalg.norm(np.array(point) - prev) / step))
            dense += [tuple(prev + (np.array(point) - prev) * t / n) for t in range(1, n)]
        dense.append(point)
    mask = np.zeros(shape, dtype=bool)
    reach_r, reach_c = int(np.ceil(radius_mm / row_mm)) + 1, int(np.ceil(radius_mm / col_mm)) + 1
    for r, c in dense:
        r0, r1 = max(0, int(r) - reach_r), min(shape[0], int(r) + reach_r + 2)
        c0, c1 = max(0, int(c) - reach_c), min(shape[1], int(c) + reach_c + 2)
        if r0 >= r1 or c0 >= c1:
            continue
        rr, cc = np.mgrid[r0:r1, c0:c1]
        inside = ((rr - r) * row_mm) ** 2 + ((cc - c) * col_mm) ** 2 <= radius_mm**2
        mask[r0:r1, c0:c1] |= inside
    return mask


class WorkingCopy:
    """A ``(z, y, x)`` uint8 mask being edited, its base (the mask it started from, version
    ``base_version``) and the undo/redo history.

    Args:
        base: the starting mask (copied; never modified).
        spacing3: voxel size in mm of the ``(z, y, x)`` array.
        base_version: 0 for the prediction/reference, N for ``corrections/<case>/vN``.
    """

    def __init__(self, base: np.ndarray, spacing3: tuple[float, ...], base_version: int) -> None:
        self.base = np.array(base, dtype=np.uint8)
        self.array = self.base.copy()
        self.spacing3 = tuple(spacing3)
        self.base_version = base_version
        self.generation = 0
        self._undo: list[Change] = []
        self._redo: list[Change] = []

    # ------------------------------------------------------------ history

    def _apply(self, indices: np.ndarray, after: np.ndarray) -> int:
        flat = self.array.reshape(-1)
        before = flat[indices]
        differs = before != after
        if not differs.any():
            return 0
        change = Change(indices[differs], before[differs], np.asarray(after)[differs])
        flat[change.indices] = change.after
        self._undo.append(change)
        del self._undo[:-MAX_UNDO]
        self._redo.clear()
        self.generation += 1
        return int(change.indices.size)

    def undo(self) -> int:
        """Undo the last change; returns the voxels restored (0 when nothing to undo)."""
        if not self._undo:
            return 0
        change = self._undo.pop()
        self.array.reshape(-1)[change.indices] = change.before
        self._redo.append(change)
        self.generation += 1
        return int(change.indices.size)

    def redo(self) -> int:
        """Redo the last undone change; returns the voxels changed again."""
        if not self._redo:
            return 0
        change = self._redo.pop()
        self.array.reshape(-1)[change.indices] = change.after
        self._undo.append(change)
        self.generation += 1
        return int(change.indices.size)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # ------------------------------------------------------------ operations

    def paint(
        self,
        plane: str,
        index: int,
        points: list[tuple[float, float]],
        radius_mm: float,
        label: int,
        *,
        mode: Literal["brush", "eraser"] = "brush",
    ) -> int:
        """Paint ``label`` (brush) or erase it to 0 (eraser; ``label`` 0 erases every label)
        in the discs of a stroke on slice ``index`` of ``plane``; returns voxels changed."""
        shown = plane_slice(self.array, plane, index)
        disc = stroke_disc_mask(shown.shape, points, radius_mm, plane_spacing(self.spacing3, plane))
        rows, cols = np.nonzero(disc)
        z, y, x = display_to_voxel(plane, index, rows, cols, self.array.shape)
        flat = np.ravel_multi_index((z, y, x), self.array.shape)
        if mode == "brush":
            return self._apply(flat, np.full(flat.size, label, dtype=np.uint8))
        current = self.array.reshape(-1)[flat]
        erase = current != 0 if label == 0 else current == label
        return self._apply(flat[erase], np.zeros(int(erase.sum()), dtype=np.uint8))

    def replace_slice(self, plane: str, index: int, mask2d: np.ndarray, label: int) -> int:
        """Set ``label`` inside ``mask2d`` and clear ``label`` outside it on one displayed slice
        (a promptable model's answer); returns voxels changed."""
        rows, cols = np.indices(mask2d.shape).reshape(2, -1)
        z, y, x = display_to_voxel(plane, index, rows, cols, self.array.shape)
        flat = np.ravel_multi_index((z, y, x), self.array.shape)
        current = self.array.reshape(-1)[flat]
        inside = mask2d.reshape(-1).astype(bool)
        after = np.where(inside, label, np.where(current == label, 0, current))
        return self._apply(flat, after.astype(np.uint8))

    def fill_holes(self, label: int) -> int:
        """Set background voxels enclosed by ``label`` (3D holes) to ``label``."""
        mask = self.array == label
        holes = ndimage.binary_fill_holes(mask) & (self.array == 0)
        flat = np.flatnonzero(holes)
        return self._apply(flat, np.full(flat.size, label, dtype=np.uint8))

    def keep_largest(self, label: int) -> int:
        """Clear every connected component of ``label`` but the largest (face connectivity)."""
        components, count = ndimage.label(self.array == label)
        if count <= 1:
            return 0
        sizes = np.bincount(components.reshape(-1))[1:]
        drop = (components != 0) & (components != int(np.argmax(sizes)) + 1)
        flat = np.flatnonzero(drop)
        return self._apply(flat, np.zeros(flat.size, dtype=np.uint8))

    def changed_per_label(self) -> dict[int, int]:
        """Per label value: voxels that gained or lost it since the base (0 = background)."""
        differs = self.array != self.base
        values = np.union1d(np.unique(self.array[differs]), np.unique(self.base[differs]))
        return {
            int(v): int(((self.array == v) != (self.base == v)).sum()) for v in values if v != 0
        }
