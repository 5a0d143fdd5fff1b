"""predict_case geometry and ensembling; predict on a folder (phantoms, untrained checkpoints)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from medseg.cli.predict import register
from medseg.errors import ConfigError, DatasetError, OverwriteError
from medseg.inference import find_checkpoints, keep_largest_component, predict, predict_case
from medseg.io import Image, read_image, write_image

from .conftest import make_model, make_plan

ROTATION = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _image(shape, spacing, *, channels=1, origin=None, direction=None, border=0, seed=0) -> Image:
    rng = np.random.default_rng(seed)
    array = rng.normal(5.0, 1.0, (channels, *shape)).astype(np.float32)
    if border:  # a zero frame: preprocessing crops it and the export pads it back
        inner = np.zeros(shape, bool)
        inner[tuple(slice(border, -border) for _ in shape)] = True
        array *= inner
    return Image(array, spacing, origin or (), direction or ())


GEOMETRY_CASES = {
    "2d": (
        dict(
            shape=(30, 26), spacing=(0.8, 1.1), origin=(4.0, -2.0), direction=(0.0, 1.0, 1.0, 0.0)
        ),
        dict(configuration="2d", spatial_dims=2, spacing=(1.0, 1.0), patch_size=(16, 16)),
    ),
    "3d": (
        dict(
            shape=(12, 20, 18),
            spacing=(1.0, 1.0, 1.0),
            origin=(1.0, 2.0, 3.0),
            direction=ROTATION,
            border=2,
        ),
        dict(spacing=(1.0, 1.0, 1.0), patch_size=(8, 16, 16)),
    ),
    "anisotropic": (
        dict(shape=(7, 30, 22), spacing=(5.0, 0.7, 0.9), origin=(-5.0, 0.0, 9.0)),
        dict(spacing=(4.0, 1.0, 1.0), patch_size=(4, 16, 16)),
    ),
    "2d_plan_on_3d": (
        dict(shape=(6, 21, 19), spacing=(3.0, 0.9, 0.9), direction=ROTATION, border=1),
        dict(configuration="2d", spatial_dims=2, spacing=(3.0, 1.0, 1.0), patch_size=(16, 16)),
    ),
}


@pytest.mark.parametrize("name", list(GEOMETRY_CASES))
def test_prediction_has_the_input_geometry(name: str) -> None:
    image_kw, plan_kw = GEOMETRY_CASES[name]
    image = _image(**image_kw)
    plan = make_plan(**plan_kw)
    probs, label = predict_case(
        [(make_model(plan), plan)], image, mirror=name == "2d", device="cpu"
    )
    assert probs.shape == (3, *image.spatial_shape)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    assert label.array.shape == image.spatial_shape
    assert label.same_grid(image, rtol=0, atol=0)
    assert (
        label.spacing == image.spacing
        and label.origin == image.origin
        and label.direction == image.direction
    )
    assert set(np.unique(label.array)) <= {0, 1, 2}
    np.testing.assert_array_equal(label.array, probs.argmax(0))


def test_outside_the_crop_box_is_background() -> None:
    image = _image((12, 20, 18), (1.0, 1.0, 1.0), border=3)
    plan = make_plan()
    probs, label = predict_case([(make_model(plan), plan)], image, mirror=False, device="cpu")
    assert np.all(probs[0, :3] == 1.0) and np.all(label.array[:3] == 0)


def test_label_values_follow_the_plan_labels() -> None:
    plan = make_plan(labels={"background": 0, "a": 1, "b": 2}, patch_size=(8, 16, 16))
    image = _image((8, 16, 16), (1.0, 1.0, 1.0))
    probs, label = predict_case([(make_model(plan), plan)], image, mirror=False, device="cpu")
    np.testing.assert_array_equal(label.array, probs.argmax(0))


def test_ensemble_is_the_mean_of_the_models_probabilities() -> None:
    image = _image((8, 24, 20), (3.0, 0.9, 0.9), seed=1)
    fold0 = make_plan(spacing=(3.0, 1.0, 1.0))
    fold1 = make_plan(spacing=(3.0, 1.0, 1.0))
    other = make_plan(configuration="3d_lowres", spacing=(3.0, 1.6, 1.6), patch_size=(4, 8, 8))
    slices = make_plan(
        configuration="2d", spatial_dims=2, spacing=(3.0, 1.0, 1.0), patch_size=(16, 16)
    )
    models = [
        (make_model(fold0, 0), fold0),
        (make_model(fold1, 1), fold1),
        (make_model(other, 2), other),
        (make_model(slices, 3), slices),
    ]
    singles = [predict_case([m], image, mirror=False, device="cpu")[0] for m in models]
    together, label = predict_case(models, image, mirror=False, device="cpu")
    np.testing.assert_allclose(together, np.mean(singles, axis=0), atol=1e-5)
    np.testing.assert_array_equal(label.array, together.argmax(0))


def test_test_time_tile_size_may_differ_from_the_plan() -> None:
    plan = make_plan(patch_size=(8, 16, 16))
    image = _image((10, 30, 26), (1.0, 1.0, 1.0))
    probs, _ = predict_case(
        [(make_model(plan), plan)], image, mirror=False, device="cpu", patch_size=(4, 8, 8)
    )
    assert probs.shape == (3, 10, 30, 26)
    with pytest.raises(ConfigError, match="required divisor"):
        predict_case([(make_model(plan), plan)], image, device="cpu", patch_size=(4, 7, 8))


def test_predict_case_rejects_a_wrong_channel_count() -> None:
    plan = make_plan(in_channels=2)
    with pytest.raises(DatasetError, match="1 channel.*expects 2"):
        predict_case([(make_model(plan), plan)], _image((8, 16, 16), (1.0, 1.0, 1.0)), device="cpu")


def test_predict_case_rejects_models_with_different_labels() -> None:
    a, b = make_plan(), make_plan(labels={"background": 0, "x": 1})
    with pytest.raises(ConfigError, match="different labels"):
        predict_case([(make_model(a), a), (make_model(b), b)], _image((8, 16, 16), (1.0, 1.0, 1.0)))


# ---------------------------------------------------------------- predict on a folder


def test_predict_writes_one_file_per_case_in_the_input_geometry(phantom_results, tmp_path) -> None:
    out = tmp_path / "out"
    written = predict(
        phantom_results["images"],
        out,
        phantom_results["results"],
        mirror=False,
        device="cpu",
        save_probabilities=True,
    )
    assert [p.name for p in written] == [f"phantom_00{i}.nii.gz" for i in range(3)]
    for path in written:
        source = read_image(
            phantom_results["images"] / path.name.replace(".nii.gz", "_0000.nii.gz")
        )
        label = read_image(path)
        assert label.same_grid(source)
        probs = np.load(out / path.name.replace(".nii.gz", ".npz"))["probabilities"]
        assert probs.shape == (4, *source.spatial_shape)
        np.testing.assert_array_equal(label.array, probs.argmax(0))


def test_predict_refuses_to_overwrite(phantom_results, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "phantom_001.nii.gz").write_text("keep me", encoding="utf-8")
    with pytest.raises(OverwriteError, match="phantom_001"):
        predict(
            phantom_results["images"],
            out,
            phantom_results["results"],
            configurations=["3d_fullres"],
            folds=[0],
            mirror=False,
            device="cpu",
        )
    assert (out / "phantom_001.nii.gz").read_text(encoding="utf-8") == "keep me"
    assert not (out / "phantom_000.nii.gz").exists()  # checked before any work
    predict(
        phantom_results["images"],
        out,
        phantom_results["results"],
        configurations=["3d_fullres"],
        folds=[0],
        mirror=False,
        device="cpu",
        overwrite=True,
    )
    assert read_image(out / "phantom_001.nii.gz").array.shape == (16, 16, 16)


def test_predict_names_the_case_with_a_wrong_channel_count(phantom_results, tmp_path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    source = phantom_results["images"] / "phantom_000_0000.nii.gz"
    shutil.copyfile(source, images / "case_a_0000.nii.gz")
    shutil.copyfile(source, images / "case_b_0000.nii.gz")
    shutil.copyfile(source, images / "case_b_0001.nii.gz")
    with pytest.raises(DatasetError, match="case case_b has 2 channel.*the model expects 1"):
        predict(
            images,
            tmp_path / "out",
            phantom_results["results"],
            configurations=["3d_fullres"],
            folds=[0],
            mirror=False,
            device="cpu",
        )


def test_predict_is_deterministic(phantom_results, tmp_path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        predict(
            phantom_results["images"],
            out,
            phantom_results["results"],
            mirror=True,
            device="cpu",
            save_probabilities=True,
        )
        runs.append([np.load(p)["probabilities"] for p in sorted(out.glob("*.npz"))])
    for first, second in zip(*runs, strict=True):
        np.testing.assert_array_equal(first, second)


def test_missing_fold_error_lists_what_exists(phantom_results, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"fold\(s\) 3.*3d_fullres/fold_0: checkpoint_best.pt"):
        find_checkpoints(phantom_results["results"], configurations=["3d_fullres"], folds=[0, 3])
    with pytest.raises(ConfigError, match="any fold.*2d/fold_0"):
        find_checkpoints(phantom_results["results"], configurations=["3d_lowres"])
    with pytest.raises(ConfigError, match="no checkpoint_latest.pt"):
        find_checkpoints(phantom_results["results"], checkpoint="latest")


def test_default_ensemble_is_every_trained_fold(phantom_results) -> None:
    paths = find_checkpoints(phantom_results["results"])
    names = sorted(str(p.relative_to(phantom_results["results"])) for p in paths)
    assert names == [
        "2d/fold_0/checkpoint_best.pt",
        "3d_fullres/fold_0/checkpoint_best.pt",
        "3d_fullres/fold_1/checkpoint_best.pt",
    ]


def test_predict_applies_postprocessing_json(phantom_results, tmp_path) -> None:
    results = tmp_path / "results"
    shutil.copytree(phantom_results["results"], results)
    (results / "postprocessing.json").write_text(
        json.dumps({"keep_largest_component": [1, 2, 3]}), encoding="utf-8"
    )
    kw = dict(configurations=["3d_fullres"], folds=[0], mirror=False, device="cpu")
    raw = predict(phantom_results["images"], tmp_path / "raw", results, postprocess=False, **kw)
    done = predict(phantom_results["images"], tmp_path / "done", results, **kw)
    for raw_path, done_path in zip(raw, done, strict=True):
        expected = keep_largest_component(read_image(raw_path).array, [1, 2, 3])
        np.testing.assert_array_equal(read_image(done_path).array, expected)


def test_predict_reads_the_imagesTs_of_a_dataset_folder(phantom_results, tmp_path) -> None:
    dataset = tmp_path / "dataset"
    shutil.copytree(phantom_results["dataset"], dataset)
    (dataset / "imagesTs").mkdir()
    shutil.copyfile(
        phantom_results["images"] / "phantom_002_0000.nii.gz",
        dataset / "imagesTs" / "test_0000.nii.gz",
    )
    written = predict(
        dataset,
        tmp_path / "out",
        phantom_results["results"],
        configurations=["2d"],
        mirror=False,
        device="cpu",
    )
    assert [p.name for p in written] == ["test.nii.gz"]


def test_predict_warns_about_a_very_different_spacing(phantom_results, tmp_path, caplog) -> None:
    images = tmp_path / "images"
    source = read_image(phantom_results["images"] / "phantom_000_0000.nii.gz")
    write_image(Image(source.array[:, ::4, ::4], (4.0, 16.0, 16.0)), images / "coarse_0000.nii.gz")
    with caplog.at_level(logging.WARNING, logger="medseg.inference.predict"):
        predict(
            images,
            tmp_path / "out",
            phantom_results["results"],
            configurations=["3d_fullres"],
            folds=[0],
            mirror=False,
            device="cpu",
        )
    assert "coarse" in caplog.text and "differs more than 2x" in caplog.text


def test_cli_predict_prints_a_summary(phantom_results, tmp_path) -> None:
    app = typer.Typer()
    register(app)
    app.callback()(lambda: None)  # keep "predict" a subcommand
    out = tmp_path / "out"
    args = [
        "predict",
        "-i",
        str(phantom_results["images"]),
        "-o",
        str(out),
        "-m",
        str(phantom_results["results"]),
        "--config",
        "3d_fullres",
        "--folds",
        "0,1",
        "--no-mirror",
        "--overlap",
        "0.25",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "3 case(s) done" in result.output and str(out) in result.output
    assert len(list(out.glob("*.nii.gz"))) == 3
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    again = CliRunner().invoke(app, args)  # the same run again: every output verifies and is kept
    assert again.exit_code == 0, again.output
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")} == stamps
    other = CliRunner().invoke(app, [*args[:-3], "0.5", *args[-2:]])  # --overlap 0.5: other outputs
    assert isinstance(other.exception, OverwriteError) and "--overwrite" in str(other.exception)


def test_output_folder_must_differ_from_the_input(phantom_results) -> None:
    with pytest.raises(ConfigError, match="differ"):
        predict(phantom_results["images"], phantom_results["images"], phantom_results["results"])
