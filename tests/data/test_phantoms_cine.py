"""Beating-LV phantoms: the truth they record agrees with their labels and the cycle they follow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.data.phantoms_cine import (
    IGNORE_VALUE,
    LV,
    MYO,
    cardiac_cycle,
    cine_phantom,
    write_cine_dataset,
)
from medseg.errors import ConfigError, OverwriteError
from medseg.io.time_axis import nifti_time_info, read_time_series


def test_cardiac_cycle_hand_values() -> None:
    # ED at frame 1, ES 2 frames later, 6 frames: systole cos ramp, diastole over 4 frames
    got = cardiac_cycle(6, 1, 2)
    assert got.tolist() == pytest.approx(
        [0.5 - 0.5 * np.cos(np.pi * 3 / 4), 1.0, 0.5, 0.0, 0.5 - 0.5 * np.cos(np.pi / 4), 0.5]
    )
    with pytest.raises(ConfigError, match="end-systole must be 1..5"):
        cardiac_cycle(6, 0, 6)


@pytest.mark.parametrize(
    "shape, spacing", [((10, 48, 48), (6.0, 2.0, 2.0)), ((64, 64), (1.5, 1.5))]
)
def test_truth_matches_the_labels(shape, spacing) -> None:
    p = cine_phantom(12, shape, spacing, seed=3, noise_std=0.1, time_interval=0.05)
    assert p.image.array.shape == (12, *shape) and p.image.time_interval == 0.05
    assert p.label.array.dtype == np.uint8 and set(np.unique(p.label.array)) == {0, LV, MYO}
    voxel_ml = np.prod(spacing) / 1000
    counts = (p.label.array == LV).reshape(12, -1).sum(axis=1)
    np.testing.assert_allclose(p.volumes, counts * voxel_ml)
    assert p.ed_index == int(np.argmax(counts)) and p.es_index == int(np.argmin(counts))
    assert (p.es_index - p.ed_index) % 12 == round(0.35 * 12)  # ES is 35 % of the cycle later
    edv, esv = p.volumes[p.ed_index], p.volumes[p.es_index]
    assert p.ejection_fraction == pytest.approx((edv - esv) / edv * 100)
    assert 35 < p.ejection_fraction < 80  # drawn in 45-70 %, up to voxelisation
    myo = (p.label.array == MYO).reshape(12, -1).sum(axis=1)
    assert myo.max() / myo.min() < 1.15  # the myocardium keeps its volume as it thickens
    blood = p.image.array[p.label.array == LV].mean()
    muscle = p.image.array[p.label.array == MYO].mean()
    assert blood - muscle == pytest.approx(0.7, abs=0.02)


def test_same_seed_same_phantom_other_seed_other_phantom() -> None:
    a, b = (
        cine_phantom(6, (32, 32), (2.0, 2.0), seed=1),
        cine_phantom(6, (32, 32), (2.0, 2.0), seed=1),
    )
    np.testing.assert_array_equal(a.image.array, b.image.array)
    assert not np.array_equal(
        a.label.array, cine_phantom(6, (32, 32), (2.0, 2.0), seed=2).label.array
    )


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ConfigError, match="at least 4 frames"):
        cine_phantom(3, (32, 32), (1.0, 1.0))
    with pytest.raises(ConfigError, match="give 2 or 3 axes"):
        cine_phantom(8, (32, 32), (1.0, 1.0, 1.0))


def test_dataset_writer_ed_es_only(tmp_path: Path) -> None:
    out = write_cine_dataset(
        tmp_path / "ds",
        num_cases=2,
        frames=8,
        shape=(40, 40),
        spacing=(2.0, 2.0),
        labelled_frames="ed_es",
        seed=4,
    )
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["time_axis"] is True and meta["labels"]["ignore"] == IGNORE_VALUE
    truth = json.loads((out / "cine.json").read_text())["cases"]["cine_001"]
    image_path = out / "imagesTr" / "cine_001_0000.nii.gz"
    assert nifti_time_info(image_path) == (8, pytest.approx(0.04))
    label = read_time_series(out / "labelsTr" / "cine_001.nii.gz")
    labelled = [t for t in range(8) if not np.all(label.array[t] == IGNORE_VALUE)]
    assert labelled == sorted([truth["ed_index"], truth["es_index"]])
    same = cine_phantom(8, (40, 40), (2.0, 2.0), seed=4 * 1000 + 1)
    np.testing.assert_array_equal(label.array[labelled], same.label.array[labelled])
    assert truth["lv_volumes_ml"] == pytest.approx(same.volumes.tolist())
    with pytest.raises(OverwriteError, match="folder is not empty"):
        write_cine_dataset(out, num_cases=1, frames=8, shape=(40, 40), spacing=(2.0, 2.0))
    write_cine_dataset(
        out, num_cases=1, frames=8, shape=(40, 40), spacing=(2.0, 2.0), overwrite=True
    )
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == ["cine_000.nii.gz"]
