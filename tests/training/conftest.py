"""A tiny planned + preprocessed 2D dataset shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.planning.preprocessing import preprocess
from medseg.planning.steps import plan


@pytest.fixture
def tiny_results(make_dataset, shrink_2d_plan, tmp_path: Path) -> Path:
    """4 cases of 16x16, planned with a 2-stage 4->8 feature U-Net so steps take milliseconds."""
    root = make_dataset(tmp_path / "ds", num_cases=4, shape=(16, 16), spacing=(1.0, 1.0))
    results = tmp_path / "results"
    plan(root, results, progress=False)
    shrink_2d_plan(results, patch_size=(16, 16))
    preprocess(results, jobs=1, progress=False)
    return results
