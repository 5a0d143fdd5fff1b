"""Fitted scikit-learn trees as plain node arrays, and back (no pickle).

A model file holds only these arrays: the trees are checked, then rebuilt from them, so a
model file is data, never code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ImageIOError
from medseg.fileutil import atomic_path, check_writable

FORMAT = "medseg-random-forest"
VERSION = 1

_TREE_KEYS = ("children_left", "children_right", "feature", "threshold", "value")


def _trees_to_arrays(forest: Any) -> dict[str, np.ndarray]:
    """The node arrays of every fitted tree, concatenated, with per-tree node counts."""
    parts: dict[str, list[np.ndarray]] = {key: [] for key in _TREE_KEYS}
    counts = []
    for estimator in forest.estimators_:
        tree = estimator.tree_
        value = tree.value[:, 0, :].astype(np.float64)
        total = value.sum(axis=1, keepdims=True)
        # leaf class fractions, as DecisionTreeClassifier.predict_proba normalises them
        parts["value"].append(value / np.where(total > 0, total, 1.0))
        parts["children_left"].append(tree.children_left.astype(np.int64))
        parts["children_right"].append(tree.children_right.astype(np.int64))
        parts["feature"].append(tree.feature.astype(np.int64))
        parts["threshold"].append(tree.threshold.astype(np.float64))
        counts.append(tree.node_count)
    arrays = {key: np.concatenate(value) for key, value in parts.items()}
    arrays["node_count"] = np.asarray(counts, dtype=np.int64)
    return arrays


def _check_tree_arrays(arrays: dict[str, np.ndarray], num_features: int, num_classes: int) -> str:
    """An empty string when the arrays form valid trees, else what is wrong.

    Valid: every internal node's children come after it and inside its tree (so traversal
    ends and stays in bounds), leaves have both children -1, features index real columns.
    """
    integer = ("node_count", "children_left", "children_right", "feature")
    if any(arrays[k].dtype.kind not in "iu" for k in integer):
        return f"{', '.join(integer)} must be integer arrays"
    if any(arrays[k].dtype.kind != "f" for k in ("threshold", "value")):
        return "threshold and value must be float arrays"
    counts = arrays["node_count"]
    total = int(counts.sum()) if counts.size else 0
    if counts.ndim != 1 or counts.size == 0 or (counts < 1).any():
        return "node_count must list at least one tree, each with >= 1 node"
    for key in _TREE_KEYS:
        if arrays[key].shape[:1] != (total,):
            return f"'{key}' has {arrays[key].shape[:1]} rows, expected {total}"
    if arrays["value"].shape != (total, num_classes):
        return f"'value' has shape {arrays['value'].shape}, expected ({total}, {num_classes})"
    offsets = np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    ends = np.repeat(np.cumsum(counts), counts)
    index = np.arange(total)
    left, right, feature = arrays["children_left"], arrays["children_right"], arrays["feature"]
    leaf = left == -1
    if (leaf != (right == -1)).any():
        return "a node has exactly one child"
    internal = ~leaf
    for child in (left, right):
        absolute = child + offsets
        if ((absolute <= index) | (absolute >= ends))[internal].any():
            return "a child index points backwards or outside its tree"
    if ((feature < 0) | (feature >= num_features))[internal].any():
        return f"a split uses a feature outside 0..{num_features - 1}"
    if not np.isfinite(arrays["value"]).all():
        return "leaf values are not finite"
    return ""


def _build_trees(arrays: dict[str, np.ndarray], num_features: int, num_classes: int) -> list:
    """scikit-learn ``Tree`` objects rebuilt from (checked) node arrays."""
    from sklearn.tree._tree import NODE_DTYPE, Tree

    trees = []
    start = 0
    for count in arrays["node_count"].tolist():
        stop = start + count
        nodes = np.zeros(count, dtype=NODE_DTYPE)
        nodes["left_child"] = arrays["children_left"][start:stop]
        nodes["right_child"] = arrays["children_right"][start:stop]
        nodes["feature"] = arrays["feature"][start:stop]
        nodes["threshold"] = arrays["threshold"][start:stop]
        # impurity and sample counts only matter for training and feature importances
        values = np.ascontiguousarray(arrays["value"][start:stop, None, :], dtype=np.float64)
        depth = _max_depth(
            arrays["children_left"][start:stop], arrays["children_right"][start:stop]
        )
        tree = Tree(num_features, np.asarray([num_classes], dtype=np.intp), 1)
        tree.__setstate__(
            {"max_depth": depth, "node_count": count, "nodes": nodes, "values": values}
        )
        trees.append(tree)
        start = stop
    return trees


def _tree_sum(trees: list, x: np.ndarray) -> np.ndarray:
    """Sum of the trees' leaf class fractions for the rows of ``x``, ``(N, K)`` float64."""
    return sum(tree.predict(x).reshape(len(x), -1) for tree in trees)


def _max_depth(left: np.ndarray, right: np.ndarray) -> int:
    """Depth of a tree whose children always follow their parent."""
    depth = np.zeros(left.size, dtype=np.int64)
    for node in range(left.size):  # one pass in index order: parents come first
        if left[node] != -1:
            depth[left[node]] = depth[right[node]] = depth[node] + 1
    return int(depth.max())


# ---------------------------------------------------------------- model files


def write_model(
    path: str | os.PathLike[str],
    spec: dict[str, Any],
    arrays: dict[str, np.ndarray],
    *,
    overwrite: bool = False,
) -> Path:
    """Write the node ``arrays`` plus the JSON ``spec`` as one ``.npz``, atomically.

    Raises:
        OverwriteError: the file exists and ``overwrite`` is False.
    """
    path = check_writable(path, overwrite=overwrite)
    arrays = dict(arrays)
    arrays["spec"] = np.asarray(json.dumps(spec, sort_keys=True))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


def read_model(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The spec and node arrays of a model file (format, version and array names checked).

    Raises:
        ImageIOError: a missing or unreadable file, another format or version, or arrays
            missing (one line naming the file).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
        spec = json.loads(str(arrays.pop("spec")))
    except FileNotFoundError as err:
        raise ImageIOError(f"{path}: no such model file") from err
    except (OSError, ValueError, KeyError) as err:
        raise ImageIOError(f"{path}: not a medseg random-forest model ({err})") from err
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ImageIOError(f"{path}: not a medseg random-forest model (format tag missing)")
    if spec.get("version") != VERSION:
        raise ImageIOError(
            f"{path}: model format version {spec.get('version')}; this medseg reads {VERSION}"
        )
    missing = sorted({*_TREE_KEYS, "node_count"} - set(arrays))
    if missing:
        raise ImageIOError(f"{path}: model file lacks arrays {missing}")
    return spec, arrays
