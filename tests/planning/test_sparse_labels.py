"""Sparse annotations through planning and preprocessing: the ``ignore`` label is no class
(plan, fingerprint), is stored as -1 in the case store, survives resampling, and is never a
sampled foreground (or background) centre."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.data.loader import list_cases, load_case
from medseg.data.phantoms import PhantomConfig, generate_dataset
from medseg.data.preprocess import (
    IGNORE_INDEX,
    class_values,
    labels_to_indices,
    resample_label,
)
from medseg.data.sampling import PatchSampler
from medseg.data.sparsify import sparsify_dataset
from medseg.errors import DatasetError
from medseg.pipeline import plan, preprocess
from medseg.planning import Plans

CONFIG = PhantomConfig(fov_mm=(24.0, 32.0, 32.0), spacing=(3.0, 1.0, 1.0))  # (8, 32, 32)
EVERY = 3  # slices 0, 3, 6 of 8 annotated


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sparse")
    dense = generate_dataset(root / "dense", spatial_dims=3, num_cases=3, config=CONFIG)
    sparsify_dataset(dense, root / "sparse", every_nth_slice=EVERY, axis=0)
    plan(root / "sparse", root / "results", memory_gb=0.25, jobs=1, progress=False)
    preprocess(root / "results", configurations=["2d"], jobs=1, progress=False)
    return root / "results"


def test_class_values_and_indices_leave_the_ignore_label_out() -> None:
    labels = {"background": 0, "organ": 1, "tumour": 10, "ignore": 11}
    assert class_values(labels) == [0, 1, 10]
    label = np.array([0, 10, 11, 1, 11], dtype=np.uint8)
    indices = labels_to_indices(label, [0, 1, 10], ignore_value=11)
    assert indices.tolist() == [0, 2, -1, 1, -1] and indices.dtype == np.int8
    already = labels_to_indices(np.array([0, 1, 2]), [0, 1], ignore_value=2)
    assert already.tolist() == [0, 1, IGNORE_INDEX]
    with pytest.raises(DatasetError, match=r"label values \[11\]"):
        labels_to_indices(label, [0, 1, 10])  # without the ignore value, 11 is unknown


def test_resampling_keeps_ignored_regions_and_annotated_slices() -> None:
    # one annotated slice (value 2) between ignored ones, down-sampled 2:1 and up-sampled 1:2
    label = np.full((4, 3), -1, dtype=np.int8)
    label[1] = 2
    down = resample_label(label, (2, 3))
    assert down.tolist() == [[2, 2, 2], [-1, -1, -1]]  # ties go to the annotated slice
    up = resample_label(label, (8, 3))  # new voxel i samples old position i / 2 - 1/4
    assert up[:, 0].tolist() == [-1, -1, 2, 2, -1, -1, -1, -1]  # one slice becomes two
    dense = np.array([[0, 0, 1, 1]] * 2, dtype=np.int8)
    assert resample_label(dense, (2, 2)).tolist() == [[0, 1], [0, 1]]


def test_plan_has_the_ignore_label_and_excludes_it_from_the_classes(results: Path) -> None:
    plans = Plans.from_json(results / "plans.json")
    for config in plans.configurations.values():
        assert config.ignore_label == 4
        assert config.num_classes == 4  # background, organ, lesion, vessel
        assert config.labels["ignore"] == 4
        assert "sparse annotations" in config.reasons["ignore_label"]
    fingerprint = json.loads((results / "fingerprint.json").read_text(encoding="utf-8"))
    assert set(fingerprint["class_fractions"]) == {"background", "organ", "lesion", "vessel"}
    assert sum(fingerprint["class_fractions"].values()) == pytest.approx(1.0)
    for case in fingerprint["cases"].values():
        assert set(case["class_voxels"]) == {"0", "1", "2", "3"}
        # 3 of 8 slices of 32 x 32 are annotated
        assert sum(case["class_voxels"].values()) == 3 * 32 * 32


def test_store_holds_minus_one_exactly_on_the_unannotated_slices(results: Path) -> None:
    store = results / "preprocessed" / "2d"
    cases = list_cases(store)
    assert len(cases) == 3
    for case_id in cases:
        seg = np.load(store / f"{case_id}_seg.npy")
        props = json.loads((store / f"{case_id}.json").read_text(encoding="utf-8"))
        assert seg.dtype == np.int8 and seg.min() == -1 and seg.max() <= 3
        z = np.arange(seg.shape[1]) + props["crop_start"][0]  # original slice numbers
        annotated = z % EVERY == 0
        assert (seg[0, ~annotated] == -1).all()
        assert (seg[0, annotated] >= 0).all()
        locations = props["class_locations"]
        assert locations and all(int(k) >= 1 for k in locations)
        for value, coords in locations.items():
            coords = np.asarray(coords)
            assert (seg[0][tuple(coords.T)] == int(value)).all()


@pytest.mark.parametrize("mode", ["balanced", "oversample"])
def test_sampler_never_centres_on_an_ignored_voxel(results: Path, mode: str) -> None:
    store = results / "preprocessed" / "2d"
    cases = [load_case(store, case_id) for case_id in list_cases(store)]
    sampler = PatchSampler((1, 9, 9), mode=mode, oversample_foreground=1.0, keep_inside=False)
    rng = np.random.default_rng(0)
    centres = []
    for _ in range(20):
        _, labels, boxes = sampler.sample(cases, 8, rng)
        for label, box in zip(labels, boxes, strict=True):
            assert box.centre_class is not None  # every patch is placed on a class
            centres.append(int(label[0, 0, 4, 4]))  # keep_inside=False: the exact centre
            assert centres[-1] == box.centre_class
    assert min(centres) >= (0 if mode == "balanced" else 1)
    assert len(set(centres)) >= 3
