"""Post-processing of predicted label maps, and choosing it on cross-validation predictions.

* ``keep_largest_component``: per label value, keep only its largest connected component;
  the other components become background (0).
* ``fill_holes``: per label value, background voxels fully enclosed by that label become it
  (voxels of other labels are never overwritten, so a lesion inside an organ stays).
* ``choose_postprocessing``: nnU-Net's rule, per label: keep-largest-component is applied
  when it does not decrease that label's mean Dice over the cross-validation predictions.
  Each label is decided independently (removing components of one label changes no other
  label's Dice). Unlike nnU-Net there is no extra "all foreground as one object" step.
  Hole filling is never chosen automatically; list values under ``"fill_holes"`` in
  ``postprocessing.json`` to apply it.

``RESULTS/postprocessing.json`` holds the decision; ``medseg.inference.predict`` applies it
(``apply_postprocessing``) when present.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cc3d
import numpy as np
from scipy import ndimage

from medseg.errors import ConfigError, DatasetError
from medseg.fileutil import write_json_atomic
from medseg.io import IMAGE_EXTENSIONS, file_ending, read_image
from medseg.metrics.confusion import confusion_counts, dice

POSTPROCESSING_FILE = "postprocessing.json"
_FULL = {2: 8, 3: 26}


def _connectivity(ndim: int, connectivity: int | None) -> int:
    if ndim not in _FULL:
        raise ValueError(f"connected components need a 2D or 3D label map, got {ndim}D")
    return _FULL[ndim] if connectivity is None else int(connectivity)


def keep_largest_component(
    label: np.ndarray, values: Iterable[int], *, connectivity: int | None = None
) -> np.ndarray:
    """Keep, for each value in ``values``, only the largest connected component of that value.

    Args:
        label: ``(*spatial)`` integer label map, 2D or 3D.
        values: label values to process (absent values are skipped).
        connectivity: 4/8 (2D) or 6/18/26 (3D); default full (8 or 26, ``cc3d``'s default).

    Returns:
        A new label map; removed voxels are 0. Ties between equally large components keep one.

    Example:
        >>> keep_largest_component(np.array([[1, 1, 0, 1]]), [1]).tolist()
        [[1, 1, 0, 0]]
    """
    out = np.array(label, copy=True)
    conn = _connectivity(out.ndim, connectivity)
    for value in values:
        mask = out == value
        if not mask.any():
            continue
        largest = cc3d.largest_k(mask, k=1, connectivity=conn, binary_image=True) > 0
        out[mask & ~largest] = 0
    return out


def fill_holes(label: np.ndarray, values: Iterable[int]) -> np.ndarray:
    """Fill background holes enclosed by each value in ``values`` (``scipy`` hole filling,
    face connectivity of the background).

    Args:
        label: ``(*spatial)`` integer label map.
        values: label values whose holes are filled.

    Returns:
        A new label map; only voxels that were 0 change.

    Example:
        >>> ring = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]])
        >>> int(fill_holes(ring, [1])[1, 1])
        1
    """
    out = np.array(label, copy=True)
    for value in values:
        mask = out == value
        if mask.any():
            out[ndimage.binary_fill_holes(mask) & (out == 0)] = value
    return out


def apply_postprocessing(label: np.ndarray, decision: dict[str, Any]) -> np.ndarray:
    """Apply a ``choose_postprocessing`` decision: largest component, then hole filling.

    Args:
        label: ``(*spatial)`` integer label map.
        decision: ``{"keep_largest_component": [values], "fill_holes": [values],
            "connectivity": int | None}`` (missing keys mean nothing to do).

    Returns:
        The post-processed label map (a new array).
    """
    out = keep_largest_component(
        label, decision.get("keep_largest_component", []), connectivity=decision.get("connectivity")
    )
    return fill_holes(out, decision.get("fill_holes", []))


def dice_score(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice ``2|P & R| / (|P| + |R|)`` of two masks (:func:`medseg.metrics.dice` of their
    confusion counts); NaN when both are empty, as in ``docs/evaluation.md``.

    Example:
        >>> dice_score(np.array([1, 1, 0, 0], bool), np.array([1, 0, 0, 0], bool))
        0.6666666666666666
    """
    return dice(confusion_counts(pred, ref))


def _mean_dice(scores: Sequence[float]) -> float | None:
    """Mean over the cases where the label is in the prediction or the reference (Dice is
    defined); None when it is in none of them."""
    defined = [s for s in scores if not math.isnan(s)]
    return float(np.mean(defined)) if defined else None


