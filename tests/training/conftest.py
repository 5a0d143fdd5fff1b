"""A tiny planned + preprocessed 2D dataset shared by the training tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from medseg.planning import Plans
from medseg.planning.preprocessing import preprocess
from medseg.planning.steps import plan


@pytest.fixture
def tiny_results(make_dataset, tmp_path: Path) -> Path:
    """4 cases of 16x16, planned with a 2-stage 4->8 feature U-Net so steps take milliseconds."""
    root = make_dataset(tmp_path / "ds", num_cases=4, shape=(16, 16), spacing=(1.0, 1.0))
    results = tmp_path / "results"
    plans = plan(root, results, progress=False)
    p = plans["2d"]
    small = replace(
        p,
        patch_size=(16, 16),
        batch_size=2,
        network_config={
            **p.network_config,
            "features": [4, 8],
            "kernel_sizes": [[3, 3], [3, 3]],
            "strides": [[1, 1], [2, 2]],
        },
    )
    Plans(plans.dataset_name, plans.dataset_path, {"2d": small}).to_json(results / "plans.json")
    preprocess(results, jobs=1, progress=False)
    return results
