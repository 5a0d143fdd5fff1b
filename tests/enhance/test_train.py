"""The denoiser trainer: it learns on phantoms, noise2noise never reads a clean image, and the
rejected inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.data.phantoms_denoise import generate_denoise_dataset
from medseg.enhance import DenoiseConfig, denoise, denoise_array, fit_denoiser, load_denoiser
from medseg.enhance.apply import build_denoiser
from medseg.enhance.data import PairsFolder, SimulatedPairs, open_denoise_data
from medseg.enhance.train import denoise_loss, split_cases
from medseg.errors import ConfigError, DatasetError, GeometryError
from medseg.io import Image, read_image
from medseg.metrics.image_quality import psnr
from medseg.nets.residual_unet import ResidualDenoiser

SMALL = {"features": (16, 32, 64), "batch_size": 8, "val_fraction": 0.25}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared, busy CPU two threads run these small steps 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_denoise_dataset(tmp_path_factory.mktemp("dn") / "data", num_cases=8, seed=0)


def _log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_supervised_denoiser_gains_more_than_5_db_on_phantoms(phantoms: Path, tmp_path: Path):
    config = DenoiseConfig(
        noise="rician:0.05", steps_per_epoch=30, epochs=2, learning_rate=2e-3, **SMALL
    )
    fit_denoiser(phantoms, tmp_path / "run", config, progress=False, device="cpu", amp=False)
    rows = _log(tmp_path / "run")
    best = max(float(r["val_psnr"]) for r in rows)
    assert best - float(rows[0]["val_psnr_input"]) > 5.0
    # the saved model reproduces the gain on a held-out case, against the clean image
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["mode"] == "supervised" and saved["spatial_dims"] == 2
    case = "denoise_000"
    clean = read_image(phantoms / "clean" / f"{case}.nii.gz").array
    noisy = read_image(phantoms / "noisy1" / f"{case}.nii.gz")
    out = denoise(tmp_path / "run", noisy)
    span = float(clean.max() - clean.min())
    assert out.array.shape == clean.shape and out.spacing == noisy.spacing
    assert psnr(clean, out.array, data_range=span) > psnr(clean, noisy.array, data_range=span) + 4


class PairsOnly:
    """A pairs source whose clean images must not be touched."""

    def __init__(self, root: Path) -> None:
        self.inner = PairsFolder(root)
        self.case_ids, self.spatial_dims = self.inner.case_ids, self.inner.spatial_dims
        self.pairs_read = 0

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        self.pairs_read += 1
        return self.inner.pair(index)

    def clean(self, index: int) -> np.ndarray:
        raise AssertionError("noise2noise read a clean image")


def test_noise2noise_never_reads_a_clean_image(phantoms: Path, tmp_path: Path) -> None:
    data = PairsOnly(phantoms)
    config = DenoiseConfig(mode="n2n", steps_per_epoch=4, epochs=2, **SMALL)
    result = fit_denoiser(data, tmp_path / "run", config, progress=False, device="cpu")
    assert result.epochs == 2 and data.pairs_read == len(data.case_ids)
    rows = _log(tmp_path / "run")
    assert all(np.isfinite(float(r["val_psnr"])) for r in rows)


def test_noise2noise_refuses_identical_pairs(phantoms: Path, tmp_path: Path) -> None:
    class SamePair(PairsOnly):
        def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            a, _ = self.inner.pair(index)
            return a, a.copy()

    config = DenoiseConfig(mode="n2n", steps_per_epoch=1, epochs=1, **SMALL)
    with pytest.raises(DatasetError, match="identical"):
        fit_denoiser(SamePair(phantoms), tmp_path / "run", config, progress=False, device="cpu")


def test_3d_training_and_whole_volume_denoising(tmp_path: Path) -> None:
    root = generate_denoise_dataset(tmp_path / "d3", spatial_dims=3, num_cases=2, seed=1)
    config = DenoiseConfig(features=(4, 8), steps_per_epoch=2, epochs=1, batch_size=2)
    fit_denoiser(root, tmp_path / "run", config, progress=False, device="cpu")
    model, saved = load_denoiser(tmp_path / "run")
    assert saved.spatial_dims == 3 and saved.patch_size == (32, 32, 32)
    volume = Image(np.random.default_rng(0).random((9, 13, 10)).astype(np.float32), (2.0,) * 3)
    assert denoise(tmp_path / "run", volume).array.shape == (9, 13, 10)
    with pytest.raises(GeometryError, match="3D"):
        denoise(tmp_path / "run", Image(np.zeros((8, 8), np.float32), (1.0, 1.0)))


def test_a_dataset_folder_gives_simulated_independent_pairs(tmp_path: Path) -> None:
    from medseg.data.phantoms import generate_dataset

    root = generate_dataset(tmp_path / "seg", spatial_dims=2, num_cases=2)
    data = open_denoise_data(root, noise="gaussian:0.1", seed=3)
    assert isinstance(data, SimulatedPairs) and data.spatial_dims == 2
    a, b = data.pair(0)
    clean = data.clean(0)
    assert a.shape == clean.shape and not np.array_equal(a, b)
    np.testing.assert_array_equal(a, data.pair(0)[0])  # fixed draws: acquisitions, not augmentation
    span = float(clean.max() - clean.min())
    assert np.std(a - clean) == pytest.approx(0.1 * span, rel=0.05)


def test_supervised_training_needs_clean_images(phantoms: Path, tmp_path: Path) -> None:
    config = DenoiseConfig(steps_per_epoch=1, epochs=1, **SMALL)
    with pytest.raises(AssertionError, match="clean"):
        fit_denoiser(PairsOnly(phantoms), tmp_path / "run", config, progress=False)
    root = tmp_path / "pairs"
    for folder in ("noisy1", "noisy2"):
        (root / folder).mkdir(parents=True)
        for path in sorted((phantoms / folder).iterdir())[:2]:
            (root / folder / path.name).write_bytes(path.read_bytes())
    with pytest.raises(DatasetError, match="no clean image"):
        fit_denoiser(root, tmp_path / "run2", config, progress=False)


def test_a_run_is_not_overwritten_without_overwrite(phantoms: Path, tmp_path: Path) -> None:
    config = DenoiseConfig(steps_per_epoch=1, epochs=1, **SMALL)
    fit_denoiser(phantoms, tmp_path / "run", config, progress=False, device="cpu")
    with pytest.raises(ConfigError, match="already has checkpoints"):
        fit_denoiser(phantoms, tmp_path / "run", config, progress=False, device="cpu")
    fit_denoiser(phantoms, tmp_path / "run", config, progress=False, device="cpu", overwrite=True)
    resumed = fit_denoiser(
        phantoms, tmp_path / "run", config, epochs=2, resume=True, progress=False, device="cpu"
    )
    assert resumed.epochs == 2 and len(_log(tmp_path / "run")) == 2


def test_config_round_trips_through_json_and_rejects_unknown_keys(tmp_path: Path) -> None:
    config = DenoiseConfig(mode="n2n", loss="mix", patch_size=(48, 48), features=(8, 16))
    config.to_json(tmp_path / "c.json")
    assert DenoiseConfig.from_json(tmp_path / "c.json") == config
    (tmp_path / "bad.json").write_text('{"nosie": "rician:0.05"}')
    with pytest.raises(ConfigError, match="nosie"):
        DenoiseConfig.from_json(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="model one of"):
        DenoiseConfig(noise="pink:0.1")
    with pytest.raises(ConfigError, match="mode"):
        DenoiseConfig(mode="noise2void")  # type: ignore[arg-type]


def test_losses_are_zero_for_a_perfect_prediction_and_positive_otherwise() -> None:
    x = torch.rand(2, 1, 16, 16)
    for name in ("l1", "l2", "ssim", "mix"):
        assert float(denoise_loss(x, x, name)) == pytest.approx(0.0, abs=1e-6)
        assert float(denoise_loss(x + 0.1 * torch.randn_like(x), x, name)) > 0.001
    assert float(denoise_loss(x + 0.5, x, "l1")) == pytest.approx(0.5, abs=1e-6)


def test_mirrored_denoising_flips_back_every_pass() -> None:
    # an untrained denoiser is the identity: any flip not undone would show in the average
    config = DenoiseConfig(spatial_dims=2, in_channels=1, features=(4, 8))
    model = build_denoiser(config)
    image = np.random.default_rng(0).random((1, 10, 13)).astype(np.float32)
    np.testing.assert_allclose(denoise_array(model, config, image, mirror=True), image, atol=1e-5)


def test_residual_denoiser_starts_as_the_identity_and_refuses_other_channels() -> None:
    net = ResidualDenoiser(3, 1, 1, features=(4, 8))
    x = torch.randn(1, 1, 8, 8, 8)
    assert torch.equal(net(x), x)
    with pytest.raises(ConfigError, match="must equal in_channels"):
        ResidualDenoiser(2, 2, 3)
    assert ResidualDenoiser(2, 1, 2, features=(4, 8))(x[..., 0]).shape == (1, 2, 8, 8)


def test_split_holds_out_a_fraction_and_keeps_one_training_case() -> None:
    train, val = split_cases(10, 0.2, 0)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    assert split_cases(1, 0.5, 0) == ([0], [])
    assert len(split_cases(2, 0.9, 0)[0]) == 1


def test_the_patch_follows_the_median_image_and_small_images_are_padded() -> None:
    from types import SimpleNamespace

    from medseg.enhance.train import Sample, _resolve, crop_window

    rng = np.random.default_rng(0)
    shapes = [(1, 10, 12), (1, 40, 30), (1, 44, 36)]
    samples = [Sample([rng.random(s, dtype=np.float32)], [], 1.0) for s in shapes]
    config = _resolve(DenoiseConfig(features=(4, 8)), samples, SimpleNamespace(spatial_dims=2))
    assert config.patch_size == (40, 30)  # the median image, not the smallest: (10, 12)
    small = samples[0].images[0]
    crop = crop_window([small, small + 1], (16, 16), np.random.default_rng(1))
    assert [c.shape for c in crop] == [(1, 16, 16), (1, 16, 16)]
    np.testing.assert_array_equal(crop[1], crop[0] + 1)  # the same window of every image
    padded = np.pad(small, [(0, 0), (3, 3), (2, 2)], mode="symmetric")
    np.testing.assert_array_equal(crop[0], padded)  # mirrored to the patch, nothing invented
    large = samples[2].images[0]
    (window,) = crop_window([large], (8, 8), np.random.default_rng(2))
    hits = [
        (i, j)
        for i in range(37)
        for j in range(29)
        if np.array_equal(large[:, i : i + 8, j : j + 8], window)
    ]
    assert len(hits) == 1  # a plain window of an image at least as large as the patch
