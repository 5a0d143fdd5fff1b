"""``measure_folder``: volumes, surfaces and connected components of a folder of masks.

The clinical use of a segmentation: no reference, only the numbers a report needs. Writes one
CSV row per case and label (``MEASURES_COLUMNS_3D`` or ``_2D``) and, optionally, one row per
connected component; see ``medseg.metrics.measure`` for the definitions and units.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.labels import labels_from_meta
from medseg.errors import ConfigError, DatasetError, GeometryError, ImageIOError, listing
from medseg.evaluation.cases import case_files, label_array
from medseg.evaluation.pool import run_cases, worker_count
from medseg.fileutil import check_writable, csv_safe, write_text_atomic
from medseg.io import grid_mismatches, read_geometry, read_image
from medseg.metrics import label_regions
from medseg.metrics.case import Labels
from medseg.metrics.measure import (
    CONNECTIVITIES,
    Connectivity,
    Measurements,
    component_columns,
    empty_label_row,
    label_columns,
    measure_label_map,
)

logger = logging.getLogger(__name__)

#: Suffix of a case's first image channel in nnU-Net layout (``CASE_0000.nii.gz``).
IMAGE_SUFFIX = "_0000"


@dataclass(frozen=True)
class MeasureTask:
    """One case to measure: its mask and, optionally, the image it must share a grid with."""

    case: str
    mask_path: Path
    image_path: Path | None = None


@dataclass(frozen=True)
class CaseMeasurements:
    """What a worker returns: the case, its dimensionality and its measurements."""

    case: str
    spatial_dims: int
    measurements: Measurements


def measure_folder(
    pred_dir: str | os.PathLike[str],
    out_csv: str | os.PathLike[str],
    *,
    components_csv: str | os.PathLike[str] | None = None,
    images: str | os.PathLike[str] | None = None,
    labels: Labels | None = None,
    connectivity: Connectivity = "full",
    jobs: int | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
    executor: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Measure every label map of ``pred_dir``; no reference needed.

    Args:
        pred_dir: folder of label maps (any ``medseg.io`` format, 2D or 3D; not mixed).
        out_csv: the per case and label CSV: ``case, label, name, voxels`` then
            ``volume_ml, surface_mm2, n_components, largest_component_ml`` (3D) or
            ``area_mm2, perimeter_mm, n_components, largest_component_mm2`` (2D).
        components_csv: optional per-component CSV: ``case, label, name, component,
            voxels, volume_ml`` (``area_mm2``), world centroid ``centroid_x_mm ...`` and the
            bounding box ``bbox_min_<axis>``/``bbox_max_<axis>`` (array axes, inclusive).
        images: folder of the cases' images (``CASE_0000.<ext>``); when given, each mask
            must share its image's grid (shape, spacing, origin, direction).
        labels: labels/regions (``medseg.metrics.label_regions``); default every non-zero
            value found in any mask (a case lacking one gets a row of zeros).
        connectivity: ``"full"`` (default; 26 neighbours in 3D, 8 in 2D) or ``"face"``.
        jobs, executor, address: worker processes (default: the CPUs; 1: this process), or
            ``"ray"`` (and a Ray address): each case a Ray task.
        overwrite, show_progress: replace existing outputs; draw a progress bar (terminal).

    Returns:
        ``{"n_cases", "spatial_dims", "labels", "n_rows", "n_components", "measures_csv",
        "components_csv"}``.

    Raises:
        OverwriteError: an output exists and ``overwrite`` is False (checked before work).
        GeometryError: a mask and its image differ in grid (names both files).
        DatasetError: no masks, a missing image, or 2D and 3D masks mixed.
        ImageIOError, ConfigError: unreadable files, bad options.
    """
    out_csv = check_writable(out_csv, overwrite=overwrite)
    if components_csv is not None:
        components_csv = check_writable(components_csv, overwrite=overwrite)
    if connectivity not in CONNECTIVITIES:
        raise ConfigError(
            f"connectivity must be one of {', '.join(CONNECTIVITIES)}, got {connectivity!r}"
        )
    regions = label_regions(labels) if labels is not None else None
    tasks = _tasks(Path(pred_dir), None if images is None else Path(images))
    worker = functools.partial(measure_case, labels=regions, connectivity=connectivity)
    where = {"executor": executor, "address": address, "show_progress": show_progress}
    results = run_cases(worker, tasks, jobs=worker_count(jobs, len(tasks)), desc="measure", **where)
    spatial_dims = _spatial_dims(results, tasks)
    names = list(regions) if regions else _found_labels(results)
    label_names = _label_names(Path(pred_dir), regions)
    rows, components = _rows(results, names, spatial_dims)
    for row in (*rows, *components):
        row["name"] = label_names.get(row["label"], "")
    write_text_atomic(out_csv, _csv(rows, ("case", "label", "name", *label_columns(spatial_dims))))
    if components_csv is not None:
        header = ("case", "label", "name", *component_columns(spatial_dims))
        write_text_atomic(components_csv, _csv(components, header))
    logger.info("measured %d case(s); wrote %s", len(tasks), out_csv)
    return {
        "n_cases": len(tasks),
        "spatial_dims": spatial_dims,
        "labels": names,
        "n_rows": len(rows),
        "n_components": len(components),
        "measures_csv": str(out_csv),
        "components_csv": None if components_csv is None else str(components_csv),
    }


