"""``medseg slide predict`` and ``medseg slide evaluate`` on a small phantom slide."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medseg.cli.slide import app
from medseg.data.phantoms_slide import phantom_slide
from medseg.io.slide import open_slide
from medseg.planning.plan import Plan
from medseg.training.checkpoint import build_model, save_checkpoint

LABELS = {"background": 0, "tissue": 1, "gland": 2, "nucleus": 3}


def results_folder(root: Path) -> Path:
    """A ``2d`` RGB plan (4 labels, 32 x 32 patch) with one untrained fold."""
    plan = Plan(
        configuration="2d", spatial_dims=2, spacing=(1.0, 1.0), median_shape=(32, 32),
        patch_size=(32, 32), batch_size=2, normalization=("zscore",) * 3, intensity={},
        num_classes=4, in_channels=3, labels=dict(LABELS),
        network_config={"features": [4, 8], "strides": [[1, 1], [2, 2]], "norm": "instance",
                        "deep_supervision": True},
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(plan)
    path = root / "results" / "2d" / "fold_0" / "checkpoint_best.pt"
    save_checkpoint(
        path,
        network_state=model.state_dict(),
        plan=plan.to_dict(),
        epoch=0,
        step=0,
        fold=0,
        configuration="2d",
    )
    return root / "results"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors: one thread avoids OpenMP overhead (large on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("slide")
    phantom_slide(root / "s.ome.tif", size=(256, 192), mpp=4.0, seed=1, tile=128)
    return root


def test_predict_then_evaluate(slide, tmp_path):
    results = results_folder(tmp_path)
    mask, heat = tmp_path / "m.ome.tif", tmp_path / "h.tif"
    args = [
        "predict",
        str(slide / "s.ome.tif"),
        "-m",
        str(results),
        "-o",
        str(mask),
        "--heatmap",
        str(heat),
        "--heatmap-downsample",
        "4",
        "--batch-size",
        "4",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "256 x 192 pixels" in result.output
    with open_slide(mask) as m, open_slide(heat) as h:
        assert m.levels[0].shape == (256, 192) and m.mpp == pytest.approx(4.0)
        assert h.levels[0].shape == (64, 48) and h.mpp == pytest.approx(16.0)
        values = set(np.unique(m.read_region(0, 0, 0, 256, 192)).tolist())
    assert values <= set(LABELS.values())
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({"labels": LABELS}))
    out = tmp_path / "eval.json"
    ref = slide / "s_labels.ome.tif"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(mask),
            str(ref),
            "--labels",
            str(dataset),
            "--json",
            str(out),
            "--tile",
            "64",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert set(saved["labels"]) == {"tissue", "gland", "nucleus"}
    assert "tissue: Dice" in result.output


def test_existing_mask_needs_overwrite(slide, tmp_path):
    results = results_folder(tmp_path)
    (tmp_path / "m.tif").write_bytes(b"x")
    args = [
        "predict",
        str(slide / "s.ome.tif"),
        "-m",
        str(results),
        "-o",
        str(tmp_path / "m.tif"),
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "--overwrite" in str(result.exception)


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["--tile-size", "8"], "--tile-size"),
        (["--batch-size", "0"], "--batch-size"),
        (["--overlap", "1"], "--overlap"),
        (["--mpp", "-1"], "--mpp"),
        (["--heatmap-downsample", "0"], "--heatmap-downsample"),
        (["--device", "tpu"], "--device"),
    ],
)
def test_bad_values_are_usage_errors(slide, tmp_path, extra, option):
    args = [
        "predict",
        str(slide / "s.ome.tif"),
        "-m",
        str(tmp_path),
        "-o",
        str(tmp_path / "m.tif"),
        *extra,
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and option in result.output


def test_sizes_that_differ_fail_in_one_line(slide, tmp_path):
    phantom_slide(tmp_path / "o.ome.tif", size=(128, 192), mpp=4.0, seed=1, tile=128)
    result = CliRunner().invoke(
        app, ["evaluate", str(tmp_path / "o_labels.ome.tif"), str(slide / "s_labels.ome.tif")]
    )
    assert result.exit_code == 1
    assert "128 x 192" in str(result.exception) and "256 x 192" in str(result.exception)


def test_medseg_evaluate_takes_two_slide_masks(slide, tmp_path):
    from medseg.cli.main import app as main_app
    from medseg.evaluation.slide import evaluate_slide

    ref = slide / "s_labels.ome.tif"
    out = tmp_path / "eval"
    args = ["evaluate", "--pred", str(ref), "--ref", str(ref), "-o", str(out), "--labels", "1,3"]
    result = CliRunner().invoke(main_app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "slide_summary.json").read_text(encoding="utf-8"))
    expected = evaluate_slide(ref, ref, {"1": (1,), "3": (3,)})
    assert set(saved["labels"]) == {"1", "3"}
    for name in ("1", "3"):  # a mask against itself: perfect, and the same as the Python call
        assert saved["labels"][name]["dice"] == expected["labels"][name]["dice"] == 1.0


def test_slide_tiles_get_the_plans_stain_normaliser_as_preprocessing_does(slide):
    from dataclasses import replace

    from medseg.inference.slide_model import SlideModel
    from medseg.planning.preprocessing import preprocess_arrays
    from medseg.transforms import MacenkoNormalizer

    with open_slide(slide / "s.ome.tif") as s:
        tile = s.read_region(0, 0, 0, 256, 192)  # all of it: glass and tissue
    chw = np.moveaxis(tile, -1, 0).astype(np.float32)
    stain = MacenkoNormalizer().fit(torch.from_numpy(chw)[None]).to_dict()
    stain["stains"] = [[0.6, 0.75, 0.28], [0.1, 0.95, 0.3]]  # another hospital's reference
    plan = Plan(
        configuration="2d", spatial_dims=2, spacing=(1.0, 1.0), median_shape=(64, 64),
        patch_size=(64, 64), batch_size=2, normalization=("rgb",) * 3, intensity={},
        num_classes=4, in_channels=3, labels=dict(LABELS), augmentation="pathology",
        stain_normalizer=stain,
    )  # fmt: skip
    model = SlideModel(networks=[], plan=plan, device=torch.device("cpu"))
    expected, _, _ = preprocess_arrays(chw, None, (1.0, 1.0), plan)
    assert expected.shape == chw.shape  # no crop, no resampling: the same pixels
    np.testing.assert_allclose(model.prepare(tile), expected, atol=1e-6)
    plain = SlideModel(networks=[], plan=replace(plan, stain_normalizer={}), device=model.device)
    assert np.abs(plain.prepare(tile) - expected).max() > 0.01  # the normaliser did something


def test_predict_defaults_to_the_resolution_the_model_was_trained_at(slide, tmp_path):
    from medseg.planning.slide import SLIDE_FILE

    results = results_folder(tmp_path)
    (results / SLIDE_FILE).write_text(json.dumps({"slide": {"mpp": 8.0}}), encoding="utf-8")
    mask = tmp_path / "m.ome.tif"
    args = ["predict", str(slide / "s.ome.tif"), "-m", str(results), "-o", str(mask)]
    result = CliRunner().invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with open_slide(mask) as m:  # the slide is 256 x 192 at 4 um/px: half that at 8 um/px
        assert m.levels[0].shape == (128, 96) and m.mpp == pytest.approx(8.0)
