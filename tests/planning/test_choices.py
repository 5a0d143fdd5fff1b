"""Plan choices (issue 13): network, loss, sampling, optimiser, augmentation, mirroring,
elastic and ``--set``; laterality keeps left and right apart in training and at test time."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.data.phantoms import PhantomConfig, generate_dataset
from medseg.errors import ConfigError, MedsegError
from medseg.inference.ensemble import predict_preprocessed, tta_mirror_axes
from medseg.io import Image, write_image
from medseg.pipeline import plan
from medseg.planning.choices import PlanChoices, apply_choices
from medseg.planning.laterality import is_lateral_label, laterality_reason
from medseg.planning.plan import Plans
from medseg.training.segmentation import segmentation_augmentation
from medseg.transforms.flip_crop import RandomFlip
from medseg.transforms.spatial import RandomSpatial

SMALL = PhantomConfig(fov_mm=(64.0, 64.0), spacing=(1.0, 1.0))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(
        tmp_path_factory.mktemp("choices") / "data", spatial_dims=2, num_cases=4, config=SMALL
    )


@pytest.fixture(scope="module")
def base_plan(phantoms: Path, tmp_path_factory: pytest.TempPathFactory):
    results = tmp_path_factory.mktemp("choices_results")
    return plan(phantoms, results, memory_gb=0.1, progress=False)["2d"]


def lateral_dataset(root: Path, *, names=("left_blob", "right_blob"), declared=False) -> Path:
    """Two discs of the same intensity, the left one labelled 1 and the right one 2."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    yy, xx = np.mgrid[:32, :32]
    for i in range(3):
        label = np.zeros((32, 32), np.uint8)
        label[(yy - 16) ** 2 + (xx - 8 - i) ** 2 < 25] = 1
        label[(yy - 16) ** 2 + (xx - 24 + i) ** 2 < 25] = 2
        image = (label > 0).astype(np.float32) + 0.01 * i
        write_image(Image(image, (1.0, 1.0)), root / "imagesTr" / f"c{i}_0000.nii.gz")
        write_image(Image(label, (1.0, 1.0)), root / "labelsTr" / f"c{i}.nii.gz")
    meta = {
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, names[0]: 1, names[1]: 2},
        "numTraining": 3,
        "file_ending": ".nii.gz",
    }
    if declared:
        meta["laterality"] = True
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


# ------------------------------------------------------------------------------ laterality


@pytest.mark.parametrize(
    ("name", "lateral"),
    [
        ("left_kidney", True),
        ("Right", True),
        ("lh_cortex", True),
        ("lung_l", True),
        ("R-hippocampus", True),
        ("liver", False),
        ("lateral_ventricle", False),
        ("lr_margin", False),
        ("Anterior", False),
    ],
)
def test_left_right_label_names(name: str, lateral: bool) -> None:
    assert is_lateral_label(name) is lateral


def test_laterality_reason_names_the_labels_or_the_declaration() -> None:
    assert "left_eye" in laterality_reason({"background": 0, "left_eye": 1}, False)
    assert "laterality" in laterality_reason({"background": 0, "eye": 1}, True)
    assert laterality_reason({"background": 0, "eye": 1}, False) is None


def test_the_planner_leaves_the_left_right_axis_out_and_says_why(tmp_path: Path) -> None:
    data = lateral_dataset(tmp_path / "data")
    plans = plan(data, tmp_path / "results", memory_gb=0.1, progress=False)
    p = plans["2d"]
    assert p.mirror_axes == (0,)  # array axis 1 (x) runs left-right and is never mirrored
    assert "left_blob" in p.reasons["mirror_axes"] and "axis 1" in p.reasons["mirror_axes"]
    assert "RandomFlip (axes 0)" in p.reasons["augmentation"]
    saved = Plans.from_json(tmp_path / "results" / "plans.json")["2d"]
    assert saved.mirror_axes == (0,)


def test_laterality_declared_in_dataset_json(tmp_path: Path) -> None:
    data = lateral_dataset(tmp_path / "data", names=("disc_a", "disc_b"), declared=True)
    p = plan(data, tmp_path / "results", memory_gb=0.1, progress=False)["2d"]
    assert p.mirror_axes == (0,) and "laterality" in p.reasons["mirror_axes"]
    unmarked = lateral_dataset(tmp_path / "plain", names=("disc_a", "disc_b"))
    q = plan(unmarked, tmp_path / "r2", memory_gb=0.1, progress=False)["2d"]
    assert q.mirror_axes == (0, 1)


