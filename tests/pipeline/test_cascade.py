"""The nnU-Net cascade on tiny phantoms: plan -> 3d_lowres folds -> prepare-cascade ->
3d_cascade_fullres -> predict, plus its pieces (plan fields, loader channel, augmentation)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from medseg.cli import pipeline as pipeline_cli
from medseg.cli import predict as predict_cli
from medseg.data.cascade import foreground_one_hot, load_previous, write_previous
from medseg.data.loader import make_loader, write_case
from medseg.data.phantom_config import PhantomConfig
from medseg.data.phantoms import generate_dataset
from medseg.errors import ConfigError, OverwriteError
from medseg.inference.predict import predict_case
from medseg.io import Image, read_image, write_image
from medseg.pipeline import plan, predict, prepare_cascade, preprocess, train
from medseg.planning import planner
from medseg.planning.plan import Plan, Plans
from medseg.training.checkpoint import build_model
from medseg.training.segmentation import segmentation_augmentation
from medseg.training.splits import make_splits
from medseg.transforms import (
    Compose,
    RandomBrightness,
    RandomFlip,
    RandomGaussianNoise,
    nnunet_default,
)
from medseg.transforms.masks import ForegroundOneHot, RandomMaskMorphology

ROTATION = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
SMALL_NET = {
    "features": [4, 8],
    "kernel_sizes": [[3, 3, 3], [3, 3, 3]],
    "strides": [[1, 1, 1], [2, 2, 2]],
    "norm": "batch",
    "act": "leakyrelu",
    "deep_supervision": True,
}
NUM_CASES = 4


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _planned(root: Path) -> Path:
    """4 phantoms of 16^3 voxels, planned with a lowres stage (LOWRES_FACTOR lowered), tiny
    3D networks, preprocessed, and split into 2 folds."""
    config = PhantomConfig(spacing=(4.0, 4.0, 4.0))
    data = generate_dataset(
        root / "data", spatial_dims=3, num_cases=NUM_CASES, seed=0, config=config
    )
    results = root / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(planner, "LOWRES_FACTOR", 0.5)  # a 16^3 case is 1x its patch: force the cascade
        plans = plan(data, results, progress=False)
    small = {
        n: replace(p, network_config=SMALL_NET, batch_size=2) if p.spatial_dims == 3 else p
        for n, p in plans.configurations.items()
    }
    Plans(plans.dataset_name, plans.dataset_path, small).to_json(results / "plans.json")
    preprocess(results, configurations=["3d_lowres", "3d_cascade_fullres"], jobs=1, progress=False)
    ids = [f"phantom_{i:03d}" for i in range(NUM_CASES)]
    (results / "splits.json").write_text(
        json.dumps(make_splits(ids, num_folds=2)), encoding="utf-8"
    )
    return results


@pytest.fixture
def planned(tmp_path: Path) -> Path:
    return _planned(tmp_path)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Lowres fold 0 -> prepare (fold 1 falls back) -> lowres fold 1 -> prepare again (CLI,
    --overwrite) -> cascade fold 0 (trained, validated)."""
    root = tmp_path_factory.mktemp("cascade")
    results = _planned(root)
    kw = {"epochs": 1, "steps_per_epoch": 2, "num_workers": 0, "progress": False}
    train(results, "3d_lowres", 0, validate=False, **kw)
    partial = prepare_cascade(results, mirror=False, progress=False)
    train(results, "3d_lowres", 1, validate=False, **kw)
    with pytest.raises(OverwriteError):
        prepare_cascade(results, mirror=False, progress=False)
    app = typer.Typer()
    pipeline_cli.register(app)
    cli = CliRunner().invoke(
        app, ["prepare-cascade", str(results), "--no-mirror", "--device", "cpu", "--overwrite"]
    )
    assert cli.exit_code == 0, cli.output
    cascade = train(results, "3d_cascade_fullres", 0, **kw)
    return {
        "root": root,
        "results": results,
        "partial": partial,
        "cli": cli.output,
        "cascade": cascade,
    }


