"""Checkpoints: everything to rebuild the model and resume training from one file.

A checkpoint is a ``torch.save`` dict with keys:

* ``network_state``: the model's ``state_dict`` (unwrapped from DDP);
* ``plan``: the ``Plan`` as a dict (so ``build_model_from_checkpoint`` needs nothing else);
* ``optimizer_state``, ``scheduler_state``: for ``--resume``;
* ``epoch`` (epochs completed), ``step`` (optimiser steps), ``best_metric``, ``log`` (rows);
* ``rng_state``: python / numpy / torch (CPU and CUDA) generator states, as tensors and
  plain values;
* ``fold``, ``configuration``, ``medseg_version``.

Written atomically (temporary file + rename), so an interrupted write never corrupts the
previous checkpoint.

Reading is the one door for every weight file medseg opens (segmentation and classification
checkpoints, pretrained weights): :func:`load_checkpoint`. A file is data, never code: it is
unpickled with ``weights_only=True`` (tensors, numbers, strings, lists, tuples, dicts), plus
numpy's array reconstruction, because older medseg checkpoints hold numpy's RNG state as an
array. Anything else (a pickled class, a function to call) is refused with one
line naming the file, and its payload never runs.
"""

from __future__ import annotations

import os
import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from medseg import __version__
from medseg.errors import ConfigError, UnsafeFileError
from medseg.fileutil import atomic_path
from medseg.nets import build_network
from medseg.planning.classifier import ClassifierConfig
from medseg.planning.plan import Plan


def build_model(plan: Plan | ClassifierConfig) -> nn.Module:
    """The network of a segmentation plan or a classifier config, freshly initialised
    (``(B, C, *spatial) -> (B, K, *spatial)`` or ``(B, C, *spatial) -> (B, num_outputs)``)."""
    outputs = plan.num_classes if isinstance(plan, Plan) else plan.num_outputs
    return build_network(
        plan.network,
        spatial_dims=plan.spatial_dims,
        in_channels=plan.in_channels,
        out_channels=outputs,
        **plan.network_config,
    )


def rng_state() -> dict[str, Any]:
    """The python, numpy and torch (CPU, CUDA) generator states as tensors and plain values
    (so a checkpoint needs no unpickling of objects)."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (or an older checkpoint's, numpy's state as an array tuple)."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, Mapping):
        keys = np.asarray(numpy_state["keys"], dtype=np.int64).astype(np.uint32)
        numpy_state = (
            "MT19937",
            keys,
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # saved on a machine with more GPUs (another world size): restore the ones present
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def save_checkpoint(path: str | os.PathLike[str], **contents: Any) -> Path:
    """Write ``contents`` (the keys in the module docstring) atomically."""
    path = Path(path)
    contents.setdefault("medseg_version", __version__)
    with atomic_path(path) as tmp:
        torch.save(contents, tmp)
    return path


# numpy arrays: older medseg checkpoints stored numpy's RNG state as one (uint32). An array's
# elements are unpickled by the same restricted unpickler, so this admits no code.
_NUMPY_ARRAY_GLOBALS = [
    np.ndarray,
    np.dtype,
    getattr(np, "_core", np).multiarray._reconstruct,
    type(np.dtype(np.uint32)),
]
CheckpointKind = Literal["segmentation", "classification", "weights"]
_REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "segmentation": ("network_state", "plan"),
    "classification": ("network_state", "classifier_config"),
    "weights": (),
}


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a legacy (non-zip) file: torch cannot list them
        return []


def load_checkpoint(
    path: str | os.PathLike[str], *, kind: CheckpointKind = "segmentation", what: str = "checkpoint"
) -> dict[str, Any]:
    """Read a checkpoint or weight file safely (on the CPU): tensors and plain values only.

    Args:
        path: a ``.pt``/``.pth`` file written by ``torch.save``.
        kind: ``"segmentation"`` (needs ``network_state`` and ``plan``), ``"classification"``
            (``network_state`` and ``classifier_config``) or ``"weights"`` (any mapping: a
            state dict, ``{"state_dict": ...}``, a medseg checkpoint).
        what: how the file is named in errors ("checkpoint", "pretrained weights").

    Returns:
        The unpickled dict.

    Raises:
        UnsafeFileError: the file holds objects that would run code to load (the message names
            them); nothing from it runs.
        ConfigError: the file is missing, unreadable or not of ``kind``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found (was this model trained?)")
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAY_GLOBALS):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        names = _unsafe_globals(path)
        if not names and "Unsupported global" not in str(
            err
        ):  # bytes torch cannot parse, not unsafe objects
            raise ConfigError(f"{path}: cannot read {what} (corrupt or not a torch file)") from None
        held = f" (it holds {', '.join(names[:5])})" if names else ""
        raise UnsafeFileError(
            f"{path}: refused: this {what} needs arbitrary code to load{held}; "
            "medseg loads only tensors and "
            f"plain values. If you trust its source, re-save just its state_dict with torch.save"
        ) from None
    except Exception as err:
        raise ConfigError(
            f"{path}: cannot read {what} (corrupt or not a torch file: {err})"
        ) from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: not a medseg {what} (a {type(data).__name__}, expected a dict of tensors)"
        )
    missing = [k for k in _REQUIRED_KEYS[kind] if k not in data]
    if missing:
        hint = {
            "segmentation": " (a classifier? use `medseg classify predict`)",
            "classification": " (a segmentation model? use `medseg predict`)",
        }.get(kind, "")
        raise ConfigError(f"{path}: not a medseg {kind} {what}: no {', '.join(missing)}{hint}")
    return dict(data)


def model_from_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, Plan]:
    """Rebuild the trained network (eval mode) and its plan from a checkpoint alone."""
    data = load_checkpoint(path)
    plan = Plan.from_dict(data["plan"], source=str(path))
    model = build_model(plan)
    model.load_state_dict(data["network_state"])
    model.eval()
    return model, plan


def build_classifier(config: ClassifierConfig) -> nn.Module:
    """The config's network, freshly initialised (``(B, C, *spatial) -> (B, num_outputs)``)."""
    return build_model(config)


def load_classifier(
    path: str | os.PathLike[str],
) -> tuple[nn.Module, ClassifierConfig, dict[str, Any]]:
    """Rebuild a trained classifier (eval mode) from its checkpoint alone.

    Returns:
        ``(model, config, checkpoint)``.

    Raises:
        ConfigError: missing file, or not a classifier checkpoint.
        UnsafeFileError: the file would need arbitrary code to load.
    """
    data = load_checkpoint(path, kind="classification")
    config = ClassifierConfig.from_dict(data["classifier_config"], source=str(path))
    model = build_classifier(config)
    model.load_state_dict(data["network_state"])
    return model.eval(), config, data
