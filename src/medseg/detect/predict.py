"""Applying a trained detector: boxes and instance label maps of new images.

``predict_detections`` gives boxes ``(N, 2D)`` (corner voxel indices of the input image,
inclusive high corner), scores and classes; ``predict_instances`` an instance label map of
the input's shape (0: background). A ``watershed`` run labels the instances itself (boxes:
their bounding boxes, score: the mean foreground probability inside, class 0); a
``centernet`` run predicts no masks, so its label map fills each box with its instance
number, higher scores drawn last (on top). ``predict_folder`` writes one label map per case
(same geometry and file type as the input, via :mod:`medseg.io`) and ``detections.csv``::

    case,instance,class,score,lo_0,..,lo_{D-1},hi_0,..,hi_{D-1}

(``instance`` is the value in the case's label map.)
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor, nn

from medseg.data.case import Case, read_case
from medseg.detect.config import CONFIG_KEY, DetectConfig, build_detector, required_divisor
from medseg.detect.data import Grid
from medseg.detect.heads import centernet_detections, watershed_maps
from medseg.detect.tune import apply_tuned, label_instances
from medseg.device import resolve_device
from medseg.errors import ConfigError, DatasetError
from medseg.fileutil import atomic_path, check_writable, csv_safe
from medseg.inference.inputs import find_input_cases
from medseg.io import Image, file_ending, write_image
from medseg.metrics.boxes import boxes_from_labels
from medseg.training.checkpoint import load_checkpoint


@dataclass
class Detector:
    """A trained detector: its network (eval mode) and config."""

    model: nn.Module
    config: DetectConfig


def load_detector(
    model_dir: str | os.PathLike[str] | Detector,
    *,
    checkpoint: str = "best",
    device: str | None = None,
) -> Detector:
    """The detector of a ``medseg detect train`` run folder (``checkpoint_best.pt`` or
    ``checkpoint_latest.pt``), with the watershed settings tuned on its validation cases
    (``watershed.json``) when the run has them.

    Raises:
        ConfigError: no such run, or a checkpoint that is not a detection checkpoint.
    """
    if isinstance(model_dir, Detector):
        return model_dir
    path = Path(model_dir) / f"checkpoint_{checkpoint}.pt"
    data = load_checkpoint(path, kind="weights")
    if CONFIG_KEY not in data or "network_state" not in data:
        raise ConfigError(f"{path}: not a medseg detection checkpoint (no {CONFIG_KEY})")
    config = DetectConfig.from_dict(data[CONFIG_KEY], source=str(path))
    model = build_detector(config)
    config = apply_tuned(config, Path(model_dir))
    try:
        model.load_state_dict(data["network_state"])
    except RuntimeError as err:
        raise ConfigError(f"{path}: weights do not fit its config ({str(err)[:200]})") from None
    return Detector(model.to(resolve_device(device)).eval(), config)


def _as_image(image: Image | str | os.PathLike[str], config: DetectConfig) -> np.ndarray:
    """``(C, *spatial)`` voxels of an Image or image file, checked against the run."""
    name = "image"
    if not isinstance(image, Image):
        name = str(image)
        image = read_case(Case(Path(image).name, (Path(image),)))[0]
    array = image.array if image.has_channels else image.array[None]
    if image.spatial_dims != config.spatial_dims or array.shape[0] != config.in_channels:
        raise DatasetError(
            f"{name}: {image.spatial_dims}-D with {array.shape[0]} channel(s); the model takes "
            f"{config.spatial_dims}-D images with {config.in_channels}"
        )
    return array


def _on_grid(detector: Detector, array: np.ndarray) -> tuple[Grid, Tensor]:
    config = detector.config
    grid = Grid.for_shape(array.shape[1:], config.image_size, required_divisor(config))
    return grid, grid.image(array)


def _predict(
    detector: Detector, array: np.ndarray
) -> tuple[np.ndarray, Tensor, Tensor, Tensor, np.ndarray]:
    """Label map (input shape), boxes, scores, classes and label values of ``(C, *spatial)``
    voxels' objects, highest score first."""
    grid, x = _on_grid(detector, array)
    spatial = array.shape[1:]
    if detector.config.head == "centernet":
        found = centernet_detections(detector.model, detector.config, x)
        boxes = grid.boxes_back(found.boxes)
        ids = np.arange(1, len(boxes) + 1)
        return boxes_to_labels(boxes, spatial), boxes, found.scores, found.classes, ids
    foreground, distance = watershed_maps(detector.model, x)
    grid_labels = label_instances(detector.config, foreground, distance)
    labels = grid.labels_back(grid_labels)
    boxes, ids = boxes_from_labels(labels, detector.config.spatial_dims)
    scores = np.asarray(ndimage.mean(foreground, grid_labels, ids) if len(ids) else [])
    order = np.argsort(-scores, kind="stable")
    return (
        labels,
        torch.as_tensor(boxes[order]),
        torch.as_tensor(scores[order], dtype=torch.float32),
        torch.zeros(len(order), dtype=torch.int64),
        ids[order],
    )