# ---------------------------------------------------------------- planning


def test_plan_adds_the_cascade_stage_with_one_channel_per_foreground_class(planned: Path) -> None:
    plans = Plans.from_json(planned / "plans.json")
    assert {"3d_fullres", "3d_lowres", "3d_cascade_fullres"} <= set(plans.configurations)
    full, low, cascade = plans["3d_fullres"], plans["3d_lowres"], plans["3d_cascade_fullres"]
    assert cascade.previous_stage == "3d_lowres" and cascade.data_configuration == "3d_fullres"
    assert cascade.in_channels == full.in_channels + full.num_classes - 1 == 1 + 3
    assert cascade.image_channels == 1 and cascade.previous_stage_channels == 3
    assert cascade.spacing == full.spacing and cascade.patch_size == full.patch_size
    assert all(lo > fu for lo, fu in zip(low.spacing, full.spacing, strict=True))
    assert {"previous_stage", "in_channels", "configuration"} <= set(cascade.reasons)
    assert (
        full.previous_stage is None
        and low.previous_stage is None
        and full.store_configuration == "3d_fullres"
    )
    # the cascade shares the 3d_fullres store: no copy of the data
    assert sorted(p.name for p in (planned / "preprocessed").iterdir()) == [
        "3d_fullres",
        "3d_lowres",
    ]


def test_old_plans_json_without_the_cascade_fields_still_loads(planned: Path) -> None:
    data = json.loads((planned / "plans.json").read_text(encoding="utf-8"))
    data["configurations"].pop("3d_cascade_fullres")
    for config in data["configurations"].values():
        config.pop("previous_stage")
        config.pop("data_configuration")
    (planned / "old.json").write_text(json.dumps(data), encoding="utf-8")
    old = Plans.from_json(planned / "old.json")
    assert old["3d_fullres"] == Plans.from_json(planned / "plans.json")["3d_fullres"]
    assert (
        old["3d_fullres"].previous_stage is None
        and old["3d_fullres"].image_channels == old["3d_fullres"].in_channels
    )


def test_plan_fields_are_checked(planned: Path) -> None:
    cascade = Plans.from_json(planned / "plans.json")["3d_cascade_fullres"]
    with pytest.raises(ConfigError, match="previous_stage"):
        replace(cascade, previous_stage="bogus")
    with pytest.raises(ConfigError, match="in_channels"):
        replace(cascade, in_channels=3)


# ---------------------------------------------------------------- the missing previous stage


def test_training_the_cascade_first_says_which_commands_to_run(planned: Path) -> None:
    with pytest.raises(ConfigError, match="prepare-cascade") as err:
        train(
            planned,
            "3d_cascade_fullres",
            0,
            epochs=1,
            steps_per_epoch=1,
            num_workers=0,
            progress=False,
        )
    assert "medseg train" in str(err.value) and "--config 3d_lowres" in str(err.value)
    with pytest.raises(ConfigError, match="train the previous stage first"):
        prepare_cascade(planned, progress=False)


def test_predicting_with_the_cascade_needs_the_lowres_models(chain: dict, tmp_path: Path) -> None:
    results = chain["results"]
    model_plan = Plans.from_json(results / "plans.json")["3d_cascade_fullres"]
    image = Image(
        np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32), (4.0, 4.0, 4.0)
    )
    with pytest.raises(ConfigError, match="previous stage"):
        predict_case(
            [(build_model(model_plan).eval(), model_plan)], image, mirror=False, device="cpu"
        )
    empty = tmp_path / "results"
    (empty / "3d_cascade_fullres").mkdir(parents=True)
    (results / "3d_cascade_fullres" / "fold_0").rename(empty / "3d_cascade_fullres" / "fold_0")
    try:
        with pytest.raises(ConfigError, match="3d_lowres"):
            predict(chain["root"] / "data" / "imagesTr", tmp_path / "out", empty, mirror=False)
    finally:
        (empty / "3d_cascade_fullres" / "fold_0").rename(results / "3d_cascade_fullres" / "fold_0")


