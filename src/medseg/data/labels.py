"""The ``labels`` of ``dataset.json``, and the ``ignore`` label of sparse annotations.

nnU-Net v2 marks unannotated voxels with a label named exactly ``ignore`` (e.g.
``{"background": 0, "hippocampus": 1, "ignore": 2}``): it is not a class, and its value must
be one integer above every other label value. Training stores it as -1
(``medseg.data.preprocess.IGNORE_INDEX``); the loss, the patch sampler and the metrics leave
those voxels out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medseg.errors import DatasetError

__all__ = ["IGNORE", "declared_ignore_label", "ignore_value", "labels_from_meta"]

#: The name of the label that marks unannotated voxels (sparse annotations, nnU-Net v2).
IGNORE = "ignore"


def ignore_value(labels: dict[str, Any]) -> int | None:
    """The value of the ``ignore`` label of ``labels`` (name -> value), or None.

    Example:
        >>> ignore_value({"background": 0, "organ": 1, "ignore": 2}), ignore_value({"a": 0})
        (2, None)
    """
    value = labels.get(IGNORE)
    return value if isinstance(value, int) else None


def declared_ignore_label(folder: str | os.PathLike[str]) -> int | None:
    """The value of the ``ignore`` label declared by ``folder/dataset.json``; None when there
    is no such file or it declares no ``ignore`` label.

    Raises:
        DatasetError: ``dataset.json`` is not valid JSON, or its labels are invalid.
    """
    meta_path = Path(folder) / "dataset.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{meta_path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict) or "labels" not in meta:
        return None
    return ignore_value(labels_from_meta(meta, meta_path))


def labels_from_meta(meta: dict, meta_path: Path) -> dict[str, int | list[int]]:
    """The ``labels`` of a ``dataset.json`` (already parsed into ``meta``) as name -> value.

    Accepts nnU-Net v2's ``{"background": 0, ...}`` (region labels as lists) and MSD's
    ``{"0": "background", ...}``; checks the ``ignore`` label.

    Raises:
        DatasetError: ``labels`` is missing or empty, a value is not an integer, or the
            ``ignore`` label is not one integer above every other label value.
    """
    raw = meta.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(
            f"{meta_path}: 'labels' must be a non-empty object, "
            'e.g. {"background": 0, "organ": 1}'
        )
    labels: dict[str, int | list[int]] = {}
    for key, value in raw.items():
        if isinstance(value, list):
            labels[str(key)] = [int(v) for v in value]
        elif isinstance(value, int | float) and float(value).is_integer():
            labels[str(key)] = int(value)
        elif str(key).lstrip("-").isdigit() and isinstance(value, str):  # MSD: {"0": "background"}
            labels[value] = int(key)
        else:
            raise DatasetError(f"{meta_path}: label '{key}': {value!r} is not an integer value")
    _check_ignore_label(labels, meta_path)
    return labels


def _check_ignore_label(labels: dict[str, int | list[int]], meta_path: Path) -> None:
    """The ``ignore`` label is one integer, shared with no other label, above all of them."""
    if IGNORE not in labels:
        return
    value = labels[IGNORE]
    if not isinstance(value, int):
        raise DatasetError(
            f"{meta_path}: label 'ignore' must be one integer value (unannotated voxels), "
            f"got {value!r}"
        )
    others = {
        name: v if isinstance(v, list) else [v] for name, v in labels.items() if name != IGNORE
    }
    clash = [name for name, values in others.items() if value in values]
    if clash:
        raise DatasetError(
            f"{meta_path}: label 'ignore' has the value {value} of label '{clash[0]}'; give "
            "'ignore' its own value, above every other label"
        )
    top = max((v for values in others.values() for v in values), default=None)
    if top is not None and 0 <= value < top:  # a negative value: a problem of check_dataset
        raise DatasetError(
            f"{meta_path}: label 'ignore' ({value}) must be the highest label value (as in "
            f"nnU-Net v2), but another label has {top}"
        )
