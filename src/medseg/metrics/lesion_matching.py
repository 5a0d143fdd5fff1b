"""Steps 1 to 3 of the BraTS 2023 lesion-wise metrics (``medseg.metrics.lesions``): connected
components, reference lesions merged by dilation, predicted components matched to them.

:func:`match_lesions` labels both masks and matches them; the scores (steps 4 to 7) and the
definition, step by step, are in ``medseg.metrics.lesions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage

from medseg.errors import ConfigError, GeometryError

_COMPONENT_CONNECTIVITY = {2: (4, 8), 3: (6, 18, 26)}


@dataclass(frozen=True)
class LesionMatching:
    """Both masks' components and their matching (steps 1 to 3).

    Attributes:
        ref_cc: ``(*spatial)`` reference voxels labelled by lesion (1..n_lesions, ``cc3d``
            order of the dilated reference), 0 elsewhere.
        pred_cc: ``(*spatial)`` predicted components (1..n_pred), 0 elsewhere.
        n_lesions: reference lesions after merging.
        n_pred: predicted components.
        matches: lesion id -> ids of the predicted components overlapping its dilation, in
            increasing order (empty for a missed lesion); every lesion id is a key.
        ref_boxes, pred_boxes: bounding box of lesion / component ``i`` at index ``i - 1``.
    """

    ref_cc: np.ndarray
    pred_cc: np.ndarray
    n_lesions: int
    n_pred: int
    matches: dict[int, list[int]]
    ref_boxes: list[tuple[slice, ...]]
    pred_boxes: list[tuple[slice, ...]]

    @property
    def matched(self) -> set[int]:
        """Ids of the predicted components matched to some lesion."""
        return {pred_id for pred_ids in self.matches.values() for pred_id in pred_ids}


def component_connectivity(ndim: int, connectivity: int | None) -> int:
    """The ``cc3d`` connectivity: ``connectivity`` checked for ``ndim``, None = full.

    Raises:
        GeometryError: the masks are not 2D/3D.
        ConfigError: a connectivity other than 4/8 (2D) or 6/18/26 (3D).
    """
    if ndim not in _COMPONENT_CONNECTIVITY:
        raise GeometryError(f"lesion-wise metrics need 2D or 3D masks, got {ndim}D")
    allowed = _COMPONENT_CONNECTIVITY[ndim]
    if connectivity is None:
        return allowed[-1]
    if connectivity not in allowed:
        raise ConfigError(f"connectivity for {ndim}D must be one of {allowed}, got {connectivity}")
    return int(connectivity)


def dilate(mask: np.ndarray, structure: np.ndarray, connectivity: int) -> np.ndarray:
    """Binary dilation of ``mask`` (outside the image is background, as in BraTS), computed
    component by component on each bounding box grown by the footprint radius: the union is
    the dilation of the whole mask, at the cost of the lesions' boxes, not of the image."""
    dilated = np.zeros_like(mask)
    radius = np.array(structure.shape) // 2
    components = cc3d.connected_components(mask, connectivity=connectivity)
    for box in ndimage.find_objects(components):
        grown = tuple(
            slice(max(s.start - r, 0), min(s.stop + r, n))
            for s, r, n in zip(box, radius, mask.shape, strict=True)
        )
        dilated[grown] |= ndimage.binary_dilation(mask[grown], structure=structure)
    return dilated


def match_lesions(
    pred: np.ndarray, ref: np.ndarray, structure: np.ndarray, connectivity: int
) -> LesionMatching:
    """Label ``pred``'s components and ``ref``'s lesions (merged by dilation with
    ``structure``) and match each lesion with the components overlapping its dilation.

    Args:
        pred, ref: ``(*spatial)`` bool masks of one shape.
        structure: the dilation's footprint (``medseg.metrics.lesions.dilation_footprint``).
        connectivity: of the components (:func:`component_connectivity`).
    """
    pred_cc, n_pred = cc3d.connected_components(pred, connectivity=connectivity, return_N=True)
    # The dilated reference's components are the lesions (step 2) and their dilations (3).
    dilated = dilate(ref, structure, connectivity)
    dilated_cc, n_lesions = cc3d.connected_components(
        dilated, connectivity=connectivity, return_N=True
    )
    ref_cc = np.where(ref, dilated_cc, 0)

    overlap = (dilated_cc > 0) & (pred_cc > 0)
    pairs = np.unique(np.stack([dilated_cc[overlap], pred_cc[overlap]]), axis=1)
    matches: dict[int, list[int]] = {k: [] for k in range(1, n_lesions + 1)}
    for lesion_id, pred_id in pairs.T.tolist():
        matches[lesion_id].append(pred_id)
    return LesionMatching(
        ref_cc=ref_cc,
        pred_cc=pred_cc,
        n_lesions=n_lesions,
        n_pred=n_pred,
        matches=matches,
        ref_boxes=ndimage.find_objects(ref_cc, max_label=n_lesions),
        pred_boxes=ndimage.find_objects(pred_cc, max_label=n_pred),
    )


def union_slice(slices: Sequence[tuple[slice, ...]]) -> tuple[slice, ...]:
    """The bounding box of several boxes."""
    return tuple(
        slice(min(s[axis].start for s in slices), max(s[axis].stop for s in slices))
        for axis in range(len(slices[0]))
    )


def centroid(mask: np.ndarray, box: tuple[slice, ...]) -> tuple[float, ...]:
    """Centre of mass of ``mask`` (a crop at ``box``) as array indices of the whole image."""
    centre = np.argwhere(mask).mean(axis=0)
    return tuple(round(float(c + s.start), 3) for c, s in zip(centre, box, strict=True))


__all__ = [
    "LesionMatching",
    "centroid",
    "component_connectivity",
    "dilate",
    "match_lesions",
    "union_slice",
]
