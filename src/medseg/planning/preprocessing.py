"""``preprocess``: turn a dataset into memory-mappable training arrays for each configuration.

For each case: read, crop to the non-zero region, apply the plan's intensity corrections (N4,
histogram matching; off by default), resample to the plan's spacing, normalise, and store in
``RESULTS/preprocessed/<config>/`` (``<data_configuration>`` for a configuration that shares
another's data, as ``3d_cascade_fullres`` shares ``3d_fullres``'s):

the case store format of ``medseg.data.loader`` (``<case>.npy`` image, ``<case>_seg.npy``
label, ``<case>.json`` with ``class_locations``) plus, in the JSON, the geometry needed to undo
it all (original shape/spacing/origin/direction, crop box, shape after crop).

The stored label holds class indices ``0..K-1``, not the values of ``dataset.json``: index
``k`` is the ``k``-th smallest declared value (``class_values``), so labels ``{0, 1, 2, 10}``
or ``{0, 40000, 65536}`` train like ``{0, 1, 2, 3}``; ``predict`` maps indices back to the
values. Voxels of the ``ignore`` label (``plan.ignore_label``, sparse annotations) are stored
as -1 (``medseg.data.preprocess.IGNORE_INDEX``). Input that cannot be trained on is refused
with the message ``medseg data check`` gives: label values that are negative or not declared,
NaN/inf voxels, two cases with one name, and (from ``read_image``) a header over the memory
budget or with an unusable spacing.

``executor="ray"`` runs each case as a Ray task (``medseg.data.executor``) with the same
output files; a case that fails twice is listed in ``<store>/failures.csv`` while the others
go on (then ``DatasetError``).

Idempotent: ``manifest.json`` records each case's source files (size, mtime) and the plan;
a second run redoes only cases whose inputs or plan changed, and drops cases that vanished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.check import label_problem, nonfinite_problems
from medseg.data.dataset import Case, Dataset, duplicate_cases, load_dataset, read_case
from medseg.data.executor import (
    FAILURES_CSV,
    elapsed,
    run_cases,
    summary_line,
    write_failures,
)
from medseg.data.intensity_correction import correct_intensities
from medseg.data.loader import write_case
from medseg.data.parallel import map_cases
from medseg.data.preprocess import (
    class_values,
    labels_to_indices,
    new_shape_for_spacing,
    nonzero_box,
    normalize,
    resample_image,
    resample_label,
    separate_axis,
)
from medseg.errors import ConfigError, DatasetError
from medseg.fileutil import remove_stale_temporaries, write_json_atomic
from medseg.planning.plan import Plan, Plans
from medseg.transforms import stain_normalizer_from_config

MANIFEST = "manifest.json"
log = logging.getLogger(__name__)


def case_target_spacing(plan: Plan, spacing: tuple[float, ...]) -> tuple[float, ...]:
    """The spacing a case is resampled to: the plan's, except that ``2d`` on 3D data keeps
    each case's own slice spacing on axis 0 (slices are never interpolated into each other)."""
    if plan.spatial_dims == 2 and len(spacing) == 3:
        return (spacing[0], *plan.spacing[-2:])
    return tuple(plan.spacing[-len(spacing) :])


