"""``medseg train --pretrained``: a segmentation network started from another medseg model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.errors import ConfigError
from medseg.nets import build_network
from medseg.training import fit, load_checkpoint, save_checkpoint
from medseg.training.segmentation_transfer import (
    freeze_encoder,
    load_segmentation_weights,
    parse_mapping,
)

UNET = {"features": (4, 8, 16), "strides": ((1, 1), (2, 2), (2, 2))}


def unet(in_channels: int = 1, classes: int = 2) -> torch.nn.Module:
    return build_network(
        "unet", spatial_dims=2, in_channels=in_channels, out_channels=classes, **UNET
    )


def test_matching_layers_load_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = unet()
    save_checkpoint(tmp_path / "seg.pt", network_state=source.state_dict(), plan={})
    torch.manual_seed(1)
    model = unet()
    report = load_segmentation_weights(model, tmp_path / "seg.pt")
    assert report.reinitialised == [] and report.not_in_file == []
    for name, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_other_input_channels_and_classes_are_reinitialised_and_named(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = unet(in_channels=1, classes=2)  # e.g. a Hippocampus model (MRI, 2 labels + bg)
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    torch.manual_seed(1)
    model = unet(in_channels=2, classes=4)  # e.g. ACDC with two channels, 3 labels + bg
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_segmentation_weights(model, tmp_path / "plain.pt")
    different = {entry.split(" ")[0] for entry in report.reinitialised}
    first_conv = [k for k in fresh if fresh[k].ndim == 4 and fresh[k].shape[1] == 2]
    heads = [k for k in fresh if k.startswith("heads.")]
    assert set(first_conv) <= different and set(heads) <= different
    assert "file (2, 4, 1, 1), model (4, 4, 1, 1)" in " ".join(report.reinitialised)
    for name, value in model.state_dict().items():
        expected = fresh[name] if name in different else source.state_dict()[name]
        assert torch.equal(value, expected), name
    assert "re-initialised" in report.summary()


def test_a_classifier_checkpoint_or_foreign_file_is_refused(tmp_path: Path) -> None:
    classifier = build_network("resnet18", spatial_dims=2, in_channels=1, out_channels=2)
    save_checkpoint(
        tmp_path / "clf.pt", network_state=classifier.state_dict(), classifier_config={}
    )
    with pytest.raises(ConfigError, match="classifier checkpoint .* cannot start a segmentation"):
        load_segmentation_weights(unet(), tmp_path / "clf.pt")
    torch.save({"module." + k: v for k, v in unet().state_dict().items()}, tmp_path / "dp.pt")
    with pytest.raises(ConfigError, match="no layer of the file matches.*--map"):
        load_segmentation_weights(unet(), tmp_path / "dp.pt")
    report = load_segmentation_weights(
        unet(), tmp_path / "dp.pt", mapping=parse_mapping(["module.="])
    )
    assert report.loaded and not report.unused_in_file
    with pytest.raises(ConfigError, match="OLD_PREFIX=NEW_PREFIX"):
        parse_mapping(["module."])


def test_fit_from_pretrained_with_a_frozen_encoder(tiny_results: Path) -> None:
    fit(tiny_results, "2d", 0, epochs=1, steps_per_epoch=2, num_workers=0, progress=False)
    first = tiny_results / "2d" / "fold_0" / "checkpoint_latest.pt"
    weights = load_checkpoint(first)["network_state"]
    fit(
        tiny_results,
        "2d",
        1,
        epochs=1,
        steps_per_epoch=3,
        num_workers=0,
        progress=False,
        pretrained=first,
        freeze="encoder",
    )
    second = load_checkpoint(tiny_results / "2d" / "fold_1" / "checkpoint_latest.pt")
    for name, value in second["network_state"].items():
        if name.startswith("encoder."):  # frozen: exactly the pretrained encoder
            assert torch.equal(value, weights[name]), name
    assert any(
        not torch.equal(v, weights[k])
        for k, v in second["network_state"].items()
        if k.startswith(("decoder.", "heads."))
    )
    run = json.loads((tiny_results / "2d" / "fold_1" / "run.json").read_text(encoding="utf-8"))
    assert run["pretrained"] == str(first) and run["frozen_parameters"] > 0
    with pytest.raises(ConfigError, match="no encoder to freeze"):
        freeze_encoder(torch.nn.Linear(2, 2))


def test_cli_train_pretrained_options(tiny_results: Path) -> None:
    fit(tiny_results, "2d", 0, epochs=1, steps_per_epoch=1, num_workers=0, progress=False)
    checkpoint = tiny_results / "2d" / "fold_0" / "checkpoint_best.pt"
    bad = CliRunner().invoke(
        app,
        [
            "train",
            str(tiny_results),
            "-c",
            "2d",
            "--fold",
            "2",
            "--pretrained",
            str(checkpoint),
            "--freeze",
            "decoder",
        ],
    )
    assert bad.exit_code == 2 and "--freeze" in bad.output
    ok = CliRunner().invoke(
        app,
        [
            "train",
            str(tiny_results),
            "-c",
            "2d",
            "--fold",
            "2",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "1",
            "--workers",
            "0",
            "--no-validate",
            "--pretrained",
            str(checkpoint),
            "--map",
            "encoder.=encoder.",
        ],
    )
    assert ok.exit_code == 0, ok.output
