"""Temporal mode: context channels, per-frame datasets, check and fingerprint of time-axis data."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel
import numpy as np
import pytest

from medseg.data.check import check_dataset
from medseg.data.dataset import load_dataset
from medseg.data.fingerprint import Fingerprint, compute_fingerprint
from medseg.data.phantoms_cine import write_cine_dataset
from medseg.data.temporal import (
    cine_to_frames,
    context_indices,
    frame_with_context,
    is_time_series_dataset,
    labelled_frames,
    series_splits,
    stack_frame_predictions,
)
from medseg.data.temporal_check import time_series_summary
from medseg.io import Image, read_image, write_image
from medseg.io.time_axis import read_time_series

SMALL = {"frames": 6, "shape": (24, 24), "spacing": (2.0, 2.0)}


def _messages(root: Path) -> list[str]:
    return [str(p) for p in check_dataset(load_dataset(root), jobs=1, progress=False)]


def test_context_indices_wrap_or_clamp() -> None:
    assert context_indices(0, 5, 2) == [3, 4, 0, 1, 2]
    assert context_indices(4, 5, 1) == [3, 4, 0]
    assert context_indices(4, 5, 2, cyclic=False) == [2, 3, 4, 4, 4]
    assert context_indices(2, 5, 0) == [2]


def test_frame_with_context_stacks_neighbours_as_channels() -> None:
    series = Image(np.arange(4)[:, None, None] * np.ones((4, 2, 3)), (1.0, 1.0), time_interval=0.1)
    image = frame_with_context(series, 0, 1)
    assert image.has_channels and not image.has_time
    assert image.array[:, 0, 0].tolist() == [3.0, 0.0, 1.0]


def test_labelled_frames_are_those_not_all_ignore() -> None:
    label = np.zeros((4, 2, 2), np.uint8)
    label[[1, 2]] = 3
    label[2, 0, 0] = 1  # partly annotated counts as labelled
    assert labelled_frames(label, 3) == [0, 2, 3]
    assert labelled_frames(label, None) == [0, 1, 2, 3]


def test_cine_to_frames_writes_labelled_frames_with_their_neighbours(tmp_path: Path) -> None:
    src = write_cine_dataset(tmp_path / "cine", num_cases=2, labelled_frames="ed_es", **SMALL)
    dst = cine_to_frames(src, tmp_path / "frames", context=1)
    meta = json.loads((dst / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "MRI", "1": "MRI", "2": "MRI"}
    assert "ignore" not in meta["labels"]  # whole unlabelled frames were left out
    truth = json.loads((src / "cine.json").read_text())["cases"]["cine_000"]
    ed = truth["ed_index"]
    series = read_time_series(src / "imagesTr" / "cine_000_0000.nii.gz")
    for c, t in enumerate([(ed - 1) % 6, ed, (ed + 1) % 6]):
        channel = read_image(dst / "imagesTr" / f"cine_000_f{ed:03d}_{c:04d}.nii.gz")
        np.testing.assert_array_equal(channel.array, series.array[t])
    ds = load_dataset(dst)
    assert len(ds.cases) == 4 and ds.num_channels == 3
    assert _messages(dst) == []


def test_stack_frame_predictions_rebuilds_the_series(tmp_path: Path) -> None:
    for t in range(3):
        write_image(
            Image(np.full((2, 2), t, np.uint8), (1.0, 1.0)), tmp_path / f"a_f{t:03d}.nii.gz"
        )
    series = stack_frame_predictions(tmp_path, "a", 3, 0.05)
    assert series.array[:, 0, 0].tolist() == [0, 1, 2] and series.time_interval == 0.05
    with pytest.raises(Exception, match="prediction of frame 3 of 'a' is missing"):
        stack_frame_predictions(tmp_path, "a", 4, 0.05)


def test_check_and_fingerprint_know_the_time_axis(tmp_path: Path) -> None:
    root = write_cine_dataset(tmp_path / "cine", num_cases=2, labelled_frames="ed_es", **SMALL)
    ds = load_dataset(root)
    assert is_time_series_dataset(ds) and _messages(root) == []
    summary = time_series_summary(ds)
    assert summary[0].startswith("cine_000: 6 frames x 0.04 s, labelled frames [")
    assert "(2 of 6)" in summary[0]
    assert summary[-1] == "time axis: 2 case(s); frames {6: 2}; interval (s) {0.04: 2}"
    fp = compute_fingerprint(ds, jobs=1, progress=False)
    assert fp.time_axis == {
        "median_frames": 6.0,
        "median_time_interval": 0.04,
        "min_labelled_frames": 2,
        "max_labelled_frames": 2,
    }
    case = fp.cases["cine_000"]
    assert case["frames"] == 6 and len(case["labelled_frames"]) == 2
    assert case["shape"] == [24, 24] and fp.spatial_dims == 2
    label = read_time_series(root / "labelsTr" / "cine_000.nii.gz").array
    counts = np.bincount(label[case["labelled_frames"]].ravel(), minlength=4)
    assert case["class_voxels"] == {"0": counts[0], "1": counts[1], "2": counts[2]}
    fp.to_json(tmp_path / "fp.json")
    assert Fingerprint.from_json(tmp_path / "fp.json").time_axis == fp.time_axis


def test_check_names_frame_mismatch_and_missing_interval(tmp_path: Path) -> None:
    root = write_cine_dataset(tmp_path / "cine", num_cases=2, **SMALL)
    label_path = root / "labelsTr" / "cine_001.nii.gz"
    series = read_time_series(label_path)
    write_image(series.with_array(series.array[:4]), label_path, overwrite=True)
    image_path = root / "imagesTr" / "cine_000_0000.nii.gz"  # no time unit: interval unknown
    nibabel.save(
        nibabel.Nifti1Image(np.ones((24, 24, 1, 6), np.float32), np.eye(4)), str(image_path)
    )
    messages = _messages(root)
    assert any(m.startswith(f"{label_path}: label has 4 frames, its image 6") for m in messages)
    assert any(
        m.startswith(f"{image_path}: 4D image with 6 frames has no frame interval")
        for m in messages
    )
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps(meta | {"frame_interval": 0.04}))
    assert not any("no frame interval" in m for m in _messages(root))


def test_a_time_series_in_an_ordinary_dataset_says_how_to_pick_a_frame(tmp_path: Path) -> None:
    root = write_cine_dataset(tmp_path / "cine", num_cases=1, **SMALL)
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps(meta | {"time_axis": False}))
    path = root / "imagesTr" / "cine_000_0000.nii.gz"
    messages = _messages(root)
    assert (
        f"{path}: image is a time series (6 frames of (1, 24, 24)) where one 3D image is "
        f"expected; pick a frame: medseg data frame {path} --t 0 -o FRAME.nii.gz" in messages[0]
    )
    del meta["time_axis"]  # no key: detected from the 4D header's time unit
    (root / "dataset.json").write_text(json.dumps(meta))
    assert is_time_series_dataset(load_dataset(root))


def test_series_splits_keep_each_series_in_one_fold() -> None:
    ids = [f"{name}_f{t:03d}" for name in ("p1", "p2", "p3") for t in (0, 4, 9)]
    splits = series_splits(ids, num_folds=3, seed=1)
    assert len(splits) == 3
    for split in splits:
        stems = {c.rpartition("_f")[0] for c in split["val"]}
        assert len(stems) == 1 and len(split["val"]) == 3  # one whole series per fold
        assert not stems & {c.rpartition("_f")[0] for c in split["train"]}
    assert sorted(c for s in splits for c in s["val"]) == sorted(ids)
    with pytest.raises(Exception, match="not a per-frame case"):
        series_splits(["a", "b"])
