"""Laterality: flipping the left-right axis turns a left structure into a right one, so where
the label names say left/right (or ``dataset.json`` says ``"laterality": true``) the planner
leaves that axis out of ``mirror_axes``, which the training augmentation and test-time
mirroring both use. Rotations keep handedness and stay.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from medseg.data.dataset import Dataset
from medseg.io.formats import read_geometry

# left/right in label names: whole words, hemisphere abbreviations, or _l/_r affixes
_LATERAL_WORDS = {"left", "right", "lh", "rh", "links", "rechts"}
_LATERAL_AFFIX = re.compile(r"(^|[_\-. ])(l|r)([_\-. ]|$)")


def is_lateral_label(name: str) -> bool:
    """Whether a label name says left or right (``left_kidney``, ``Right``, ``lh_cortex``,
    ``lung_l``, ``R-hippocampus``).

    Example:
        >>> [is_lateral_label(n) for n in ("left_kidney", "lung_R", "liver", "lateral")]
        [True, True, False, False]
    """
    lower = name.lower()
    words = set(re.split(r"[^a-z0-9]+", lower))
    return bool(words & _LATERAL_WORDS) or bool(_LATERAL_AFFIX.search(lower))


def laterality_reason(labels: Mapping[str, Any], declared: bool) -> str | None:
    """Why left and right must not be swapped, or None where nothing says so."""
    if declared:
        return 'dataset.json says "laterality": true'
    lateral = [name for name in labels if is_lateral_label(name)]
    if lateral:
        return f"label names say left/right ({', '.join(lateral[:4])})"
    return None


def default_mirror_axes(
    spatial_dims: int, store_dims: int, lateral_axis: int | None, why: str | None
) -> tuple[tuple[int, ...], str]:
    """Every patch axis, except the left-right one where laterality matters.

    Args:
        spatial_dims: the network's patch dimensions (2 for a ``2d`` plan).
        store_dims: the case dimensions (3 for 3D data, also under a ``2d`` plan).
        lateral_axis: the array axis of the cases that runs left-right (world x).
        why: :func:`laterality_reason`'s text, or None.
    """
    axes = list(range(spatial_dims))
    if why is None or lateral_axis is None:
        return tuple(axes), "every axis (no left/right label names, no laterality in dataset.json)"
    patch_axis = lateral_axis - (store_dims - spatial_dims)
    if patch_axis in axes:
        axes.remove(patch_axis)
        return tuple(axes), (
            f"every axis except {patch_axis} (left-right, array axis {lateral_axis}): {why}, "
            "and a mirrored left structure would be labelled right"
        )
    return tuple(axes), f"every axis: {why}, but the left-right axis is not a patch axis"


def find_laterality(ds: Dataset) -> dict[str, Any]:
    """The array axis that runs left-right (world x, from the first case's direction) and why
    left and right must not be swapped (``"laterality": true`` in ``dataset.json`` or
    left/right label names), or None: ``{"lateral_axis": ..., "laterality": ...}``, the
    planner's keyword arguments."""
    declared = False
    meta_path = ds.root / "dataset.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        declared = isinstance(meta, dict) and meta.get("laterality") is True
    why = laterality_reason(ds.labels, declared)
    if why is None or not ds.cases:
        return {"lateral_axis": None, "laterality": why}
    _, geometry = read_geometry(ds.cases[0].image_paths[0])
    direction = np.asarray(geometry.direction).reshape(len(geometry.spacing), -1)
    itk_axis = int(np.argmax(np.abs(direction[0])))  # the index axis most along world x
    return {"lateral_axis": len(geometry.spacing) - 1 - itk_axis, "laterality": why}
