"""Shared fixtures: tiny datasets built in tmp folders, and the real data folder if present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.io import Image, write_image
from medseg.io.formats import locale_kept

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_nnunet_dataset(
    root: Path,
    *,
    num_cases: int = 3,
    shape: tuple[int, ...] = (6, 8, 10),
    spacing: tuple[float, ...] = (3.0, 1.0, 1.0),
    num_channels: int = 1,
    labels: dict[str, int] | None = None,
    ending: str = ".nii.gz",
    seed: int = 0,
) -> Path:
    """Write a small nnU-Net v2 dataset with a cube of label 1 and a smaller cube of label 2."""
    rng = np.random.default_rng(seed)
    labels = labels or {"background": 0, "organ": 1, "lesion": 2}
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for i in range(num_cases):
        label = np.zeros(shape, dtype=np.uint8)
        inner = tuple(slice(1, s - 1) for s in shape)
        label[inner] = 1
        label[tuple(slice(2, 4) for _ in shape)] = 2
        for c in range(num_channels):
            image = rng.normal(100 * (c + 1), 10, shape).astype(np.float32) + 50 * label
            write_image(Image(image, spacing), root / "imagesTr" / f"case_{i:03d}_{c:04d}{ending}")
        write_image(Image(label, spacing), root / "labelsTr" / f"case_{i:03d}{ending}")
    meta = {
        "name": "tiny",
        "channel_names": {str(c): f"MRI{c}" for c in range(num_channels)},
        "labels": labels,
        "numTraining": num_cases,
        "file_ending": ending,
    }
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_nnunet_dataset(tmp_path / "tiny")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def make_dataset():
    """The ``make_nnunet_dataset`` builder, for tests that need variants."""
    return make_nnunet_dataset


@pytest.fixture(autouse=True)
def _locale_restored():
    """Each test starts in the process's locale: writing a DICOM file (GDCM) switches the whole
    process to the C locale, where text opened without an encoding decodes as ASCII."""
    with locale_kept():
        yield


@pytest.fixture(autouse=True)
def _seeded_global_generators():
    """Each test starts from the same global RNG states, so a test that draws unseeded random
    data sees the same data whatever ran before it in its worker (CI reorders the tests)."""
    import random

    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def _shrink_2d_plan(
    results: Path, *, patch_size: tuple[int, int] | None = None, **changes: object
) -> None:
    """Keep only the ``2d`` plan of ``results``, as a 2-stage 4->8 feature U-Net with batch 2
    (training steps take milliseconds); ``changes``: other plan fields to set."""
    from dataclasses import replace

    from medseg.planning.plan import Plans

    plans = Plans.from_json(results / "plans.json")
    p = plans["2d"]
    small = replace(
        p,
        patch_size=patch_size or p.patch_size,
        batch_size=2,
        network_config={
            **p.network_config,
            "features": [4, 8],
            "kernel_sizes": [[3, 3], [3, 3]],
            "strides": [[1, 1], [2, 2]],
        },
        **changes,
    )
    Plans(plans.dataset_name, plans.dataset_path, {"2d": small}).to_json(results / "plans.json")


@pytest.fixture
def shrink_2d_plan():
    """``shrink_2d_plan(results, patch_size=None)``: the results' ``2d`` plan as a tiny U-Net."""
    return _shrink_2d_plan
