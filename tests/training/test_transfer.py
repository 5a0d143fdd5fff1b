"""Transfer learning: loading weights (with names mapped), freezing, a lower backbone rate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medseg.errors import ConfigError
from medseg.nets import build_network
from medseg.training import save_checkpoint
from medseg.training.transfer import (
    freeze_backbone,
    keep_frozen_in_eval,
    load_pretrained,
    parameter_groups,
)

ENCODER = {"features": (4, 8, 16), "norm": "batch"}


def classifier(out: int = 3) -> torch.nn.Module:
    return build_network("unet_encoder", spatial_dims=2, in_channels=1, out_channels=out, **ENCODER)


def test_a_segmentation_checkpoint_loads_into_the_encoder_classifier(tmp_path: Path) -> None:
    torch.manual_seed(0)
    unet = build_network("unet", spatial_dims=2, in_channels=1, out_channels=2, **ENCODER)
    save_checkpoint(tmp_path / "seg.pt", network_state=unet.state_dict(), plan={"network": "unet"})
    model = classifier()
    report = load_pretrained(model, tmp_path / "seg.pt")
    encoder = {k: v for k, v in unet.state_dict().items() if k.startswith("encoder.")}
    assert len(report.loaded) == len(encoder)
    for name, value in encoder.items():
        assert torch.equal(model.state_dict()["backbone." + name[len("encoder.") :]], value)
    assert all(name.startswith("head.") for name in report.not_in_file)
    assert any(name.startswith("decoder.") for name in report.unused_in_file)


def test_a_plain_state_dict_with_a_prefix_loads_through_a_mapping(tmp_path: Path) -> None:
    source = classifier()
    torch.save({"module." + k: v for k, v in source.state_dict().items()}, tmp_path / "dp.pth")
    model = classifier()
    with pytest.raises(ConfigError, match="no layer names match.*prefix mapping"):
        load_pretrained(model, tmp_path / "dp.pth")
    load_pretrained(model, tmp_path / "dp.pth", mapping={"module.": ""}, include_head=True)
    for name, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], value)


def test_mismatched_layers_are_named(tmp_path: Path) -> None:
    other = build_network("unet_encoder", spatial_dims=2, in_channels=3, out_channels=3, **ENCODER)
    torch.save(other.state_dict(), tmp_path / "rgb.pt")
    with pytest.raises(
        ConfigError, match=r"do not match the network: backbone\.stages\.0.*file \(4, 3, 3, 3\)"
    ):
        load_pretrained(classifier(), tmp_path / "rgb.pt")
    with pytest.raises(ConfigError, match="not found"):
        load_pretrained(classifier(), tmp_path / "missing.pt")


def test_a_frozen_backbone_is_bit_identical_after_a_step() -> None:
    torch.manual_seed(1)
    model = classifier()
    freeze_backbone(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(parameter_groups(model, 1e-2, 1.0))
    model.train()
    keep_frozen_in_eval(model)
    loss = torch.nn.functional.cross_entropy(
        model(torch.randn(4, 1, 16, 16)), torch.tensor([0, 1, 2, 1])
    )
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    for name, value in before.items():
        if name.startswith("backbone."):  # weights and batch-norm statistics alike
            assert torch.equal(after[name], value), name
    assert not torch.equal(after["head.weight"], before["head.weight"])


def test_fine_tuning_gives_the_backbone_a_lower_rate() -> None:
    model = classifier()
    groups = parameter_groups(model, 1e-3, 0.1)
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    head_ids = {id(p) for p in model.head.parameters()}
    assert {id(p) for p in groups[1]["params"]} == head_ids
