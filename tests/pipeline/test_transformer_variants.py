"""The transformer networks through the whole pipeline: planned as variants (the patch
rounded to each network's divisor), trained on the engine, predicted on the input's grid."""

from __future__ import annotations

import json

import pytest

from medseg.data.phantoms import PhantomConfig, generate_dataset
from medseg.io import read_image
from medseg.pipeline import plan, predict, preprocess, train
from medseg.planning.choices import PlanChoices

pytestmark = pytest.mark.slow

SMALL = PhantomConfig(fov_mm=(60.0, 60.0), spacing=(1.0, 1.0))
FAST = {"epochs": 1, "steps_per_epoch": 2, "num_workers": 0, "progress": False}


def test_transformers_plan_train_and_predict(tmp_path) -> None:
    data = generate_dataset(tmp_path / "data", spatial_dims=2, num_cases=4, seed=0, config=SMALL)
    test = generate_dataset(tmp_path / "test", spatial_dims=2, num_cases=1, seed=1, config=SMALL)
    results = tmp_path / "results"
    plan(data, results, memory_gb=0.25, progress=False)
    for network in ("transunet", "swin_unet", "unetr"):
        variant = network.replace("_", "")
        plan(
            data,
            results,
            memory_gb=0.25,
            progress=False,
            variant=variant,
            choices=PlanChoices(network=network),
        )
    preprocess(results, jobs=1, progress=False)
    plans = json.loads((results / "plans.json").read_text(encoding="utf-8"))["configurations"]
    for network, divisor in (("transunet", 16), ("swin_unet", 8), ("unetr", 16)):
        name = f"2d-{network.replace('_', '')}"
        assert plans[name]["network"] == network
        assert all(p % divisor == 0 for p in plans[name]["patch_size"])
        train(results, name, 0, precision="fp32", validate=False, **FAST)
        out = predict(
            test / "imagesTr", tmp_path / name, results, configurations=[name], mirror=False
        )
        image = read_image(next((test / "imagesTr").iterdir()))
        assert read_image(out[0]).same_grid(image)
