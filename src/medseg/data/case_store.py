"""The case store: a folder of preprocessed cases, written once, memory-mapped for training.

Format::

    FOLDER/
      <case>.npy       image, float32, (C, *spatial) -- normalised, resampled, cropped
      <case>_seg.npy   label, int8 (int16 if values exceed int8), (1, *spatial); absent when
                       the case is unlabelled; -1 marks unannotated voxels (the ``ignore``
                       label of sparse annotations), which are in no class's locations
      <case>.json      properties: {"class_locations": {"<class>": [[z, y, x], ...]}, ...};
                       any other keys (crop box, original geometry) are kept as they are.
                       Missing class locations are computed at load (and not written back).

Case ids are the ``.npy`` stems without ``_seg`` (and without ``_prev``, the suffix of a
cascade stage's previous-stage segmentations, ``medseg.data.cascade``). Arrays are opened with
``np.load(mmap_mode="r")``: a batch reads only the voxels of its patches, so memory stays flat
however large the dataset grows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.data.sampling import CaseArrays, class_locations
from medseg.errors import DatasetError
from medseg.fileutil import atomic_path, check_writable, write_json_atomic

RESERVED_SUFFIXES = ("_seg", "_prev")


def write_case(
    folder: str | os.PathLike[str],
    case_id: str,
    image: np.ndarray,
    label: np.ndarray | None = None,
    *,
    properties: dict[str, Any] | None = None,
    max_per_class: int = 10000,
    overwrite: bool = False,
) -> Path:
    """Write one case in the store format (atomic writes), computing its class locations.

    Args:
        folder: the store folder (created if missing).
        case_id: file stem; must not end with ``_seg``.
        image: ``(C, *spatial)``; stored as float32.
        label: ``(*spatial)`` or ``(1, *spatial)`` integer values in [-32768, 32767], or None.
        properties: extra JSON-serialisable keys for ``<case>.json``.
        max_per_class: cap on stored foreground coordinates per class.
        overwrite: replace an existing case.

    Returns:
        Path of the image ``.npy``.
    """
    folder = Path(folder)
    if case_id.endswith(RESERVED_SUFFIXES):
        raise ValueError(
            f"case id {case_id!r} must not end with {' or '.join(map(repr, RESERVED_SUFFIXES))}"
        )
    image = np.asarray(image, dtype=np.float32)
    image_path, seg_path, json_path = (
        folder / f"{case_id}{end}" for end in (".npy", "_seg.npy", ".json")
    )
    for path in (image_path, seg_path, json_path):
        check_writable(path, overwrite=overwrite)
    props = dict(properties or {})
    if label is None:
        seg_path.unlink(missing_ok=True)  # an unlabelled case replaces a labelled one whole
    else:
        label = np.asarray(label)
        label = label[None] if label.ndim == image.ndim - 1 else label
        if label.shape != (1, *image.shape[1:]):
            raise ValueError(f"{case_id}: label {label.shape} does not match image {image.shape}")
        low, high = int(label.min()), int(label.max())
        if low < -32768 or high > 32767:
            raise ValueError(f"{case_id}: label values [{low}, {high}] do not fit int16")
        dtype = np.int8 if -128 <= low and high <= 127 else np.int16
        with atomic_path(seg_path) as tmp:
            np.save(tmp, label.astype(dtype))
        locations = class_locations(label, max_per_class=max_per_class, seed=0)
        props["class_locations"] = {str(k): v.tolist() for k, v in locations.items()}
    with atomic_path(image_path) as tmp:
        np.save(tmp, image)
    write_json_atomic(json_path, props)
    return image_path


def list_cases(folder: str | os.PathLike[str]) -> list[str]:
    """Sorted case ids of a store folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: case store folder does not exist; run preprocessing first")
    return sorted(
        p.stem
        for p in folder.glob("*.npy")
        if not p.stem.endswith(RESERVED_SUFFIXES) and not p.name.startswith(".")
    )


def load_case(folder: str | os.PathLike[str], case_id: str, *, mmap: bool = True) -> CaseArrays:
    """Open one case: memory-mapped arrays (``mmap=True``) and its class locations.

    Raises:
        DatasetError: the image file is missing.
    """
    folder = Path(folder)
    image_path = folder / f"{case_id}.npy"
    if not image_path.is_file():
        raise DatasetError(f"{image_path}: case image is missing from the store")
    mode: Literal["r"] | None = "r" if mmap else None
    image = np.load(image_path, mmap_mode=mode)
    seg_path = folder / f"{case_id}_seg.npy"
    label = np.load(seg_path, mmap_mode=mode) if seg_path.is_file() else None
    json_path = folder / f"{case_id}.json"
    props = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else {}
    if "class_locations" in props:
        dims = image.ndim - 1
        locations = {
            int(k): np.asarray(v, dtype=np.int64).reshape(-1, dims)
            for k, v in props["class_locations"].items()
        }
    else:
        locations = class_locations(label, seed=0) if label is not None else {}
    return CaseArrays(case_id, image, label, locations)