def _tasks(pred_dir: Path, images: Path | None) -> list[MeasureTask]:
    masks = case_files(pred_dir)
    if not masks:
        raise DatasetError(f"{pred_dir}: no label maps to measure")
    if images is None:
        return [MeasureTask(case, path) for case, path in masks.items()]
    image_files = case_files(images)
    missing = [case for case in masks if case + IMAGE_SUFFIX not in image_files]
    if missing:
        raise DatasetError(
            f"{images}: no image {listing([c + IMAGE_SUFFIX for c in missing])} for the masks "
            f"of {pred_dir}; give the folder of the cases' images (CASE{IMAGE_SUFFIX}.<ext>)"
        )
    return [
        MeasureTask(case, path, image_files[case + IMAGE_SUFFIX]) for case, path in masks.items()
    ]


def measure_case(
    task: MeasureTask,
    *,
    labels: dict[str, tuple[int, ...]] | None,
    connectivity: Connectivity,
) -> CaseMeasurements:
    """Read one mask (runs in a worker process), check it against its image, measure it.

    Raises:
        GeometryError: the mask and its image differ in shape, spacing, origin or direction
            (the world centroids would be wrong); the message names both files.
        ImageIOError: multi-channel or non-integer mask.
    """
    image = read_image(task.mask_path)
    if image.has_channels:
        raise ImageIOError(f"{task.mask_path}: has {image.num_channels} channels; a mask has one")
    if task.image_path is not None:
        shape, geometry = read_geometry(task.image_path)
        problems = grid_mismatches(image, geometry.with_array(_placeholder(shape)))
        if problems:
            raise GeometryError(
                f"case '{task.case}': mask {task.mask_path} and image {task.image_path} differ "
                f"in {'; '.join(problems)}. Resample the mask onto the image grid."
            )
    measurements = measure_label_map(
        label_array(image, task.mask_path),
        image.spacing,
        origin=image.origin,
        direction=image.direction,
        labels=labels,
        connectivity=connectivity,
    )
    return CaseMeasurements(task.case, image.spatial_dims, measurements)


def _placeholder(shape: tuple[int, ...]) -> np.ndarray:
    """A zero-stride array of ``shape`` (no memory) so ``grid_mismatches`` sees the shape."""
    return np.broadcast_to(np.zeros((), np.uint8), shape)


def _spatial_dims(results: Sequence[CaseMeasurements], tasks: Sequence[MeasureTask]) -> int:
    dims = {result.spatial_dims for result in results}
    if len(dims) > 1:
        by_dim = {r.spatial_dims: t.mask_path for r, t in zip(results, tasks, strict=True)}
        raise DatasetError(
            f"masks mix 2D and 3D ({by_dim[2]} is 2D, {by_dim[3]} is 3D); areas and volumes "
            "cannot share one table: measure them in separate folders"
        )
    return dims.pop()


def _found_labels(results: Sequence[CaseMeasurements]) -> list[str]:
    found = {row["label"] for r in results for row in r.measurements.labels}
    return sorted(found, key=int)


def _rows(
    results: Sequence[CaseMeasurements], names: Sequence[str], spatial_dims: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Label rows (one per case and label, zeros for an absent label) and component rows."""
    rows, components = [], []
    for result in results:
        by_label = {row["label"]: row for row in result.measurements.labels}
        for name in names:
            row = by_label.get(name) or {"label": name, **empty_label_row(spatial_dims)}
            rows.append({"case": result.case, **row})
        components.extend({"case": result.case, **c} for c in result.measurements.components)
    return rows, components


def _label_names(pred_dir: Path, regions: dict[str, tuple[int, ...]] | None) -> dict[str, str]:
    """``{label column value: dataset.json name}`` from ``pred_dir`` or its parent folder."""
    for folder in (pred_dir, pred_dir.parent):
        meta_path = folder / "dataset.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise DatasetError(f"{meta_path}: not valid JSON ({err})") from err
            if not isinstance(meta, dict) or "labels" not in meta:
                return {}
            declared = labels_from_meta(meta, meta_path)
            by_value = {str(v): n for n, v in declared.items() if isinstance(v, int)}
            # a region named by the user keeps its name; "1+2" gets "a+b"
            names = {}
            for key, values in (regions or {k: (int(k),) for k in by_value}).items():
                if all(str(v) in by_value for v in values) and key == "+".join(map(str, values)):
                    names[key] = "+".join(by_value[str(v)] for v in values)
            return names
    return {}


def _csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[column]) for column in columns])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return str(csv_safe(value))
    if isinstance(value, int):
        return str(value)
    return "nan" if math.isnan(value) else repr(float(value))