def preprocess_arrays(
    image: np.ndarray, label: np.ndarray | None, spacing: tuple[float, ...], plan: Plan
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Crop, correct intensities (the plan's N4 / histogram matching, if any), resample and
    normalise one case: ``medseg preprocess`` and ``medseg predict`` both call it.

    Args:
        image: ``(C, *spatial)``.
        label: ``(*spatial)`` label values (those of ``plan.labels``) or None (inference).
        spacing: the case's spacing (mm, array order).

    Returns:
        ``(image, label, properties)``: the label as class indices (int8 up to 128 classes;
        index ``k`` is the ``k``-th smallest value of ``plan.labels``, -1 for the ``ignore``
        label); properties hold what ``undo`` needs.

    Raises:
        DatasetError: the label holds a value that is not among ``plan.labels``.
    """
    box = nonzero_box(image)
    image = image[(slice(None), *box.slices)]
    label = label[box.slices] if label is not None else None
    if plan.stain_normalizer:  # H&E colour to the reference stain, at the original resolution
        image = stain_normalizer_from_config(plan.stain_normalizer).normalize_array(image)
    # N4 / histogram matching (off by default): at the original spacing, where the bias field
    # is a smooth physical field, before resampling blurs it; after the crop, which they
    # cannot move (the box is taken first) and which makes N4 cheaper
    image = correct_intensities(
        image,
        spacing,
        n4_channels=plan.n4_channels,
        histogram_landmarks=plan.histogram_landmarks,
    )
    target = case_target_spacing(plan, spacing)
    shape = new_shape_for_spacing(image.shape[1:], spacing, target)
    # nnU-Net decides "separate z" from the source spacing (or the target's, if that is the
    # anisotropic one)
    axis = separate_axis(spacing)
    if axis is None:
        axis = separate_axis(target)
    image = resample_image(image, shape, separate_z=axis)
    image = normalize(image, plan.normalization, plan.intensity)
    if label is not None:
        indices = labels_to_indices(
            label, class_values(plan.labels), ignore_value=plan.ignore_label
        )
        label = resample_label(indices, shape, separate_z=axis)
    props = {
        "crop_start": list(box.start),
        "crop_stop": list(box.stop),
        "shape_after_crop": [int(b - a) for a, b in zip(box.start, box.stop, strict=True)],
        "shape_after_resampling": list(shape),
        "spacing_after_resampling": list(target),
        "separate_z": axis,
    }
    return image, label, props


def _fingerprint_sources(case: Case) -> list[list[Any]]:
    paths = [*case.image_paths, *([case.label_path] if case.label_path else [])]
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def preprocessing_hash(plan: Plan) -> str:
    """What the case store of ``plan`` depends on (plans with equal hashes can share one)."""
    keys = ("spacing", "normalization", "intensity", "spatial_dims", "labels")
    fields = {k: getattr(plan, k) for k in keys} | {"label_store": "class_indices"}
    # only when set, so stores preprocessed before these options existed stay valid
    for key in ("n4_channels", "histogram_landmarks", "stain_normalizer"):
        if getattr(plan, key):
            fields[key] = getattr(plan, key)
    blob = json.dumps(fields, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _process_case(
    case: Case, *, plan: Plan, out_dir: Path, num_channels: int, declared: frozenset[int] | None
) -> str:
    image, label = read_case(case, num_channels=num_channels)
    problems = nonfinite_problems(case.image_paths, image)
    if problems:
        raise DatasetError(
            f"{problems[0]}; replace them (e.g. with 0) in the image, then preprocess again"
        )
    problem = label_problem(label.array, declared) if label is not None else None
    if problem is not None:
        raise DatasetError(f"{case.label_path}: {problem}")
    array, seg, props = preprocess_arrays(
        image.channels_first(), label.array if label else None, image.spacing, plan
    )
    props.update(
        case_id=case.case_id,
        original_shape=list(image.spatial_shape),
        original_spacing=list(image.spacing),
        origin=list(image.origin),
        direction=list(image.direction),
    )
    write_case(out_dir, case.case_id, array, seg, properties=props, overwrite=True)
    return case.case_id


def preprocess(
    results: str | os.PathLike[str],
    *,
    configurations: list[str] | None = None,
    jobs: int | None = None,
    progress: bool = True,
    executor: str = "local",
    address: str | None = None,
) -> dict[str, dict[str, int]]:
    """Preprocess the planned dataset into ``RESULTS/preprocessed/<config>/``.

    A configuration with ``data_configuration`` (``3d_cascade_fullres``) shares that
    configuration's store, ``preprocessed/<data_configuration>``: it is written once.

    Args:
        results: the results folder holding ``plans.json``.
        configurations: which to do (default: every planned one).

    Returns:
        Per configuration: ``{"processed": n, "skipped": n, "removed": n}``.
    """
    results = Path(results)
    plans = Plans.from_json(results / "plans.json")
    dataset = load_dataset(plans.dataset_path)
    duplicates = duplicate_cases(dataset.cases)
    if duplicates:  # they would overwrite each other in the case store
        path, message = duplicates[0]
        raise DatasetError(f"{path}: {message}")
    summary: dict[str, dict[str, int]] = {}
    done: set[str] = set()
    for name in configurations or list(plans.configurations):
        plan = plans[name]
        store = plan.store_configuration
        if (
            store != name
            and store in plans.configurations
            and preprocessing_hash(plans[store]) != preprocessing_hash(plan)
        ):
            raise ConfigError(
                f"{name} shares the preprocessed data of {store} (data_configuration) but their "
                "spacing or normalisation differ in plans.json; make them equal or unset "
                "data_configuration"
            )
        if store in done:  # a configuration sharing a store already done in this call
            summary[name] = {"processed": 0, "skipped": len(dataset.cases), "removed": 0}
            continue
        done.add(store)
        summary[name] = _preprocess_store(
            results / "preprocessed" / store,
            plan,
            dataset,
            jobs=jobs,
            progress=progress,
            desc=f"preprocess {store}",
            executor=executor,
            address=address,
        )
    return summary


def _preprocess_store(
    out_dir: Path,
    plan: Plan,
    dataset: Dataset,
    *,
    jobs: int | None,
    progress: bool,
    desc: str,
    executor: str = "local",
    address: str | None = None,
) -> dict[str, int]:
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)  # D: left by a killed run
    manifest_path = out_dir / MANIFEST
    manifest: dict[str, Any] = {}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    plan_hash = preprocessing_hash(plan)
    if manifest.get("plan_hash") != plan_hash:
        manifest = {"plan_hash": plan_hash, "cases": {}}
    todo = [
        c
        for c in dataset.cases
        if manifest["cases"].get(c.case_id) != _fingerprint_sources(c)
        or not (out_dir / f"{c.case_id}.npy").exists()
    ]
    declared = frozenset(dataset.label_values) if dataset.layout != "folder2d" else None
    work = partial(
        _process_case,
        plan=plan,
        out_dir=out_dir,
        num_channels=dataset.num_channels,
        declared=declared,
    )
    failed: list[tuple[str, str, int]] = []
    start = time.perf_counter()
    if executor == "local" and address is None:
        map_cases(work, todo, jobs=jobs, desc=desc, progress=progress)
    else:  # D: a failed case (retried once) is reported in failures.csv, the others go on
        for outcome in run_cases(
            work,
            todo,
            executor=executor,
            address=address,
            jobs=jobs,
            desc=desc,
            progress=progress,
            ordered=False,
        ):
            if not outcome.ok:
                failed.append((todo[outcome.index].case_id, str(outcome.error), outcome.attempts))
        write_failures(out_dir, sorted(failed))
        done, skipped = len(todo) - len(failed), len(dataset.cases) - len(todo)
        log.info("%s: %s", desc, summary_line(done, len(failed), skipped, elapsed(start)))
    current = {c.case_id for c in dataset.cases}
    removed = sorted(set(manifest["cases"]) - current)
    for case_id in removed:
        for suffix in (".npy", "_seg.npy", ".json"):
            (out_dir / f"{case_id}{suffix}").unlink(missing_ok=True)
    failed_ids = {case_id for case_id, _, _ in failed}
    manifest["cases"] = {
        c.case_id: _fingerprint_sources(c) for c in dataset.cases if c.case_id not in failed_ids
    }
    write_json_atomic(manifest_path, manifest)
    if failed:
        raise DatasetError(
            f"{out_dir / FAILURES_CSV}: {len(failed)} of {len(todo)} case(s) failed (first: "
            f"{failed[0][0]}: {failed[0][1]}); the others were preprocessed, a second run "
            "redoes only the failed ones"
        )
    return {
        "processed": len(todo),
        "skipped": len(dataset.cases) - len(todo),
        "removed": len(removed),
    }
