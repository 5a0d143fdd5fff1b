"""Choosing the watershed's marker settings on the held-out cases after training.

How far the predicted distance map must rise to seed its own instance (``h``) and how far
apart two seeds must be (``min_distance``) depend on the objects: compact phantom cells split
well at ``h = 0.2``, while irregular EM cells need ``h`` near 0.5-0.7 or they over-split.
After a watershed run, :func:`tune_watershed` predicts the validation cases once with the
best checkpoint, scores a small grid of settings by mean panoptic quality and writes the best
to ``RUN/watershed.json``, which :func:`medseg.detect.predict.load_detector` applies.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

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


def tune_watershed(
    model: nn.Module, config: DetectConfig, samples: list[DetectionSample], run_dir: Path
) -> dict[str, float] | None:
    """Grid-search ``h`` (:data:`H_GRID`) and ``min_distance`` (the config's and twice it)
    by mean validation PQ; writes and returns ``{"h", "min_distance", "val_pq"}`` (None
    without validation cases)."""
    if not samples:
        return None
    maps = [watershed_maps(model, s.image) for s in samples]
    best: dict[str, float] | None = None
    for h, distance in itertools.product(H_GRID, (config.min_distance, 2 * config.min_distance)):
        trial = replace(config, h=h, min_distance=distance)
        pq = np.mean(
            [
                panoptic_quality(instances_from_maps(trial, *m), s.instances)["PQ"]
                for m, s in zip(maps, samples, strict=True)
            ]
        )
        if best is None or pq > best["val_pq"]:
            best = {"h": h, "min_distance": distance, "val_pq": float(pq)}
    write_json_atomic(run_dir / TUNED_FILE, best)
    return best


def apply_tuned(config: DetectConfig, run_dir: Path) -> DetectConfig:
    """``config`` with the settings of ``run_dir/watershed.json`` when it exists.

    Raises:
        ConfigError: the file is not such a JSON object.
    """
    path = run_dir / TUNED_FILE
    if config.head != "watershed" or not path.is_file():
        return config
    try:
        tuned = json.loads(path.read_text(encoding="utf-8"))
        h, distance = float(tuned["h"]), int(tuned["min_distance"])
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: not a watershed settings file ({err})") from None
    if not (np.isfinite(h) and h >= 0 and distance > 0):
        raise ConfigError(f"{path}: need h >= 0 and min_distance > 0, got {h}, {distance}")
    return replace(config, h=h, min_distance=distance)