# ---------------------------------------------------------------- the chain


def test_previous_stage_predictions_come_from_the_fold_that_held_each_case_out(chain: dict) -> None:
    results = chain["results"]
    splits = json.loads((results / "splits.json").read_text(encoding="utf-8"))
    assert sorted(chain["partial"]["fallback"]) == splits[1]["val"]  # fold 1 was not trained yet
    record = json.loads(
        (results / "preprocessed" / "3d_cascade_fullres" / "previous_stage.json").read_text(
            encoding="utf-8"
        )
    )
    assert record["fallback"] == [] and record["previous_stage"] == "3d_lowres"
    assert record["cases"] == {c: str(k) for k, s in enumerate(splits) for c in s["val"]}
    assert "fold 0: 2, fold 1: 2" in chain["cli"]
    for case_id in record["cases"]:
        prev = load_previous(results / "preprocessed" / "3d_cascade_fullres", case_id)
        image = np.load(results / "preprocessed" / "3d_fullres" / f"{case_id}.npy", mmap_mode="r")
        assert prev.shape == (1, *image.shape[1:]) and prev.dtype == np.int8
        assert 0 <= prev.min() and prev.max() <= 3


def test_cascade_trains_and_validates_its_fold(chain: dict) -> None:
    fold = chain["results"] / "3d_cascade_fullres" / "fold_0"
    assert (fold / "checkpoint_best.pt").is_file()
    assert (
        chain["cascade"]["validation"]["n_cases"]
        == len(list((fold / "validation").glob("*.nii.gz")))
        == 2
    )


def test_cascade_prediction_has_the_input_geometry(chain: dict, tmp_path: Path) -> None:
    """``predict --config 3d_cascade_fullres`` runs the lowres folds first; the label map lies on
    the input grid (here with an origin and a rotation)."""
    source = read_image(chain["root"] / "data" / "imagesTr" / "phantom_000_0000.nii.gz")
    images = tmp_path / "images"
    moved = Image(source.array, source.spacing, (10.0, -4.0, 2.5), ROTATION)
    write_image(moved, images / "case_0000.nii.gz")
    app = typer.Typer()
    predict_cli.register(app)
    out = CliRunner().invoke(
        app,
        [
            "-i",
            str(images),
            "-o",
            str(tmp_path / "pred"),
            "-m",
            str(chain["results"]),
            "--config",
            "3d_cascade_fullres",
            "--no-mirror",
            "--device",
            "cpu",
        ],
    )
    assert out.exit_code == 0, out.output
    pred = read_image(tmp_path / "pred" / "case.nii.gz")
    assert pred.spatial_shape == moved.spatial_shape
    assert pred.spacing == pytest.approx(moved.spacing) and pred.origin == pytest.approx(
        moved.origin
    )
    assert pred.direction == pytest.approx(moved.direction)
    assert set(np.unique(pred.array)) <= {0, 1, 2, 3}
    # the fold ensemble with the full-resolution configuration works like any other
    both = predict(
        images,
        tmp_path / "both",
        chain["results"],
        configurations=["3d_cascade_fullres", "3d_lowres"],
        mirror=False,
        device="cpu",
    )
    assert read_image(both[0]).spatial_shape == moved.spatial_shape


# ---------------------------------------------------------------- the pieces


def _cascade_plan() -> Plan:
    labels = {"background": 0, "a": 1, "b": 2}
    return Plan(
        configuration="3d_cascade_fullres",
        spatial_dims=3,
        spacing=(1.0, 1.0, 1.0),
        median_shape=(8, 8, 8),
        patch_size=(8, 8, 8),
        batch_size=2,
        normalization=("zscore",),
        intensity={},
        num_classes=3,
        in_channels=3,
        labels=labels,
        previous_stage="3d_lowres",
        data_configuration="3d_fullres",
    )


