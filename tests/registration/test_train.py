"""VoxelMorph training on the engine: it learns on a phantom, saves its config, refuses bad
datasets; the network's shape contract and near-zero initial flow."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError, DatasetError
from medseg.io import Image, read_image, write_image
from medseg.nets.voxelmorph import VoxelMorph
from medseg.registration.config import RegistrationConfig
from medseg.registration.scores import mean_label_dice
from medseg.registration.train import fit_registration

TINY = dict(features=(8, 16, 16), decoder_features=(16, 16, 16), final_features=(16, 8))


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_network_keeps_the_shape_and_starts_near_zero() -> None:
    net = VoxelMorph(3, features=(4, 8), decoder_features=(8, 8), final_features=(4,))
    flow = net(torch.rand(2, 2, 8, 12, 16))
    assert flow.shape == (2, 3, 8, 12, 16)
    assert flow.abs().max() < 1e-3  # last conv: normal(0, 1e-5), bias 0
    assert float(net.flow.weight.detach().std()) < 1e-4 and torch.all(net.flow.bias == 0)
    assert net.required_divisor == (4, 4, 4)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.rand(1, 2, 8, 12, 10))
    with pytest.raises(ConfigError, match="decoder_features"):
        VoxelMorph(2, features=(4, 8), decoder_features=(8,))


@pytest.mark.slow  # ~10 s on an idle core (600 steps)
def test_voxelmorph_beats_identity_dice_on_phantom_pairs(phantom_2d: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = RegistrationConfig(
        dataset=str(phantom_2d),
        smooth=0.1,
        learning_rate=3e-3,
        batch_size=2,
        steps_per_epoch=200,
        epochs=3,  # 600 steps, ~10 s on one idle core
        val_pairs=6,
        downsize=2,
        **TINY,
    )
    result = fit_registration(phantom_2d, tmp_path / "run", config, progress=False, amp=False)
    assert result.steps == 600
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    identity = np.mean(
        [
            mean_label_dice(
                read_image(phantom_2d / "labelsTr" / f"{fixed}.nii.gz").array,
                read_image(phantom_2d / "labelsTr" / f"{moving}.nii.gz").array,
            )
            for moving, fixed in split["val_pairs"]
        ]
    )
    assert not set(split["train"]) & set(split["val"])
    assert result.best_metric > identity + 0.03
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert RegistrationConfig.from_dict(saved).shape == (64, 64)


def test_label_weight_and_diffeomorphic_options_train(phantom_2d: Path, tmp_path: Path) -> None:
    config = RegistrationConfig(
        dataset=str(phantom_2d),
        label_weight=1.0,
        diffeomorphic=True,
        atlas="pair_000_fixed",
        loss="mse",
        steps_per_epoch=3,
        epochs=1,
        val_pairs=2,
        **TINY,
    )
    result = fit_registration(phantom_2d, tmp_path / "run", config, progress=False, amp=False)
    row = _rows(tmp_path / "run")[0]
    assert result.steps == 3 and np.isfinite(float(row["train_loss"]))
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert all(fixed == "pair_000_fixed" for _, fixed in split["val_pairs"])
    assert "pair_000_fixed" not in split["train"] + split["val"]
    with pytest.raises(ConfigError, match="checkpoint"):  # the engine refuses to overwrite
        fit_registration(phantom_2d, tmp_path / "run", config, progress=False)


def test_an_unknown_atlas_is_refused(phantom_2d: Path, tmp_path: Path) -> None:
    config = RegistrationConfig(dataset=str(phantom_2d), atlas="nobody", **TINY)
    with pytest.raises(ConfigError, match="nobody"):
        fit_registration(phantom_2d, tmp_path / "run", config, progress=False)


def test_cases_of_different_spacing_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for index in range(3):
        spacing = (2.0, 1.0) if index == 2 else (1.0, 1.0)
        write_image(
            Image(np.random.rand(16, 16).astype(np.float32), spacing),
            root / "imagesTr" / f"c{index}_0000.nii.gz",
        )
        write_image(
            Image(np.zeros((16, 16), np.uint8), spacing), root / "labelsTr" / f"c{index}.nii.gz"
        )
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "MRI"},
                "labels": {"background": 0, "a": 1},
                "numTraining": 3,
                "file_ending": ".nii.gz",
            }
        )
    )
    with pytest.raises(DatasetError, match="refused: cases differ in spacing"):
        fit_registration(root, tmp_path / "run", RegistrationConfig(dataset=str(root), **TINY))
