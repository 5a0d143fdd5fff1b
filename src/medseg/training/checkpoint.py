"""Checkpoints: everything to rebuild the model and resume training from one file.

A checkpoint is a ``torch.save`` dict with keys:

* ``network_state``: the model's ``state_dict`` (unwrapped from DDP);
* ``plan``: the ``Plan`` as a dict (so ``build_model_from_checkpoint`` needs nothing else);
* ``optimizer_state``, ``scheduler_state``: for ``--resume``;
* ``epoch`` (epochs completed), ``step`` (optimiser steps), ``best_metric``, ``log`` (rows);
* ``rng_state``: python / numpy / torch (CPU and CUDA) generator states;
* ``fold``, ``configuration``, ``medseg_version``.

Written atomically (temporary file + rename), so an interrupted write never corrupts the
previous checkpoint.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg import __version__
from medseg.errors import ConfigError
from medseg.fileutil import atomic_path
from medseg.nets import build_network
from medseg.planning.plan import Plan


def build_model(plan: Plan) -> nn.Module:
    """The plan's network, freshly initialised."""
    return build_network(
        plan.network,
        spatial_dims=plan.spatial_dims,
        in_channels=plan.in_channels,
        out_channels=plan.num_classes,
        **plan.network_config,
    )


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike[str], **contents: Any) -> Path:
    """Write ``contents`` (the keys in the module docstring) atomically."""
    path = Path(path)
    contents.setdefault("medseg_version", __version__)
    with atomic_path(path) as tmp:
        torch.save(contents, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint (on the CPU).

    Raises:
        ConfigError: the file is missing or is not a medseg checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found (was this fold trained?)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ConfigError(f"{path}: cannot read checkpoint ({err})") from err
    if not isinstance(data, dict) or "network_state" not in data or "plan" not in data:
        raise ConfigError(f"{path}: not a medseg checkpoint (no network_state/plan)")
    return data


def model_from_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, Plan]:
    """Rebuild the trained network (eval mode) and its plan from a checkpoint alone."""
    data = load_checkpoint(path)
    plan = Plan.from_dict(data["plan"], source=str(path))
    model = build_model(plan)
    model.load_state_dict(data["network_state"])
    model.eval()
    return model, plan
