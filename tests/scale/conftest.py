"""Shared builders for the cohort-scale tests: a small planned phantom cohort with untrained
checkpoints, and its images as a predict input folder."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from medseg.planning.plan import Plan
from medseg.training.checkpoint import build_model, save_checkpoint


def tiny_network(plan: Plan) -> Plan:
    """``plan`` with a 2-stage U-Net of 4/8 features (fast on the CPU)."""
    dims = plan.spatial_dims
    strides = [[1] * dims, [1, 2, 2] if dims == 3 else [2, 2]]
    config = {"features": [4, 8], "strides": strides, "norm": "instance", "deep_supervision": True}
    return dataclasses.replace(plan, network_config=config)


def write_checkpoint(results: Path, plan: Plan, fold: int, seed: int) -> Path:
    """A seeded, untrained checkpoint of ``plan`` for ``fold``."""
    torch.manual_seed(seed)
    model = build_model(plan).eval()
    path = results / plan.configuration / f"fold_{fold}" / "checkpoint_best.pt"
    return save_checkpoint(
        path,
        network_state=model.state_dict(),
        plan=plan.to_dict(),
        epoch=0,
        step=0,
        fold=fold,
        configuration=plan.configuration,
    )


def make_cohort(root: Path, num_cases: int, *, size: str = "small") -> dict[str, Path]:
    """A ``num_cases`` phantom dataset of the preset ``size``, planned (``results``), with a
    3d_fullres fold-0 checkpoint, and ``images``: its images as a predict input folder."""
    from medseg.data.phantom_config import PhantomConfig
    from medseg.data.phantoms import generate_dataset
    from medseg.planning.steps import plan as plan_dataset

    config = PhantomConfig().sized(size, spatial_dims=3)
    dataset = generate_dataset(root / "dataset", num_cases=num_cases, seed=0, config=config)
    results = root / "results"
    plans = plan_dataset(dataset, results, jobs=1, progress=False)
    write_checkpoint(results, tiny_network(plans["3d_fullres"]), 0, seed=1)
    images = root / "images"
    images.mkdir()
    for path in sorted((dataset / "imagesTr").iterdir()):
        shutil.copyfile(path, images / path.name)
    return {"dataset": dataset, "results": results, "images": images}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 6-case small (16^3) phantom cohort (``make_cohort``)."""
    return make_cohort(tmp_path_factory.mktemp("cohort"), 6)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread in the driver, as in each Ray worker: the same float reductions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
