"""A segmentation network started from another medseg model (seed ``002_*``: initialise from a
pretrained network): ``medseg train --pretrained CHECKPOINT [--freeze encoder] [--map a=b]``.

Every tensor whose name (after the prefix ``mapping``) and shape match is copied; a layer
whose shape differs, typically the first convolution (other input channels) and the output
heads (other classes), keeps its fresh initialisation and is named in the report and the log,
so a model of another dataset or configuration is a valid start. A classifier checkpoint is
refused with one line (its layers are not a segmentation network's), as is a file in which no
name matches.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medseg.errors import ConfigError, listing
from medseg.training.checkpoint import load_checkpoint
from medseg.training.transfer import read_state_dict, rename

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentationTransfer:
    """What :func:`load_segmentation_weights` did.

    Attributes:
        loaded: tensors copied from the file.
        reinitialised: ``name (file shape, model shape)`` of layers left as initialised because
            their shapes differ.
        not_in_file: the model's tensors the file does not have (left as initialised).
        unused_in_file: the file's tensors the model does not have.
    """

    source: str
    loaded: list[str]
    reinitialised: list[str]
    not_in_file: list[str]
    unused_in_file: list[str]

    def summary(self) -> str:
        text = (
            f"{self.source}: loaded {len(self.loaded)} tensors; {len(self.reinitialised)} "
            f"re-initialised (shape differs); {len(self.not_in_file)} not in the file; "
            f"{len(self.unused_in_file)} in the file unused"
        )
        return text + (f": {listing(self.reinitialised, sep='; ')}" if self.reinitialised else "")


def parse_mapping(items: Sequence[str]) -> dict[str, str]:
    """``["module.=", "enc.=encoder."]`` -> ``{"module.": "", "enc.": "encoder."}``.

    Raises:
        ConfigError: an item without ``=``.

    Example:
        >>> parse_mapping(["module.=", "enc.=encoder."])
        {'module.': '', 'enc.': 'encoder.'}
    """
    mapping = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise ConfigError(f"--map {item!r}: expected OLD_PREFIX=NEW_PREFIX, e.g. module.=")
        mapping[old] = new
    return mapping


def load_segmentation_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    mapping: Mapping[str, str] | None = None,
) -> SegmentationTransfer:
    """Copy the matching tensors of a medseg checkpoint or state-dict file into ``model``.

    Raises:
        ConfigError: a classifier checkpoint, an unreadable file, or no matching layer name.
        UnsafeFileError: a file that needs code to load.
    """
    data = load_checkpoint(path, kind="weights", what="pretrained weights")
    if "classifier_config" in data:
        raise ConfigError(
            f"{path}: a classifier checkpoint (medseg classify) cannot start a segmentation "
            "network; give a segmentation checkpoint (RESULTS/<config>/fold_<k>/"
            "checkpoint_best.pt) or a state dict"
        )
    source = rename(read_state_dict(path), mapping)
    target = model.state_dict()
    common = sorted(set(source) & set(target))
    loaded = [k for k in common if source[k].shape == target[k].shape]
    reinitialised = [
        f"{k} (file {tuple(source[k].shape)}, model {tuple(target[k].shape)})"
        for k in common
        if source[k].shape != target[k].shape
    ]
    if not loaded:
        raise ConfigError(
            f"{path}: no layer of the file matches the network (file has e.g. "
            f"{', '.join(sorted(source)[:3])}; network has e.g. {', '.join(sorted(target)[:3])})"
            "; pass --map OLD_PREFIX=NEW_PREFIX"
        )
    with torch.no_grad():
        for name in loaded:
            target[name].copy_(source[name])
    report = SegmentationTransfer(
        str(path),
        loaded,
        reinitialised,
        sorted(set(target) - set(source)),
        sorted(set(source) - set(target)),
    )
    (log.warning if report.reinitialised else log.info)("pretrained weights %s", report.summary())
    return report


def freeze_encoder(model: nn.Module) -> int:
    """Stop gradients into ``model.encoder`` (the U-Net family's); returns the number of
    frozen parameters.

    Raises:
        ConfigError: the network has no ``encoder``.
    """
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(f"{type(model).__name__} has no encoder to freeze (--freeze encoder)")
    frozen = 0
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
        frozen += parameter.numel()
    return frozen


def train_unfrozen(network: nn.Module, model: nn.Module) -> None:
    """Training mode for ``network`` (``model`` or its DDP wrapper), except a frozen encoder,
    which stays in eval mode so its normalisation statistics stay as loaded."""
    network.train()
    encoder = getattr(model, "encoder", None)
    parameters = list(encoder.parameters()) if isinstance(encoder, nn.Module) else []
    if parameters and not any(p.requires_grad for p in parameters):
        encoder.eval()


def starting_weights(
    pretrained: str | os.PathLike[str] | None,
    freeze: str,
    mapping: Mapping[str, str] | None,
) -> tuple[Callable[[nn.Module], None], dict[str, Any]]:
    """What a trainer does to its fresh network before training (load ``pretrained``, freeze
    the encoder), and the record of it for ``run.json``, filled when it runs.

    Raises:
        ConfigError: ``freeze`` is not ``none`` or ``encoder``.
    """
    if freeze not in ("none", "encoder"):
        raise ConfigError(f"freeze '{freeze}': none or encoder")
    record: dict[str, Any] = {}

    def start(model: nn.Module) -> None:
        if pretrained is not None:
            report = load_segmentation_weights(model, pretrained, mapping=mapping)
            record.update(pretrained=str(pretrained), transfer=report.summary())
        if freeze == "encoder":
            record["frozen_parameters"] = freeze_encoder(model)

    return start, record