def _paired_files(pred_dir: Path, ref_dir: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for path in sorted(pred_dir.iterdir()):
        if path.name.startswith(".") or file_ending(path) not in IMAGE_EXTENSIONS:
            continue
        ref = ref_dir / path.name
        if not ref.exists():
            raise DatasetError(
                f"{path}: no reference {ref}; predictions and references must share file names"
            )
        pairs.append((path, ref))
    if not pairs:
        raise DatasetError(f"{pred_dir}: no predicted label maps found")
    return pairs


def choose_postprocessing(
    pred_dir: str | os.PathLike[str],
    ref_dir: str | os.PathLike[str],
    labels: Sequence[int],
    *,
    connectivity: int | None = None,
    out_path: str | os.PathLike[str] | None = None,
    ignore_label: int | None = None,
) -> dict[str, Any]:
    """Decide per label whether keep-largest-component helps, on cross-validation predictions.

    For every label, the mean Dice over the cases (``dice_score``; a case where prediction
    and reference are both empty has no Dice and is left out) is computed before and after
    keeping the label's largest component; the step is chosen when the mean does not
    decrease (nnU-Net's rule). A label absent from every case is not chosen (no evidence).

    Args:
        pred_dir: folder of predicted label maps (e.g. ``RESULTS/3d_fullres/fold_0/validation``
            or all folds' validation predictions gathered in one folder).
        ref_dir: folder of reference label maps with the same file names.
        labels: foreground label values to decide on.
        connectivity: as in ``keep_largest_component``.
        out_path: if given, the decision is written there as JSON (atomically), normally
            ``RESULTS/postprocessing.json``.
        ignore_label: reference value of unannotated voxels (sparse labels): they count in
            no Dice, so a prediction there is neither right nor wrong.

    Returns:
        ``{"keep_largest_component": [chosen values], "fill_holes": [], "connectivity": c,
        "num_cases": n, "dice": {"<value>": {"before": mean, "after": mean}}}`` (means
        None for a label absent from every case).

    Raises:
        DatasetError: no predictions, a prediction without reference, or mismatched shapes.
    """
    pairs = _paired_files(Path(pred_dir), Path(ref_dir))
    values = [int(v) for v in labels]
    before: dict[int, list[float]] = {v: [] for v in values}
    after: dict[int, list[float]] = {v: [] for v in values}
    for pred_path, ref_path in pairs:
        pred, ref = read_image(pred_path).array, read_image(ref_path).array
        if pred.shape != ref.shape:
            raise DatasetError(
                f"{pred_path}: shape {pred.shape} differs from the reference {ref.shape}"
            )
        annotated = np.ones(ref.shape, bool) if ignore_label is None else ref != ignore_label
        for value in values:
            target = (ref == value) & annotated
            before[value].append(dice_score((pred == value) & annotated, target))
            processed = keep_largest_component(pred, [value], connectivity=connectivity)
            after[value].append(dice_score((processed == value) & annotated, target))
    means = {
        str(v): {"before": _mean_dice(before[v]), "after": _mean_dice(after[v])} for v in values
    }
    chosen = [v for v in values if _not_worse(means[str(v)]["before"], means[str(v)]["after"])]
    decision = {
        "keep_largest_component": chosen,
        "fill_holes": [],
        "connectivity": connectivity,
        "num_cases": len(pairs),
        "dice": means,
    }
    if out_path is not None:
        write_json_atomic(out_path, decision)
    return decision


def _not_worse(before: float | None, after: float | None) -> bool:
    return before is not None and after is not None and after >= before


def load_postprocessing(results: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``RESULTS/postprocessing.json`` as a dict, or None when there is none.

    Raises:
        ConfigError: the file is not valid JSON or lists non-integer values.
    """
    path = Path(results) / POSTPROCESSING_FILE
    if not path.exists():
        return None
    try:
        decision = json.loads(path.read_text(encoding="utf-8"))
        for key in ("keep_largest_component", "fill_holes"):
            decision[key] = [int(v) for v in decision.get(key, [])]
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as err:
        raise ConfigError(
            f"{path}: not a valid post-processing file ({err}); delete it or fix it"
        ) from err
    return decision


# ---------------------------------------------------------------- dense CRF as a candidate


def _case_files(folder: Path) -> dict[str, Path]:
    """Case id -> image file of a folder of label maps."""
    files = {}
    for path in sorted(folder.iterdir()):
        ending = file_ending(path)
        if not path.name.startswith(".") and ending in IMAGE_EXTENSIONS:
            files[path.name[: -len(ending)]] = path
    return files


def _crf_case_dice(
    npz_path: Path, image: np.ndarray, ref: np.ndarray, values: Sequence[int], settings: dict
) -> tuple[list[float], list[float]]:
    """Dice per value of the argmax without and with the CRF, for one case."""
    from medseg.inference.crf import dense_crf  # torch: only when the CRF is tried

    with np.load(npz_path, allow_pickle=False) as data:
        probs, label_values = data["probabilities"], data["label_values"]
        spacing = tuple(float(s) for s in data["spacing"])[-(probs.ndim - 1) :]
    if probs.shape[1:] != ref.shape:
        raise DatasetError(f"{npz_path}: probabilities {probs.shape} for a reference {ref.shape}")
    before = label_values[probs.argmax(0)]
    after = label_values[dense_crf(probs, image, spacing=spacing, **settings).argmax(0)]
    return (
        [dice_score(before == v, ref == v) for v in values],
        [dice_score(after == v, ref == v) for v in values],
    )


def choose_crf(
    prob_dir: str | os.PathLike[str],
    image_dir: str | os.PathLike[str],
    ref_dir: str | os.PathLike[str],
    labels: Sequence[int],
    *,
    settings: dict[str, Any] | None = None,
    out_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Decide whether a dense CRF (``medseg.inference.crf.dense_crf``) helps, on
    cross-validation softmax outputs.

    The CRF is chosen when the mean over ``labels`` of the mean Dice (as in
    :func:`choose_postprocessing`) is strictly higher with it (it costs time, so a tie
    keeps the plain argmax).

    Args:
        prob_dir: ``CASE.npz`` files from ``predict(..., save_probabilities=True)``.
        image_dir: the images as ``CASE_0000<ending>`` (one file per channel).
        ref_dir: reference label maps ``CASE<ending>``.
        labels: foreground label values.
        settings: keyword options of ``dense_crf`` (default: its defaults).
        out_path: if given, the decision is merged into this JSON file (normally
            ``RESULTS/postprocessing.json``; run :func:`choose_postprocessing` first, which
            rewrites the file) under ``"crf"`` (the settings, or None) and ``"crf_dice"``.

    Returns:
        ``{"crf": settings or None, "crf_dice": {"<value>": {"before", "after"}},
        "crf_cases": n}``.

    Raises:
        DatasetError: no probability files, or a case without image or reference.
    """
    from medseg.inference.inputs import find_input_cases

    settings = dict(settings or {})
    npz_files = sorted(Path(prob_dir).glob("*.npz"))
    if not npz_files:
        raise DatasetError(
            f"{prob_dir}: no CASE.npz probability files (predict --save-probabilities)"
        )
    images = {case.case_id: case for case in find_input_cases(image_dir)}
    refs = _case_files(Path(ref_dir))
    values = [int(v) for v in labels]
    before: dict[int, list[float]] = {v: [] for v in values}
    after: dict[int, list[float]] = {v: [] for v in values}
    for npz_path in npz_files:
        case_id = npz_path.stem
        if case_id not in images or case_id not in refs:
            raise DatasetError(f"{npz_path}: no image in {image_dir} or reference in {ref_dir}")
        image = np.concatenate(
            [read_image(p).channels_first() for p in images[case_id].image_paths]
        ).astype(np.float32)
        ref = read_image(refs[case_id]).array
        case_before, case_after = _crf_case_dice(npz_path, image, ref, values, settings)
        for v, b, a in zip(values, case_before, case_after, strict=True):
            before[v].append(b)
            after[v].append(a)
    means = {
        str(v): {"before": _mean_dice(before[v]), "after": _mean_dice(after[v])} for v in values
    }
    defined = [m for m in means.values() if m["before"] is not None and m["after"] is not None]
    helps = bool(defined) and np.mean([m["after"] for m in defined]) > np.mean(
        [m["before"] for m in defined]
    )
    decision = {"crf": settings if helps else None, "crf_dice": means, "crf_cases": len(npz_files)}
    if out_path is not None:
        path = Path(out_path)
        stored = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        write_json_atomic(path, {**stored, **decision})
    return decision
