"""Synthetic phantoms: determinism, nnU-Net layout, and one measurable effect per knob."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from scipy import ndimage
from typer.testing import CliRunner

from medseg.cli.phantoms import register
from medseg.data.phantoms import (
    TISSUE_LEVELS,
    PhantomConfig,
    case_seed,
    generate_case,
    generate_dataset,
)
from medseg.errors import ConfigError, OverwriteError
from medseg.io import read_image

# noise-free, bias-free: only the knob under test changes the image
CLEAN = PhantomConfig(noise_std=0.0, bias_strength=0.0, p_absent=0.0)


def _interior(label: np.ndarray, value: int, *, iterations: int = 2) -> np.ndarray:
    """Voxels of ``value`` away from its boundary (no partial volume there)."""
    return ndimage.binary_erosion(label == value, iterations=iterations)


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_same_seed_gives_identical_arrays(spatial_dims: int) -> None:
    a_img, a_lab = generate_case(PhantomConfig(), 7, spatial_dims=spatial_dims)
    b_img, b_lab = generate_case(PhantomConfig(), 7, spatial_dims=spatial_dims)
    assert a_img.array.tobytes() == b_img.array.tobytes()
    assert a_lab.array.tobytes() == b_lab.array.tobytes()
    assert a_img.same_grid(b_img) and a_img.same_grid(a_lab)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_different_seeds_give_different_cases(spatial_dims: int) -> None:
    a_img, a_lab = generate_case(PhantomConfig(), 1, spatial_dims=spatial_dims)
    b_img, b_lab = generate_case(PhantomConfig(), 2, spatial_dims=spatial_dims)
    assert not np.array_equal(a_img.array, b_img.array)
    assert not np.array_equal(a_lab.array, b_lab.array)


def test_dataset_files_are_byte_identical_across_runs(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a", spatial_dims=2, num_cases=3, seed=5)
    generate_dataset(tmp_path / "b", spatial_dims=2, num_cases=3, seed=5)
    generate_dataset(tmp_path / "c", spatial_dims=2, num_cases=3, seed=6)
    a, b, c = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert a == b  # gzip headers carry no timestamp, so whole files match
    assert a["imagesTr/phantom_000_0000.nii.gz"] != c["imagesTr/phantom_000_0000.nii.gz"]


def test_case_seeds_do_not_depend_on_dataset_size() -> None:
    assert [case_seed(3, i) for i in range(2)] == [case_seed(3, i) for i in range(5)][:2]
    assert len({case_seed(s, i) for s in range(4) for i in range(50)}) == 200


def test_knobs_leave_the_anatomy_of_a_seed_unchanged() -> None:
    _, reference = generate_case(PhantomConfig(), 3, spatial_dims=2)
    for change in (
        {"noise": "rician"},
        {"bias_strength": 0.5},
        {"streak_strength": 0.4},
        {"contrast": 0.2},
        {"noise_std": 0.2},
    ):
        _, label = generate_case(dataclasses.replace(PhantomConfig(), **change), 3, spatial_dims=2)
        assert np.array_equal(label.array, reference.array), change


# ---------------------------------------------------------------- layout


def test_dataset_has_nnunet_v2_layout_and_dataset_json(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "ds", spatial_dims=3, num_cases=2, seed=0)
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert set(meta) == {
        "name",
        "description",
        "channel_names",
        "labels",
        "numTraining",
        "file_ending",
    }
    assert meta["channel_names"] == {"0": "MRI"}
    assert meta["labels"] == {"background": 0, "organ": 1, "lesion": 2, "vessel": 3}
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [
        "phantom_000_0000.nii.gz",
        "phantom_001_0000.nii.gz",
    ]
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == [
        "phantom_000.nii.gz",
        "phantom_001.nii.gz",
    ]
    image, label = (
        read_image(out / "imagesTr/phantom_000_0000.nii.gz"),
        read_image(out / "labelsTr/phantom_000.nii.gz"),
    )
    assert image.spatial_shape == (32, 64, 64) and image.spacing == (2.0, 1.0, 1.0)
    assert image.array.dtype == np.float32 and label.array.dtype == np.uint8
    assert image.same_grid(label)


def test_phantom_json_records_how_to_regenerate_each_case(tmp_path: Path) -> None:
    config = PhantomConfig(noise="speckle", noise_std=0.2, streak_strength=0.1)
    out = generate_dataset(tmp_path / "ds", spatial_dims=2, num_cases=2, seed=4, config=config)
    record = json.loads((out / "phantom.json").read_text(encoding="utf-8"))
    assert record["seed"] == 4 and record["spatial_dims"] == 2
    assert PhantomConfig.from_json(out / "phantom.json") == config
    case = record["cases"][1]
    image, label = generate_case(config, case["seed"], spatial_dims=2)
    assert np.array_equal(read_image(out / "imagesTr/phantom_001_0000.nii.gz").array, image.array)
    present = [n for n, v in config.label_values().items() if v and (label.array == v).any()]
    assert case["labels_present"] == present


def test_2d_dataset_is_nifti_with_two_spatial_dims(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "ds", spatial_dims=2, num_cases=1, seed=0)
    image = read_image(out / "imagesTr/phantom_000_0000.nii.gz")
    assert (
        image.spatial_dims == 2
        and image.spatial_shape == (128, 128)
        and image.spacing == (1.0, 1.0)
    )


def test_png_dataset_stores_uint8_pictures(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "ds", spatial_dims=2, num_cases=1, file_ending=".png")
    image, label = (
        read_image(out / "imagesTr/phantom_000_0000.png"),
        read_image(out / "labelsTr/phantom_000.png"),
    )
    assert image.array.dtype == np.uint8 and image.spatial_shape == (128, 128)
    assert set(np.unique(label.array)) <= {0, 1, 2, 3}
    assert json.loads((out / "dataset.json").read_text(encoding="utf-8"))["file_ending"] == ".png"


def test_png_is_rejected_for_3d(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="spatial_dims=2"):
        generate_dataset(tmp_path / "ds", spatial_dims=3, num_cases=1, file_ending=".png")


def test_custom_label_set_numbers_labels_in_order() -> None:
    config = dataclasses.replace(CLEAN, labels=("vessel", "organ"), optional_labels=())
    assert config.label_values() == {"background": 0, "vessel": 1, "organ": 2}
    _, label = generate_case(config, 0, spatial_dims=2)
    assert set(np.unique(label.array)) == {0, 1, 2}


# ---------------------------------------------------------------- overwrite rule


def test_refuses_to_write_into_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OverwriteError, match=rf"{tmp_path.name}.*--overwrite"):
        generate_dataset(tmp_path, spatial_dims=2, num_cases=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_overwrite_replaces_only_the_generators_own_files(tmp_path: Path) -> None:
    generate_dataset(tmp_path, spatial_dims=2, num_cases=3, seed=0)
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    generate_dataset(tmp_path, spatial_dims=2, num_cases=2, seed=1, overwrite=True)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in (tmp_path / "labelsTr").iterdir()) == [
        "phantom_000.nii.gz",
        "phantom_001.nii.gz",
    ]
    assert json.loads((tmp_path / "phantom.json").read_text(encoding="utf-8"))["seed"] == 1


def test_overwrite_refuses_foreign_files_in_images_folder(tmp_path: Path) -> None:
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "imagesTr" / "patient_7_0000.nii.gz").write_bytes(b"real data")
    with pytest.raises(OverwriteError, match="patient_7_0000.nii.gz"):
        generate_dataset(tmp_path, spatial_dims=2, num_cases=1, overwrite=True)
    assert (tmp_path / "imagesTr" / "patient_7_0000.nii.gz").read_bytes() == b"real data"


# ---------------------------------------------------------------- one effect per knob


def test_gaussian_noise_std_in_air_matches_noise_std() -> None:
    clean, _ = generate_case(dataclasses.replace(CLEAN), 0, spatial_dims=3)
    noisy, _ = generate_case(dataclasses.replace(CLEAN, noise_std=0.1), 0, spatial_dims=3)
    air = clean.array == 0
    assert air.sum() > 10_000
    assert noisy.array[air].std() == pytest.approx(0.1, rel=0.03)
    assert abs(noisy.array[air].mean()) < 0.01


def test_rician_noise_biases_the_background_upwards() -> None:
    clean, _ = generate_case(CLEAN, 0, spatial_dims=3)
    noisy, _ = generate_case(
        dataclasses.replace(CLEAN, noise="rician", noise_std=0.1), 0, spatial_dims=3
    )
    air = noisy.array[clean.array == 0]
    assert air.min() >= 0
    assert air.mean() == pytest.approx(0.1 * np.sqrt(np.pi / 2), rel=0.03)  # Rayleigh mean


def test_speckle_noise_is_multiplicative() -> None:
    clean, label = generate_case(CLEAN, 0, spatial_dims=2)
    noisy, _ = generate_case(
        dataclasses.replace(CLEAN, noise="speckle", noise_std=0.2), 0, spatial_dims=2
    )
    assert np.all(noisy.array[clean.array == 0] == 0)
    organ = noisy.array[_interior(label.array, 1)]
    assert organ.std() / organ.mean() == pytest.approx(0.2, rel=0.1)


def test_bias_field_is_smooth_bounded_and_multiplicative() -> None:
    clean, label = generate_case(CLEAN, 2, spatial_dims=2)
    stds = []
    for strength in (0.0, 0.1, 0.3):
        biased, _ = generate_case(
            dataclasses.replace(CLEAN, bias_strength=strength), 2, spatial_dims=2
        )
        stds.append(biased.array[_interior(label.array, 1)].std())
    assert stds[0] < 1e-6 < stds[1] < stds[2]
    body = clean.array > 0.1
    log_field = np.zeros_like(clean.array)
    log_field[body] = np.log(biased.array[body] / clean.array[body])
    assert np.abs(log_field[body]).max() <= 0.3 + 1e-5
    curvature = np.abs(np.diff(log_field, 2, axis=1))[body[:, 2:] & body[:, :-2] & body[:, 1:-1]]
    assert curvature.max() < 1e-3  # low frequency: no sharp changes


def test_partial_volume_creates_intermediate_intensities_at_boundaries() -> None:
    levels = np.array(list(TISSUE_LEVELS.values()))
    counts = []
    for supersample in (1, 3):
        image, label = generate_case(
            dataclasses.replace(CLEAN, supersample=supersample), 0, spatial_dims=2
        )
        off_level = np.abs(image.array[..., None] - levels).min(axis=-1) > 1e-4
        counts.append(int(off_level.sum()))
        boundary = ndimage.morphological_gradient(label.array, size=3) > 0
    assert counts[0] == 0 and counts[1] > 300
    assert boundary[off_level & (image.array > 0.5)].mean() > 0.9  # mixed voxels sit on label edges


def test_anisotropic_spacing_samples_the_same_anatomy_with_fewer_slices() -> None:
    volumes = {}
    for z_mm in (1.0, 4.0):
        config = CLEAN.with_slice_spacing(z_mm, spatial_dims=3)
        image, label = generate_case(config, 1, spatial_dims=3)
        assert image.spacing == (z_mm, 1.0, 1.0)
        assert image.spatial_shape == (round(64 / z_mm), 64, 64)
        volumes[z_mm] = (label.array == 1).sum() * np.prod(image.spacing)
    assert volumes[4.0] == pytest.approx(volumes[1.0], rel=0.1)


def test_streaks_add_thin_lines_of_extra_variance() -> None:
    clean, _ = generate_case(CLEAN, 0, spatial_dims=2)
    streaked, _ = generate_case(dataclasses.replace(CLEAN, streak_strength=0.5), 0, spatial_dims=2)
    diff = streaked.array - clean.array
    assert streaked.array.var() > clean.array.var()
    on_line = np.abs(diff) > 0.2
    assert 0.005 < on_line.mean() < 0.25  # visible, but only along thin lines
    assert diff.max() > 0.2 or diff.min() < -0.2


def test_low_contrast_shrinks_the_organ_lesion_difference() -> None:
    differences = []
    for contrast in (1.0, 0.3):
        config = dataclasses.replace(CLEAN, contrast=contrast, supersample=1)
        image, label = generate_case(config, 0, spatial_dims=2)
        differences.append(
            image.array[label.array == 1].mean() - image.array[label.array == 2].mean()
        )
    assert differences[0] == pytest.approx(0.2, abs=1e-5)
    assert differences[1] == pytest.approx(0.3 * 0.2, abs=1e-5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_p_absent_controls_missing_lesions(spatial_dims: int) -> None:
    for seed in range(4):
        _, always = generate_case(CLEAN, seed, spatial_dims=spatial_dims)
        _, never = generate_case(
            dataclasses.replace(CLEAN, p_absent=1.0), seed, spatial_dims=spatial_dims
        )
        assert set(np.unique(always.array)) == {0, 1, 2, 3}
        assert set(np.unique(never.array)) == {0, 1, 3}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_organ_shapes_vary_across_seeds(spatial_dims: int) -> None:
    organs = [generate_case(CLEAN, s, spatial_dims=spatial_dims)[1].array == 1 for s in range(3)]
    for a, b in ((0, 1), (1, 2), (0, 2)):
        dice = 2 * (organs[a] & organs[b]).sum() / (organs[a].sum() + organs[b].sum())
        assert dice < 0.95


def test_vessel_is_thin() -> None:
    _, label = generate_case(CLEAN, 0, spatial_dims=2)
    vessel = label.array == 3
    assert vessel.any() and not ndimage.binary_erosion(vessel, iterations=3).any()


# ---------------------------------------------------------------- config


def test_config_round_trips_through_json(tmp_path: Path) -> None:
    config = PhantomConfig(noise="rician", spacing=(3.0, 1.0, 1.0), labels=("organ", "lesion"))
    config.to_json(tmp_path / "c.json")
    assert PhantomConfig.from_json(tmp_path / "c.json") == config


def test_unknown_config_key_is_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match="noise_sd"):
        PhantomConfig.from_dict({"noise_sd": 0.1})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"noise": "poisson"}, "noise"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"contrast": float("nan")}, "contrast"),
        ({"p_absent": 1.5}, "p_absent"),
        ({"supersample": 0}, "supersample"),
        ({"labels": ("organ", "bone")}, "labels"),
        ({"labels": ("organ",)}, "optional_labels"),
        ({"spacing": (0.0, 1.0)}, "spacing"),
    ],
)
def test_invalid_knob_is_rejected(change: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(PhantomConfig(), **change)


def test_spacing_of_the_wrong_length_is_rejected() -> None:
    with pytest.raises(ConfigError, match="spatial_dims is 3"):
        generate_case(PhantomConfig(spacing=(1.0, 1.0)), 0, spatial_dims=3)


# ---------------------------------------------------------------- CLI


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def data() -> None:  # a group, like ``medseg data``
        """Data commands."""

    register(app)
    return app


def test_cli_writes_dataset_and_prints_summary(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        _app(),
        [
            "phantoms",
            str(out),
            "--dims",
            "3",
            "--cases",
            "2",
            "--seed",
            "3",
            "--noise",
            "rician",
            "--noise-std",
            "0.1",
            "--bias",
            "0.3",
            "--streaks",
            "0.2",
            "--contrast",
            "0.5",
            "--anisotropy",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 3D phantom case(s)" in result.output and "16 x 64 x 64" in result.output
    config = PhantomConfig.from_json(out / "phantom.json")
    assert (config.noise, config.noise_std, config.bias_strength) == ("rician", 0.1, 0.3)
    assert (config.streak_strength, config.contrast, config.spacing) == (0.2, 0.5, (4.0, 1.0, 1.0))


def test_cli_refuses_non_empty_folder_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("x", encoding="utf-8")
    result = CliRunner().invoke(_app(), ["phantoms", str(tmp_path), "--dims", "2", "--cases", "1"])
    assert isinstance(result.exception, OverwriteError)
    assert "--overwrite" in str(result.exception)


def test_cli_size_preset_sets_the_grid_and_its_supersampling(tmp_path: Path) -> None:
    out = tmp_path / "small"
    result = CliRunner().invoke(_app(), ["phantoms", str(out), "--cases", "1", "--size", "small"])
    assert result.exit_code == 0, result.output
    assert "16 x 16 x 16" in result.output
    assert PhantomConfig.from_json(out / "phantom.json").supersample == 1
    # an explicit --supersample still wins over the preset's
    result = CliRunner().invoke(
        _app(),
        ["phantoms", str(out), "--cases", "1", "--size", "small", "--supersample", "3"]
        + ["--overwrite"],
    )
    assert PhantomConfig.from_json(out / "phantom.json").supersample == 3


@pytest.mark.parametrize(
    ("task", "marker"),
    [("registration", "pairs.json"), ("denoise", "denoise.json"), ("instances", "instances.json")],
)
def test_cli_task_writes_that_task_s_phantoms(tmp_path: Path, task: str, marker: str) -> None:
    out = tmp_path / task
    result = CliRunner().invoke(
        _app(), ["phantoms", str(out), "--task", task, "--dims", "2", "--cases", "2"]
    )
    assert result.exit_code == 0, result.output
    assert f"2 2D {task} phantom case(s)" in result.output
    assert (out / marker).is_file()