def test_loader_appends_the_previous_stage_as_a_last_channel(tmp_path: Path) -> None:
    image = np.random.default_rng(0).normal(size=(1, 6, 8, 8)).astype(np.float32)
    prev = np.zeros((6, 8, 8), np.int8)
    prev[2:4, 2:6, 3:5] = 2
    write_case(tmp_path / "store", "a", image, (prev > 0).astype(np.int8))
    write_previous(tmp_path / "prev", "a", prev)
    batch, label = next(
        iter(
            make_loader(
                tmp_path / "store",
                patch_size=(6, 8, 8),
                batch_size=2,
                num_workers=0,
                previous_folder=tmp_path / "prev",
            )
        )
    )
    assert batch.shape == (2, 2, 6, 8, 8)
    np.testing.assert_array_equal(batch[:, 0].numpy(), np.stack([image[0]] * 2))
    np.testing.assert_array_equal(batch[:, 1].numpy(), np.stack([prev] * 2).astype(np.float32))
    with pytest.raises(ValueError, match="_prev"):
        write_case(tmp_path / "store", "x_prev", image)


def test_cascade_augmentation_moves_the_masks_but_never_changes_their_intensity() -> None:
    plan = _cascade_plan()
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.normal(size=(2, 1, 8, 8, 8)).astype(np.float32))
    indices = torch.from_numpy(rng.integers(0, 3, size=(2, 1, 8, 8, 8)).astype(np.float32))
    batch = torch.cat([image, indices], dim=1)
    onehot = torch.cat([image, foreground_one_hot(indices, plan.num_classes)], dim=1)
    assert onehot.shape == (2, 3, 8, 8, 8)
    masks, images = range(1, 3), [0]
    intensity = Compose(
        [
            ForegroundOneHot(3),
            RandomBrightness(p=1.0, value_range=(2.0, 2.0), channels=images),
            RandomGaussianNoise(p=1.0, std=(1.0, 1.0), channels=images),
            RandomMaskMorphology(masks, p=0.0),
        ],
        seed=0,
    )
    out, _ = intensity(batch, None)
    assert not torch.equal(out[:, :1], onehot[:, :1])  # the image channel changed
    torch.testing.assert_close(out[:, 1:], onehot[:, 1:], rtol=0, atol=0)  # the masks did not
    flip = Compose(
        [ForegroundOneHot(3), RandomFlip(p=1.0, axes=(0,)), RandomMaskMorphology(masks, p=0.0)],
        seed=0,
    )
    torch.testing.assert_close(
        flip(batch, None)[0], onehot.flip(2), rtol=0, atol=0
    )  # spatial ones move everything
    full, label = nnunet_default(3, p=1.0, seed=0, intensity_channels=images)(
        onehot, indices.long()
    )
    assert not torch.equal(full[:, 1:], onehot[:, 1:])  # rotated and scaled with the image
    augment = segmentation_augmentation(
        plan
    )  # what training uses: one-hot, preset, re-binarise, perturb
    augment.reseed(0)
    full, label = augment(batch, indices.long())
    assert full.shape == onehot.shape and label.shape == (2, 1, 8, 8, 8)
    assert set(torch.unique(full[:, 1:]).tolist()) <= {
        0.0,
        1.0,
    }  # masks stay binary after resampling


def test_mask_perturbation_applies_with_its_probability_and_keeps_masks_binary() -> None:
    from medseg.transforms.masks import dilate, erode, perturb_masks

    masks = torch.zeros(8, 2, 9, 9, 9)
    masks[:, :, 3:6, 3:6, 3:6] = 1
    assert torch.equal(perturb_masks(masks, torch.Generator().manual_seed(0), p=0.0), masks)
    changed = perturb_masks(masks, torch.Generator().manual_seed(0), p=1.0)
    assert set(torch.unique(changed).tolist()) <= {0.0, 1.0}
    # dilation and erosion change a cube; opening and closing give it back
    assert sum(not torch.equal(changed[b, c], masks[b, c]) for b in range(8) for c in range(2)) >= 4
    assert dilate(masks[:1, :1], 1).sum() == 5**3 and erode(masks[:1, :1], 1).sum() == 1