def test_training_batches_never_mirror_left_and_right(tmp_path: Path) -> None:
    data = lateral_dataset(tmp_path / "data")
    p = plan(data, tmp_path / "results", memory_gb=0.1, progress=False)["2d"]
    pipeline = segmentation_augmentation(p)
    flips = [t for t in pipeline.transforms if isinstance(t, RandomFlip)]
    assert len(flips) == 1 and flips[0].axes == (0,)
    # the flip alone, always applied: the left disc (1) stays left of the right disc (2)
    label = torch.zeros(8, 1, 32, 32, dtype=torch.long)
    label[:, :, 10:20, 4:12], label[:, :, 10:20, 20:28] = 1, 2
    always = RandomFlip(axes=flips[0].axes, p=1.0, seed=0)
    for _ in range(5):
        _, flipped = always(label.float(), label)
        columns = torch.arange(32).view(1, 1, 1, 32)
        left = (columns * (flipped == 1)).sum() / (flipped == 1).sum()
        right = (columns * (flipped == 2)).sum() / (flipped == 2).sum()
        assert left < right


def test_test_time_mirroring_leaves_the_left_right_axis_alone(tmp_path: Path) -> None:
    data = lateral_dataset(tmp_path / "data")
    p = plan(data, tmp_path / "results", memory_gb=0.1, progress=False)["2d"]
    assert tta_mirror_axes(p) == (0,)

    class LeftIsOne(torch.nn.Module):
        """Class 1 on the left half, class 2 on the right half: mirroring x would mix them."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            width = x.shape[-1]
            left = (torch.arange(width, device=x.device) < width // 2).to(x.dtype)
            left = left.expand_as(x[:, :1])
            return torch.cat([torch.zeros_like(left), 10 * left, 10 * (1 - left)], 1)

    size = tuple(p.patch_size)
    probs = predict_preprocessed(LeftIsOne(), p, np.zeros((1, *size), np.float32), mirror=True)
    assert probs[1, :, : size[1] // 2].min() > 0.99 and probs[2, :, size[1] // 2 :].min() > 0.99
    everything = replace(p, mirror_axes=None)
    mixed = predict_preprocessed(LeftIsOne(), everything, np.zeros((1, *size), np.float32))
    assert mixed[1, :, : size[1] // 2].max() < 0.6  # the check above could fail


# ----------------------------------------------------------------------- choices and --set


def test_choices_land_in_the_plan_with_reasons(base_plan) -> None:
    p = apply_choices(
        base_plan,
        PlanChoices(
            network="attention_unet",
            loss="tversky",
            sampling="balanced",
            optimizer="sgd",
            augmentation="light",
            mirror_axes=(1,),
            elastic=0.3,
            settings=("loss_config.alpha=0.3", "batch_size=3", "foreground_oversampling=1"),
        ),
    )
    assert (p.network, p.loss, p.sampling, p.optimizer) == (
        "attention_unet",
        "tversky",
        "balanced",
        "sgd",
    )
    assert p.learning_rate == 1e-2 and p.mirror_axes == (1,) and p.elastic == 0.3
    assert p.loss_config == {"alpha": 0.3} and p.batch_size == 3
    assert p.foreground_oversampling == 1.0 and isinstance(p.foreground_oversampling, float)
    for key in ("network", "loss", "sampling", "optimizer", "mirror_axes", "elastic"):
        assert "set by" in p.reasons[key]
    assert (
        p.reasons["augmentation"].startswith("light:")
        and "elastic p=0.3" in (p.reasons["augmentation"])
    )
    assert p.network_config["features"] == base_plan.network_config["features"]


def test_network_config_is_translated_for_each_network(base_plan) -> None:
    segnet = apply_choices(base_plan, PlanChoices(network="segnet"))
    assert "pool_sizes" in segnet.network_config and "strides" not in segnet.network_config
    fcn = apply_choices(base_plan, PlanChoices(network="fcn"))
    assert set(fcn.network_config) <= {"act", "norm", "channels", "padding"}
    vae = apply_choices(base_plan, PlanChoices(network="vae_unet"))
    assert "0.1 L2" in vae.reasons["loss"] and "0.1 KL" in vae.reasons["loss"]


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        (PlanChoices(network="nnformer"), "unknown network 'nnformer'; valid: attention_unet"),
        (PlanChoices(loss="lovasz"), "unknown loss 'lovasz'; valid: boundary"),
        (PlanChoices(sampling="random"), "valid: oversample, balanced, uniform"),
        (PlanChoices(optimizer="lamb"), "valid: adam, adamw, sgd"),
        (
            PlanChoices(augmentation="heavy"),
            "valid: nnunet_default, light, mri_artefacts, pathology, none",
        ),
        (PlanChoices(mirror_axes=(2,)), "axis 2 out of range; the images have 2 axes"),
        (PlanChoices(elastic=1.5), "elastic is a probability"),
        (PlanChoices(settings=("colour=red",)), "unknown plan key 'colour'"),
        (PlanChoices(settings=("batch_size=two",)), "batch_size: expected int"),
        (PlanChoices(settings=("batch_size",)), "expects KEY=VALUE"),
        (PlanChoices(settings=("patch_size=7",)), "expected a list"),
        (PlanChoices(settings=("labels={}",)), "unknown plan key 'labels'"),
        (PlanChoices(settings=("loss_config.gamma=2",)), "dice_ce has no option 'gamma'"),
        (PlanChoices(settings=("network_config.depth=3",)), "unet has no option 'depth'"),
        (PlanChoices(settings=("patch_size=[50, 64]",)), "divisible by (16, 16)"),
    ],
)
def test_bad_choices_are_refused_with_one_line(base_plan, choices, message) -> None:
    with pytest.raises(ConfigError) as err:
        apply_choices(base_plan, choices)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_network_that_cannot_take_the_patch_says_which_sizes_it_can(base_plan) -> None:
    with pytest.raises(ConfigError) as err:
        apply_choices(base_plan, PlanChoices(settings=("patch_size=[40, 64]",)))
    assert "nearest sizes per axis: [[32, 48], [64]]" in str(err.value)


@pytest.mark.parametrize("network", ["transunet", "unetr", "swin_unet"])
def test_a_transformer_gets_the_nearest_patch_it_can_take(base_plan, network) -> None:
    planned = replace(base_plan, patch_size=(40, 56))
    p = apply_choices(planned, PlanChoices(network=network))
    divisor = {"transunet": 16, "unetr": 16, "swin_unet": 8}[network]
    expected = {16: [48, 64], 8: [40, 56]}[divisor]  # nearest multiples, ties rounded up
    assert list(p.patch_size) == expected
    if divisor == 16:
        assert "rounded to multiples of [16, 16]" in p.reasons["patch_size"]
        assert p.network_config["image_size"] == expected  # position embeddings at the patch
    with pytest.raises(ConfigError, match=r"divisible by \(16, 16\)|\[\[32, 48\], \[48, 64\]\]"):
        apply_choices(planned, PlanChoices(network="unetr", settings=("patch_size=[40, 56]",)))


def test_elastic_appears_in_batches_when_on(base_plan) -> None:
    on = segmentation_augmentation(replace(base_plan, elastic=1.0))
    off = segmentation_augmentation(base_plan)
    spatial_on = next(t for t in on.transforms if isinstance(t, RandomSpatial))
    spatial_off = next(t for t in off.transforms if isinstance(t, RandomSpatial))
    generator = torch.Generator().manual_seed(0)
    displaced = spatial_on.sample_parameters(6, 2, generator)["elastic"]
    still = spatial_off.sample_parameters(6, 2, torch.Generator().manual_seed(0))["elastic"]
    applied = spatial_on.p  # the spatial transform's own probability gates every part
    assert spatial_on.p_elastic == 1.0 and spatial_off.p_elastic == 0.0
    assert still.abs().max() == 0
    if applied == 1.0:
        assert (displaced.flatten(1).abs().amax(1) > 0).all()
    # whole pipeline, everything else off: the elastic field moves a grid of lines
    image = torch.zeros(2, 1, 64, 64)
    image[:, :, ::8] = 1.0
    only_elastic = RandomSpatial(p_elastic=1.0, elastic_std_vox=(4.0, 4.0), seed=0)
    moved, _ = only_elastic(image, None)
    assert (moved - image).abs().mean() > 0.05


# ----------------------------------------------------------------------------------- CLI


def test_cli_plan_writes_the_choices_and_explains_them(phantoms: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "plan",
            str(phantoms),
            "-o",
            str(tmp_path / "r"),
            "--memory-gb",
            "0.1",
            "--network",
            "residual_unet",
            "--loss",
            "iou",
            "--sampling",
            "uniform",
            "--mirror-axes",
            "none",
            "--elastic",
            "0.25",
            "--set",
            "num_epochs=7",
            "--explain",
        ],
    )
    assert result.exit_code == 0, result.output
    p = Plans.from_json(tmp_path / "r" / "plans.json")["2d"]
    assert (p.network, p.loss, p.sampling, p.mirror_axes, p.elastic, p.num_epochs) == (
        "residual_unet",
        "iou",
        "uniform",
        (),
        0.25,
        7,
    )
    assert "loss: iou" in result.output and "mirror_axes: []" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--network", "nnformer"],
        ["--loss", "lovasz"],
        ["--mirror-axes", "3"],
        ["--set", "colour=red"],
        ["--set", "batch_size=two"],
        ["--n4", "2"],
    ],
)
def test_cli_bad_choices_exit_1_and_write_nothing(
    phantoms: Path, tmp_path: Path, args: list[str]
) -> None:
    out = tmp_path / "r"
    result = CliRunner().invoke(app, ["plan", str(phantoms), "-o", str(out), *args])
    # the console script prints a MedsegError as one "error: ..." line (tests/cli)
    assert result.exit_code == 1 and isinstance(result.exception, MedsegError), result.output
    assert "\n" not in str(result.exception)
    assert not out.exists() or not any(out.iterdir())
