"""Choosing the watershed's instance settings on the held-out cases after training.

How far the predicted distance map must rise to seed its own instance (``h``) and how far
apart two seeds must be (``min_distance``) depend on the objects: compact phantom cells split
well at ``h = 0.2``, while irregular EM cells need ``h`` near 0.5-0.7 or they over-split.
The ``boundary`` method (:func:`medseg.detect.instances.boundary_watershed_instances`) has
its own ``h`` and a merging threshold. After a watershed run, :func:`tune_watershed` predicts
the validation cases once with the best checkpoint, scores a small grid of settings of the
configured method (both methods with ``instance_method="auto"``) by mean panoptic quality
and writes the best to ``RUN/watershed.json`` (with the best of each method under
``"methods"``), which :func:`medseg.detect.predict.load_detector` applies.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from medseg.detect.config import DetectConfig
from medseg.detect.data import DetectionSample
from medseg.detect.heads import instances_from_maps, watershed_maps
from medseg.errors import ConfigError
from medseg.fileutil import write_json_atomic
from medseg.metrics.detection import panoptic_quality

#: The file holding the tuned settings in a run folder.
TUNED_FILE = "watershed.json"
H_GRID = (0.0, 0.1, 0.2, 0.35, 0.5, 0.7)
#: The ``boundary`` method's grid: marker dynamic x merging threshold.
BOUNDARY_H_GRID = (0.1, 0.2, 0.3)
MERGE_GRID = (0.6, 0.65, 0.7, 0.75)


def label_instances(
    config: DetectConfig, foreground: np.ndarray, distance: np.ndarray
) -> np.ndarray:
    """The instance label map of a watershed run's maps with the config's method and
    settings (``auto`` before tuning: ``distance``)."""
    return instances_from_maps(config, foreground, distance)


def candidate_settings(config: DetectConfig) -> list[dict[str, Any]]:
    """The settings :func:`tune_watershed` tries for the config's ``instance_method``."""
    methods = (
        ("distance", "boundary") if config.instance_method == "auto" else (config.instance_method,)
    )
    out: list[dict[str, Any]] = []
    if "distance" in methods:
        for h, distance in itertools.product(
            H_GRID, (config.min_distance, 2 * config.min_distance)
        ):
            out.append({"method": "distance", "h": h, "min_distance": distance})
    if "boundary" in methods:
        for h, merge in itertools.product(BOUNDARY_H_GRID, MERGE_GRID):
            out.append(
                {
                    "method": "boundary",
                    "h": h,
                    "min_distance": config.min_distance,
                    "merge_threshold": merge,
                }
            )
    return out


def tune_watershed(
    model: nn.Module, config: DetectConfig, samples: list[DetectionSample], run_dir: Path
) -> dict[str, Any] | None:
    """Grid-search the settings of :func:`candidate_settings` by mean validation PQ; writes
    and returns ``{"method", "h", "min_distance", ["merge_threshold"], "val_pq", "methods"}``
    (None without validation cases)."""
    if not samples:
        return None
    maps = [watershed_maps(model, s.image) for s in samples]
    truths = [s.instances for s in samples]
    return tune_on_maps(config, maps, truths, run_dir)


def tune_on_maps(
    config: DetectConfig,
    maps: list[tuple[np.ndarray, np.ndarray]],
    truths: list[np.ndarray],
    run_dir: Path | None = None,
) -> dict[str, Any]:
    """:func:`tune_watershed` on precomputed ``(foreground, distance)`` maps and their
    instance maps; writes ``run_dir/watershed.json`` when ``run_dir`` is given."""
    per_method: dict[str, dict[str, Any]] = {}
    for setting in candidate_settings(config):
        trial = apply_settings(config, setting)
        pq = float(
            np.mean(
                [
                    panoptic_quality(label_instances(trial, *m), t)["PQ"]
                    for m, t in zip(maps, truths, strict=True)
                ]
            )
        )
        method = setting["method"]
        if method not in per_method or pq > per_method[method]["val_pq"]:
            per_method[method] = {**setting, "val_pq": pq}
    best = max(per_method.values(), key=lambda s: s["val_pq"])
    result = {**best, "methods": per_method}
    if run_dir is not None:
        write_json_atomic(run_dir / TUNED_FILE, result)
    return result


def apply_settings(config: DetectConfig, setting: dict[str, Any]) -> DetectConfig:
    """``config`` with a tuned setting (``method``, ``h``, ``min_distance``,
    ``merge_threshold``; absent keys keep the config's values)."""
    return replace(
        config,
        instance_method=setting.get("method", config.instance_method),
        h=float(setting.get("h", config.h)),
        min_distance=int(setting.get("min_distance", config.min_distance)),
        merge_threshold=float(setting.get("merge_threshold", config.merge_threshold)),
    )


def apply_tuned(config: DetectConfig, run_dir: Path) -> DetectConfig:
    """``config`` with the settings of ``run_dir/watershed.json`` when it exists (files
    without ``method`` are from the ``distance`` method).

    Raises:
        ConfigError: the file is not such a JSON object.
    """
    path = run_dir / TUNED_FILE
    if config.head != "watershed" or not path.is_file():
        return config
    try:
        tuned = json.loads(path.read_text(encoding="utf-8"))
        setting = {
            "method": str(tuned.get("method", "distance")),
            "h": float(tuned["h"]),
            "min_distance": int(tuned["min_distance"]),
            "merge_threshold": float(tuned.get("merge_threshold", config.merge_threshold)),
        }
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ConfigError(f"{path}: not a watershed settings file ({err})") from None
    h, distance, merge = setting["h"], setting["min_distance"], setting["merge_threshold"]
    if not (np.isfinite(h) and h >= 0 and distance > 0 and 0 <= merge <= 1):
        raise ConfigError(
            f"{path}: need h >= 0, min_distance > 0, 0 <= merge_threshold <= 1, got {h}, "
            f"{distance}, {merge}"
        )
    if setting["method"] not in ("distance", "boundary"):
        raise ConfigError(f"{path}: method must be distance or boundary, got {setting['method']!r}")
    return apply_settings(config, setting)
