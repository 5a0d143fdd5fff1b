"""Preprocessing: crop, resample (separate z), normalise, store; undo restores geometry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.data.preprocess import (
    new_shape_for_spacing,
    nonzero_box,
    normalize,
    resample_image,
    resample_label,
    separate_axis,
)
from medseg.inference import probabilities_to_label, probabilities_to_original
from medseg.planning.preprocessing import preprocess
from medseg.planning.steps import plan


def test_nonzero_box_crops_to_the_union_of_channels() -> None:
    image = np.zeros((2, 6, 7))
    image[0, 1, 2] = 1
    image[1, 4, 5] = 1
    box = nonzero_box(image)
    assert box.start == (1, 2) and box.stop == (5, 6)
    assert nonzero_box(np.zeros((1, 3, 3))).stop == (3, 3)


def test_new_shape_keeps_the_physical_extent() -> None:
    assert new_shape_for_spacing((20, 100, 100), (5.0, 0.7, 0.7), (2.5, 1.4, 1.4)) == (40, 50, 50)


def test_separate_axis_only_for_anisotropic_spacing() -> None:
    assert separate_axis((5.0, 0.7, 0.7)) == 0
    assert separate_axis((1.0, 1.0, 1.2)) is None
    assert separate_axis((1.0, 5.0)) is None  # 2D is never split


def test_resample_label_never_invents_values_and_keeps_volume() -> None:
    label = np.zeros((10, 20, 20), np.int16)
    label[2:8, 5:15, 5:15] = 3
    label[4:6, 8:12, 8:12] = 1
    up = resample_label(label, (20, 40, 40))
    assert set(np.unique(up)) == {0, 1, 3}
    assert (up == 3).sum() / 8 == pytest.approx((label == 3).sum(), rel=0.1)


def test_resample_separate_z_does_not_blend_slices() -> None:
    image = np.zeros((1, 4, 8, 8), np.float32)
    image[0, 1] = 1.0  # one bright slice
    out = resample_image(image, (8, 8, 8), separate_z=0)
    assert set(np.round(np.unique(out[0, :, 4, 4]), 5)) <= {0.0, 1.0}  # nearest along z


def test_zscore_and_ct_normalisation() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(50, 5, (1, 10, 10, 10)).astype(np.float32)
    z = normalize(image, ("zscore",), {})
    assert z.mean() == pytest.approx(0, abs=1e-5) and z.std() == pytest.approx(1, abs=1e-4)
    ct = normalize(
        np.array([[-2000.0, 0.0, 3000.0]]),
        ("ct",),
        {"0": {"mean": 0.0, "std": 100.0, "percentile_00_5": -1000.0, "percentile_99_5": 1000.0}},
    )
    np.testing.assert_allclose(ct, [[-10.0, 0.0, 10.0]])


@pytest.fixture
def planned(make_dataset, tmp_path: Path) -> Path:
    root = make_dataset(tmp_path / "ds", num_cases=3, shape=(6, 12, 14), spacing=(4.0, 1.0, 1.0))
    plan(root, tmp_path / "results", progress=False)
    return tmp_path / "results"


def test_preprocess_writes_the_case_store_and_is_idempotent(planned: Path) -> None:
    first = preprocess(planned, jobs=1, progress=False)
    assert first["3d_fullres"] == {"processed": 3, "skipped": 0, "removed": 0}
    folder = planned / "preprocessed" / "3d_fullres"
    image = np.load(folder / "case_000.npy")
    seg = np.load(folder / "case_000_seg.npy")
    assert image.dtype == np.float32 and image.ndim == 4 and seg.shape == (1, *image.shape[1:])
    props = json.loads((folder / "case_000.json").read_text(encoding="utf-8"))
    assert props["original_shape"] == [6, 12, 14] and "class_locations" in props
    again = preprocess(planned, jobs=1, progress=False)
    assert again["3d_fullres"] == {"processed": 0, "skipped": 3, "removed": 0}


def test_preprocess_redoes_a_case_whose_file_changed(planned: Path) -> None:
    preprocess(planned, jobs=1, progress=False)
    plans = json.loads((planned / "plans.json").read_text(encoding="utf-8"))
    label_path = Path(plans["dataset_path"]) / "labelsTr" / "case_001.nii.gz"
    label_path.touch()
    import os

    os.utime(label_path, ns=(label_path.stat().st_atime_ns, label_path.stat().st_mtime_ns + 10**9))
    assert preprocess(planned, jobs=1, progress=False)["3d_fullres"]["processed"] == 1


def test_undo_restores_the_original_label_exactly_without_resampling(planned: Path) -> None:
    preprocess(planned, jobs=1, progress=False)
    folder = planned / "preprocessed" / "3d_fullres"
    props = json.loads((folder / "case_002.json").read_text(encoding="utf-8"))
    seg = np.load(folder / "case_002_seg.npy")[0]
    probs = np.stack([(seg == k).astype(np.float32) for k in range(3)])
    back = probabilities_to_label(probabilities_to_original(probs, props))
    from medseg.io import read_image

    plans = json.loads((planned / "plans.json").read_text(encoding="utf-8"))
    original = read_image(Path(plans["dataset_path"]) / "labelsTr" / "case_002.nii.gz").array
    np.testing.assert_array_equal(back, original)
