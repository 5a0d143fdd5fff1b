"""Transfer learning: load pretrained weights, freeze the backbone, lower the backbone's LR.

Pretrained weights come from a medseg checkpoint (classification or segmentation: a
segmentation U-Net's ``encoder.*`` weights load into the ``unet_encoder`` classifier) or a
plain PyTorch ``state_dict`` file. Names are matched after optional prefix renaming
(``mapping={"old.": "new."}``, e.g. ``{"module.": ""}`` for a DataParallel file); the head is
never loaded by default (a new task has new classes). A layer whose shape differs is an error
that names it, rather than a silently random layer.

Every classifier in the zoo has two submodules, ``backbone`` and ``head``: freezing the
backbone trains the head only (a linear probe); fine-tuning trains both with the backbone's
learning rate scaled down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medseg.errors import ConfigError, listing
from medseg.training.checkpoint import load_checkpoint

#: Tried when no name matches as is: a medseg segmentation U-Net into ``unet_encoder``.
SEGMENTATION_ENCODER_MAPPING = {"encoder.": "backbone."}


@dataclass(frozen=True)
class TransferReport:
    """What :func:`load_pretrained` did: names loaded, names of the model left as initialised."""

    loaded: list[str]
    not_in_file: list[str]
    unused_in_file: list[str]

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors; "
            f"{len(self.not_in_file)} of the model's left as initialised; "
            f"{len(self.unused_in_file)} in the file unused"
        )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a medseg checkpoint (``network_state``), a ``{"state_dict": ...}`` file or a
    plain state dict.

    Raises:
        ConfigError: missing or unreadable file, or no tensors in it.
        UnsafeFileError: the file would need arbitrary code to load (a pickled module, say).
    """
    data: Any = load_checkpoint(path, kind="weights", what="pretrained weights")
    for key in ("network_state", "state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    tensors = (
        {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        if isinstance(data, Mapping)
        else {}
    )
    if not tensors:
        raise ConfigError(
            f"{path}: no weights found (expected a medseg checkpoint or a state_dict)"
        )
    return tensors


def rename(
    state: Mapping[str, torch.Tensor], mapping: Mapping[str, str] | None
) -> dict[str, torch.Tensor]:
    """Replace name prefixes: ``{"module.": ""}`` strips DataParallel's,
    ``{"encoder.": "backbone.encoder."}``
    moves a block. The first matching prefix wins.

    Example:
        >>> sorted(rename({"module.conv.weight": torch.zeros(1)}, {"module.": ""}))
        ['conv.weight']
    """
    if not mapping:
        return dict(state)
    out = {}
    for name, value in state.items():
        for old, new in mapping.items():
            if name.startswith(old):
                name = new + name[len(old) :]
                break
        out[name] = value
    return out


def load_pretrained(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    mapping: Mapping[str, str] | None = None,
    include_head: bool = False,
) -> TransferReport:
    """Copy matching tensors from ``path`` into ``model`` (in place).

    Args:
        model: a classifier with ``backbone`` and ``head`` submodules (any module works; then
            ``include_head`` has no effect).
        path: medseg checkpoint or state-dict file.
        mapping: prefix renames applied to the file's names first. Without one, names are
            matched as they are, or else with :data:`SEGMENTATION_ENCODER_MAPPING`.
        include_head: also load the head (same classes as the pretrained task).

    Raises:
        ConfigError: a matching name with a different shape (every such layer is named), or
            no tensor of the model's backbone found in the file.
    """
    raw = read_state_dict(path)
    target = model.state_dict()
    head_names = {f"head.{k}" for k in model.head.state_dict()} if hasattr(model, "head") else set()
    wanted = {k for k in target if include_head or k not in head_names}
    source = rename(raw, mapping)
    if mapping is None and not (wanted - head_names) & set(source):
        # a segmentation U-Net's encoder.* is the unet_encoder classifier's backbone.*
        source = rename(raw, SEGMENTATION_ENCODER_MAPPING)
    mismatched = [
        f"{k} (file {tuple(source[k].shape)}, model {tuple(target[k].shape)})"
        for k in sorted(wanted & set(source))
        if source[k].shape != target[k].shape
    ]
    if mismatched:
        shown = listing(mismatched, sep="; ")
        raise ConfigError(f"{path}: {len(mismatched)} layer(s) do not match the network: {shown}")
    loaded = sorted(wanted & set(source))
    if not [k for k in loaded if k not in head_names]:
        example_file = ", ".join(sorted(source)[:3])
        example_model = ", ".join(sorted(wanted)[:3])
        raise ConfigError(
            f"{path}: no layer names match the network (file has e.g. {example_file}; "
            f"network has e.g. {example_model}); pass a prefix mapping"
        )
    with torch.no_grad():
        for name in loaded:
            target[name].copy_(source[name])
    return TransferReport(
        loaded, sorted(set(target) - set(loaded)), sorted(set(source) - set(target))
    )


def freeze_backbone(model: nn.Module) -> int:
    """Stop gradients into ``model.backbone``; returns the number of frozen parameters.

    Call :func:`keep_frozen_in_eval` after each ``model.train()`` so frozen batch-norm
    statistics stay fixed too (a linear probe leaves the backbone exactly as loaded).
    """
    if not hasattr(model, "backbone"):
        raise ConfigError(f"{type(model).__name__} has no 'backbone' to freeze")
    frozen = 0
    for p in model.backbone.parameters():
        p.requires_grad_(False)
        frozen += p.numel()
    return frozen


def keep_frozen_in_eval(model: nn.Module) -> None:
    """Put a frozen backbone back in eval mode (batch-norm running statistics unchanged)."""
    backbone = getattr(model, "backbone", None)
    if backbone is not None and not any(p.requires_grad for p in backbone.parameters()):
        backbone.eval()


def parameter_groups(model: nn.Module, lr: float, backbone_lr_factor: float) -> list[dict]:
    """Optimiser groups: the backbone at ``lr * backbone_lr_factor``, the rest at ``lr``.

    Each group keeps ``base_lr`` so a schedule can scale both together.
    """
    backbone = getattr(model, "backbone", None)
    backbone_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {
            "params": [p for p in trainable if id(p) in backbone_ids],
            "base_lr": lr * backbone_lr_factor,
        },
        {"params": [p for p in trainable if id(p) not in backbone_ids], "base_lr": lr},
    ]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g["lr"] = g["base_lr"]
    if not groups:
        raise ConfigError("no trainable parameters (everything is frozen)")
    return groups
