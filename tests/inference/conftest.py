"""Shared builders for the inference tests: tiny hand-made plans and networks, and one planned
phantom results folder with untrained (randomly initialised) checkpoints."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from medseg.planning.plan import Plan
from medseg.training.checkpoint import build_model, save_checkpoint

LABELS = {"background": 0, "organ": 1, "lesion": 2}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The test tensors are tiny: one thread avoids OpenMP overhead (large on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_plan(
    *,
    configuration: str = "3d_fullres",
    spatial_dims: int = 3,
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0),
    patch_size: tuple[int, ...] = (8, 16, 16),
    in_channels: int = 1,
    labels: dict[str, int] | None = None,
    **overrides: Any,
) -> Plan:
    """A small valid plan whose network is a 2-stage U-Net with 4/8 features."""
    labels = labels or LABELS
    strides = (
        [[1] * spatial_dims, [1] + [2] * (spatial_dims - 1)]
        if spatial_dims == 3
        else [[1, 1], [2, 2]]
    )
    fields = {
        "configuration": configuration,
        "spatial_dims": spatial_dims,
        "spacing": spacing,
        "median_shape": tuple(patch_size) if len(spacing) == spatial_dims else (4, *patch_size),
        "patch_size": patch_size,
        "batch_size": 2,
        "normalization": ("zscore",) * in_channels,
        "intensity": {},
        "num_classes": len(labels),
        "in_channels": in_channels,
        "labels": dict(labels),
        "network_config": {
            "features": [4, 8],
            "strides": strides,
            "norm": "instance",
            "deep_supervision": True,
        },
    }
    fields.update(overrides)
    return Plan(**fields)


def make_model(plan: Plan, seed: int = 0) -> nn.Module:
    """The plan's network with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    return build_model(plan).eval()


def small_plan_like(plan: Plan) -> Plan:
    """``plan`` with a tiny network (fast on the CPU); spacing, patch and labels kept."""
    dims = plan.spatial_dims
    strides = [[1] * dims, [1, 2, 2] if dims == 3 else [2, 2]]
    config = {"features": [4, 8], "strides": strides, "norm": "instance", "deep_supervision": True}
    return dataclasses.replace(plan, network_config=config)


def write_checkpoint(results: Path, plan: Plan, fold: int | str, seed: int) -> Path:
    model = make_model(plan, seed)
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


@pytest.fixture(scope="session")
def phantom_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 3-case 3D phantom dataset (16^3 voxels), planned, with checkpoints for 3d_fullres folds 0
    and 1 and 2d fold 0; plus ``images``: its images as an imagesTs-style input folder."""
    from medseg.data.phantom_config import PhantomConfig
    from medseg.data.phantoms import generate_dataset
    from medseg.planning.steps import plan as plan_dataset

    root = tmp_path_factory.mktemp("phantom")
    config = PhantomConfig(spacing=(4.0, 4.0, 4.0))  # 16^3 voxels: fast on two CPU cores
    dataset = generate_dataset(root / "dataset", spatial_dims=3, num_cases=3, seed=0, config=config)
    results = root / "results"
    plans = plan_dataset(dataset, results, progress=False)
    write_checkpoint(results, small_plan_like(plans["3d_fullres"]), 0, seed=1)
    write_checkpoint(results, small_plan_like(plans["3d_fullres"]), 1, seed=2)
    write_checkpoint(results, small_plan_like(plans["2d"]), 0, seed=3)
    images = root / "images"
    images.mkdir()
    for path in sorted((dataset / "imagesTr").iterdir()):
        shutil.copyfile(path, images / path.name)
    return {"dataset": dataset, "results": results, "images": images}


def predict_cli_args(images: Path, out: Path, results: Path, *extra: str) -> list[str]:
    """``medseg predict`` arguments for one fold of the phantom results, no mirroring, on the
    CPU, plus ``extra``."""
    args = ["predict", "-i", str(images), "-o", str(out), "-m", str(results)]
    one_fold = ["--config", "3d_fullres", "--folds", "0", "--no-mirror", "--device", "cpu"]
    return [*args, *one_fold, *extra]