def predict_detections(
    model_dir: str | os.PathLike[str] | Detector, image: Image | str | os.PathLike[str]
) -> tuple[Tensor, Tensor, Tensor]:
    """Boxes ``(N, 2D)`` int64 (input voxels, inclusive), scores ``(N,)`` and classes
    ``(N,)`` of one image (an :class:`~medseg.io.Image` or a file), highest score first."""
    detector = load_detector(model_dir)
    return _predict(detector, _as_image(image, detector.config))[1:4]


def predict_maps(
    model_dir: str | os.PathLike[str] | Detector, image: Image | str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    """A watershed run's foreground probability and distance map ``(*spatial)`` of one image
    (for instance the semantic baseline: components of ``foreground > 0.5``).

    Raises:
        ConfigError: a CenterNet run (it predicts no foreground).
    """
    detector = load_detector(model_dir)
    if detector.config.head != "watershed":
        raise ConfigError("predict_maps needs a watershed run; this one is centernet")
    grid, x = _on_grid(detector, _as_image(image, detector.config))
    foreground, distance = watershed_maps(detector.model, x)
    return grid.values_back(foreground), grid.values_back(distance)


def boxes_to_labels(boxes: Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A label map of ``shape`` with box ``i`` (highest score first) filled with ``i + 1``,
    drawn from the last so that higher-scored boxes lie on top.

    Example:
        >>> boxes_to_labels(torch.tensor([[0, 1], [1, 3]]), (5,)).tolist()
        [1, 1, 2, 2, 0]
    """
    labels = np.zeros(shape, np.int32)
    dims = len(shape)
    for i in reversed(range(len(boxes))):
        lo, hi = boxes[i, :dims].tolist(), boxes[i, dims:].tolist()
        labels[tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))] = i + 1
    return labels


def predict_instances(
    model_dir: str | os.PathLike[str] | Detector, image: Image | str | os.PathLike[str]
) -> np.ndarray:
    """The instance label map ``(*spatial)`` of one image (0: background)."""
    detector = load_detector(model_dir)
    return _predict(detector, _as_image(image, detector.config))[0]


def _output_name(case: Case) -> str:
    return case.case_id + file_ending(case.image_paths[0])


def predict_folder(
    model_dir: str | os.PathLike[str],
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    device: str | None = None,
    checkpoint: str = "best",
) -> Path:
    """Label maps of every case of ``source`` (an image file or a folder of
    ``CASE_0000<ending>`` files) into the folder ``out``, plus ``out/detections.csv``;
    returns the CSV's path.

    Raises:
        OverwriteError: an output exists and ``overwrite`` is False (checked before any work).
        DatasetError: no images, or images the model cannot take.
    """
    detector = load_detector(model_dir, checkpoint=checkpoint, device=device)
    source, out = Path(source), Path(out)
    if source.is_file():
        ending = file_ending(source)
        stem = source.name[: -len(ending)]
        stem = stem[:-5] if len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit() else stem
        cases = [Case(stem, (source,))]
    else:
        cases = find_input_cases(source)
    table = check_writable(out / "detections.csv", overwrite=overwrite)
    for case in cases:
        check_writable(out / _output_name(case), overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    dims = detector.config.spatial_dims
    rows = []
    for case in cases:
        image, _ = read_case(case)
        labels, boxes, scores, classes, ids = _predict(detector, _as_image(image, detector.config))
        dtype = np.uint16 if labels.max(initial=0) < 65536 else np.int32
        geometry = Image(labels.astype(dtype), image.spacing, image.origin, image.direction)
        write_image(geometry, out / _output_name(case), overwrite=overwrite)
        for i in range(len(boxes)):
            rows.append(
                [case.case_id, int(ids[i]), int(classes[i]), f"{float(scores[i]):.6f}"]
                + [int(v) for v in boxes[i]]
            )
    header = ["case", "instance", "class", "score"]
    header += [f"lo_{d}" for d in range(dims)] + [f"hi_{d}" for d in range(dims)]
    with atomic_path(table) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([csv_safe(v) for v in row] for row in rows)
    return table
