"""The watershed head trains on a touching-cells phantom and its instances are counted; the
run folder holds what rebuilds the model; bad settings are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.data.phantoms_instances import generate_instances_dataset
from medseg.detect.config import DetectConfig, build_detector
from medseg.detect.data import Grid, instance_map
from medseg.detect.instances import components_instances
from medseg.detect.predict import load_detector, predict_detections, predict_instances
from medseg.detect.train import fit_detector
from medseg.errors import ConfigError
from medseg.io import read_image
from medseg.metrics.detection import counting_error


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine two threads oversubscribe badly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_instances_dataset(tmp_path_factory.mktemp("cells"), num_cases=5, seed=1)


def test_watershed_head_trains_predicts_and_counts(cells: Path, tmp_path: Path) -> None:
    config = DetectConfig(
        str(cells),
        head="watershed",
        features=(8, 16, 32),
        val_fraction=0.2,
        epochs=3,
        steps_per_epoch=150,
        batch_size=2,
        patch_size=(64, 64),
        learning_rate=3e-3,
    )
    result = fit_detector(cells, tmp_path / "run", config, progress=False)
    split = json.loads((tmp_path / "run/split.json").read_text())
    assert len(split["val"]) == 1 and result.epochs == 3
    assert np.isfinite(result.best_metric)  # the held-out case's PQ
    detector = load_detector(tmp_path / "run")  # loaded once, used for every case
    errors_ws, errors_cc = [], []
    for case in split["train"] + split["val"]:
        truth = read_image(cells / f"labelsTr/{case}.nii.gz").array
        labels = predict_instances(detector, cells / f"imagesTr/{case}_0000.nii.gz")
        assert labels.shape == truth.shape
        errors_ws.append(counting_error(labels, truth))
        errors_cc.append(counting_error(components_instances(labels > 0), truth))
    # touching cells: components merge them, the watershed splits them
    assert np.mean(errors_ws) < 0.1
    assert np.mean(errors_ws) < np.mean(errors_cc)
    boxes, scores, classes = predict_detections(
        tmp_path / "run", cells / f"imagesTr/{split['val'][0]}_0000.nii.gz"
    )
    assert boxes.shape[1] == 4 and (scores[:-1] >= scores[1:]).all() and (classes == 0).all()


def test_components_instances_of_a_semantic_map_and_min_voxels() -> None:
    label = np.array([[1, 1, 0, 2, 0, 1], [0, 0, 0, 2, 0, 0]])
    config = DetectConfig("ds", instances="components", labels=(1, 2), min_voxels=2)
    inst, classes = instance_map(label, config, (1, 2))
    assert inst.tolist() == [[1, 1, 0, 2, 0, 0], [0, 0, 0, 2, 0, 0]]  # the lone 1 is dropped
    assert classes.tolist() == [-1, 0, 1]
    inst, classes = instance_map(np.array([[0, 5, 5, 0, 9]]), DetectConfig("ds"), ())
    assert inst.tolist() == [[0, 1, 1, 0, 2]] and classes.tolist() == [-1, 0, 0]


def test_grid_resizes_and_maps_boxes_back() -> None:
    grid = Grid.for_shape((100, 60), (50, 30), (8, 8))
    assert grid.image(np.random.default_rng(0).normal(size=(1, 100, 60))).shape == (1, 50, 30)
    back = grid.boxes_back(torch.tensor([[10, 5, 19, 9]]))
    assert back.tolist() == [[20, 10, 39, 19]]  # a box of 10x5 cells covers 20x10 voxels
    padded = Grid.for_shape((30, 20), (), (8, 8))
    assert padded.model == (32, 24)
    labels = padded.labels(np.ones((30, 20), int))
    assert labels.shape == (32, 24) and labels.sum() == 600
    assert padded.labels_back(labels).shape == (30, 20)


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="head"):
        DetectConfig("ds", head="yolo")
    with pytest.raises(ConfigError, match="instances"):
        DetectConfig("ds", instances="blobs")
    with pytest.raises(ConfigError, match="unresolved"):
        build_detector(DetectConfig("ds"))
    data = generate_instances_dataset(tmp_path / "ds", num_cases=2, seed=0)
    with pytest.raises(ConfigError, match="multiple of"):
        fit_detector(data, tmp_path / "run", DetectConfig(str(data), image_size=(50, 50)))


def test_a_3d_centernet_run_trains_and_predicts_3d_boxes(tmp_path: Path) -> None:
    data = generate_instances_dataset(tmp_path / "ds3", spatial_dims=3, num_cases=2, seed=0)
    config = DetectConfig(
        str(data),
        features=(4, 8),
        epochs=1,
        steps_per_epoch=2,
        batch_size=1,
        patch_size=(16,),
        val_fraction=0.5,
        score_threshold=0.0,
        top_k=5,
    )
    fit_detector(data, tmp_path / "run", config, progress=False)
    saved = json.loads((tmp_path / "run/config.json").read_text())
    assert saved["spatial_dims"] == 3 and saved["patch_size"] == [16, 16, 16]
    boxes, scores, _ = predict_detections(tmp_path / "run", data / "imagesTr/cells_000_0000.nii.gz")
    assert boxes.shape[1] == 6 and 1 <= len(boxes) <= 5  # top_k, maybe fewer after NMS
    assert (boxes[:, 3:] >= boxes[:, :3]).all()
    assert (boxes[:, 3:] < 48).all() and len(scores) == len(boxes)


def test_tuned_watershed_settings_are_applied_and_a_bad_file_is_refused(tmp_path: Path) -> None:
    from medseg.detect.tune import TUNED_FILE, apply_tuned

    config = DetectConfig("ds", head="watershed")
    assert apply_tuned(config, tmp_path) == config  # no file: unchanged
    (tmp_path / TUNED_FILE).write_text('{"h": 0.5, "min_distance": 6}')
    tuned = apply_tuned(config, tmp_path)
    assert (tuned.h, tuned.min_distance) == (0.5, 6)
    assert apply_tuned(DetectConfig("ds"), tmp_path).h == DetectConfig("ds").h  # centernet
    (tmp_path / TUNED_FILE).write_text('{"h": "high"}')
    with pytest.raises(ConfigError, match="watershed.json"):
        apply_tuned(config, tmp_path)
