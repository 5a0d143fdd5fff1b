"""Training the patch classifier on the engine: class-balanced patch draws, phantoms learnt
in 2D and 3D (Dice of the dense segmentation), the run folder, resuming, reloading, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError, DatasetError
from medseg.training.patch_classifier import (
    PatchBatches,
    PatchTrainingConfig,
    fit_patch_classifier,
    foreground_dice,
    load_patch_classifier,
    segment_images,
)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small tensors: one thread each (threads only wait for each other on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ball(seed: int, spatial_dims: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy bright ball (label 1, ~10% of the voxels) at a random place."""
    rng = np.random.default_rng(seed)
    grid = np.indices((size,) * spatial_dims)
    centre = rng.uniform(size * 0.35, size * 0.65, spatial_dims)
    radius = size * (0.28 if spatial_dims == 2 else 0.3)
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
    label = (dist <= radius).astype(np.int64)
    image = label + 0.3 * rng.standard_normal(label.shape)
    return image[None].astype(np.float32), label


def _cases(seeds, spatial_dims: int, size: int) -> tuple[list, list]:
    pairs = [_ball(s, spatial_dims, size) for s in seeds]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_batches_draw_every_class_equally_and_cut_the_right_patch() -> None:
    images, labels = _cases([0, 1], 2, 24)
    config = PatchTrainingConfig(patch_size=5, batch_size=400, batches_per_epoch=2)
    batches = PatchBatches(images, labels, config, torch.device("cpu"))
    rows = list(batches(0))
    assert len(rows) == 2 and all(r.shape == (400,) for r in rows)
    x, y = batches.prepare(rows[0])
    assert x.shape == (400, 1, 5, 5) and 0.4 < float(y.float().mean()) < 0.6
    assert float(np.mean(labels[0])) < 0.3  # balanced although the ball is small
    assert np.array_equal(rows[0], next(iter(batches(0))))  # seeded by the epoch
    # a patch's centre voxel is the labelled voxel (z-scored image)
    row = rows[0][0]
    case, voxel = int(batches.cases[row]), int(batches.voxels[row])
    centre = np.unravel_index(voxel, labels[case].shape)
    image = images[case][0]
    z = (image[centre] - image.mean()) / image.std(ddof=1)
    assert float(x[0, 0, 2, 2]) == pytest.approx(float(z), rel=1e-4)
    assert int(y[0]) == labels[case][centre]


@pytest.mark.parametrize(("spatial_dims", "size", "patch"), [(2, 24, 7), (3, 14, 5)])
def test_learns_a_phantom_and_segments_it(
    tmp_path: Path, spatial_dims: int, size: int, patch: int
) -> None:
    images, labels = _cases([0, 1, 2], spatial_dims, size)
    val_images, val_labels = _cases([7], spatial_dims, size)
    config = PatchTrainingConfig(
        spatial_dims=spatial_dims,
        patch_size=patch,
        network_config={"features": 8, "hidden": [16]},
        batch_size=64,
        batches_per_epoch=20,
        epochs=3,
        learning_rate=1e-2,
    )
    result = fit_patch_classifier(
        images,
        labels,
        tmp_path / "run",
        config,
        val=(val_images, val_labels),
        progress=False,
        device="cpu",
        amp=False,
    )
    assert result.epochs == 3 and result.best_metric > 0.9
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert PatchTrainingConfig.from_dict(saved) == config
    model, loaded = load_patch_classifier(tmp_path / "run" / "checkpoint_best.pt")
    assert loaded == config and not model.training
    (prediction,) = segment_images(model, val_images)
    assert foreground_dice(prediction, val_labels[0], 2) == pytest.approx(result.best_metric)


def test_resume_needs_the_same_config(tmp_path: Path) -> None:
    images, labels = _cases([0], 2, 16)
    config = PatchTrainingConfig(
        patch_size=5,
        network_config={"features": 4, "hidden": [4]},
        batch_size=8,
        batches_per_epoch=2,
        epochs=1,
    )
    kwargs = {"progress": False, "device": "cpu", "amp": False}
    fit_patch_classifier(images, labels, tmp_path, config, **kwargs)
    with pytest.raises(ConfigError):
        fit_patch_classifier(images, labels, tmp_path, config, **kwargs)  # no --resume
    longer = PatchTrainingConfig(**{**config.to_dict(), "epochs": 2})
    assert fit_patch_classifier(images, labels, tmp_path, longer, resume=True, **kwargs).epochs == 2
    other = PatchTrainingConfig(**{**config.to_dict(), "epochs": 3, "learning_rate": 0.5})
    with pytest.raises(ConfigError):
        fit_patch_classifier(images, labels, tmp_path, other, resume=True, **kwargs)


def test_bad_data_and_settings_are_refused(tmp_path: Path) -> None:
    images, labels = _cases([0], 2, 16)
    config = PatchTrainingConfig(patch_size=5)
    with pytest.raises(DatasetError, match="case 0: labels"):
        PatchBatches(images, [labels[0][:8]], config, torch.device("cpu"))
    with pytest.raises(DatasetError, match=r"outside 0\.\.1"):
        PatchBatches(images, [labels[0] * 2], config, torch.device("cpu"))
    with pytest.raises(DatasetError, match="1 images for 0 label maps"):
        PatchBatches(images, [], config, torch.device("cpu"))
    with pytest.raises(ConfigError, match="unknown patch training setting"):
        PatchTrainingConfig.from_dict({"patch": 5})
    with pytest.raises(ConfigError, match="batch_size"):
        PatchTrainingConfig(batch_size=0)
    (tmp_path / "x.pt").write_bytes(b"")
    torch.save({"network_state": {}}, tmp_path / "x.pt")
    with pytest.raises(ConfigError, match="not a patch classifier checkpoint"):
        load_patch_classifier(tmp_path / "x.pt")
