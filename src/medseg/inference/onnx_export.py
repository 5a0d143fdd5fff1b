"""Export one trained fold's network to ONNX, with its preprocessing recipe in the file.

The exported graph is the network in eval mode: input ``image`` ``(B, C, *spatial)`` float32,
already preprocessed (see below), output ``logits`` ``(B, K, *spatial)`` float32 (the
full-resolution head only: deep-supervision heads run only in training and are not in the
graph). Softmax, sliding window, mirroring and the mapping back to the original grid are not
in the graph: they are the caller's (``docs/clinical_outputs.md`` shows them with
onnxruntime).

Spatial axes are exported as dynamic (any size that is a multiple of the network's
``required_divisor``, so a whole preprocessed image can be run at once) when the network
allows it: after the export the file is run by onnxruntime at a second size and compared with
PyTorch; if that fails (a network whose graph bakes in the traced size) it is exported again
with the fixed patch size, and ``dynamic_spatial_axes`` in the metadata says which.

Metadata (ONNX ``metadata_props``, strings; read them with :func:`read_onnx_metadata`):

* ``medseg.version``: the medseg version that exported it;
* ``medseg.plan``: the full plan as JSON (``Plan.to_dict``): target spacing, normalisation
  and intensity statistics, patch size, labels, mirror axes, network;
* ``medseg.recipe``: JSON with what a caller needs without knowing medseg's plan:
  ``spacing`` (mm, array axis order ``(z, y, x)``), ``normalization`` and ``intensity`` per
  channel, ``patch_size``, ``required_divisor``, ``dynamic_spatial_axes``, ``label_values``
  (output channel ``k`` -> label value) and ``label_names`` (value -> name), ``mirror_axes``
  (patch axes test-time augmentation mirrors), ``image_channels`` / ``in_channels`` (they
  differ for a cascade stage, whose extra inputs are the previous stage's one-hot
  segmentation), ``configuration``, ``fold``, ``input_name``, ``output_name``.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from medseg import __version__
from medseg.errors import ConfigError, ImageIOError
from medseg.fileutil import atomic_path, check_writable
from medseg.inference.checkpoints import find_checkpoints
from medseg.inference.ensemble import label_values, tta_mirror_axes
from medseg.planning.plan import Plan
from medseg.training import model_from_checkpoint

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 17
ONNX_EXTRA = 'pip install onnx onnxruntime (or "medseg[dev]")'


@dataclass(frozen=True)
class OnnxMetadata:
    """What :func:`read_onnx_metadata` returns.

    Attributes:
        plan: the exported fold's plan.
        recipe: the preprocessing and output description (see the module docstring).
        version: the medseg version that exported the file.
    """

    plan: Plan
    recipe: dict[str, Any]
    version: str


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ConfigError(
            f"ONNX export needs onnx and onnxruntime ({err.name} is missing): {ONNX_EXTRA}"
        ) from err
    return onnx, onnxruntime


def single_checkpoint(
    results: str | os.PathLike[str],
    configuration: str | None,
    fold: int | str | None,
    checkpoint: Literal["best", "latest"],
) -> Path:
    """The one checkpoint chosen by ``configuration`` and ``fold`` (each may be left out when
    only one is trained).

    Raises:
        ConfigError: no such checkpoint (``find_checkpoints`` lists what exists), or several
            models and not enough options to choose one (the message lists them).
    """
    paths = find_checkpoints(
        results,
        configurations=[configuration] if configuration else None,
        folds=[fold] if fold is not None else None,
        checkpoint=checkpoint,
    )
    if len(paths) > 1:
        found = ", ".join(f"{p.parent.parent.name}/{p.parent.name}" for p in paths)
        raise ConfigError(
            f"{results}: several trained models ({found}); choose one with --config and --fold"
        )
    return paths[0]


def recipe(plan: Plan, model: nn.Module, *, dynamic: bool, fold: str | None) -> dict[str, Any]:
    """The ``medseg.recipe`` metadata of ``plan``'s network (see the module docstring)."""
    names = {
        int(v): n for n, v in plan.labels.items() if isinstance(v, int) and not isinstance(v, bool)
    }
    divisor = getattr(model, "required_divisor", (1,) * plan.spatial_dims)
    return {
        "configuration": plan.name,
        "fold": fold,
        "spatial_dims": plan.spatial_dims,
        "spacing": list(plan.spacing),
        "normalization": list(plan.normalization),
        "intensity": plan.intensity,
        "patch_size": list(plan.patch_size),
        "required_divisor": [int(d) for d in divisor],
        "dynamic_spatial_axes": dynamic,
        "label_values": label_values(plan),
        "label_names": {str(v): names.get(v, f"label_{v}") for v in label_values(plan)},
        "mirror_axes": list(tta_mirror_axes(plan)),
        "image_channels": plan.image_channels,
        "in_channels": plan.in_channels,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "output": "logits (B, K, *spatial): softmax over K, argmax -> label_values",
    }


def _export_bytes(model: nn.Module, example: torch.Tensor, *, dynamic: bool, opset: int) -> bytes:
    spatial = {axis: f"spatial_{axis - 2}" for axis in range(2, example.ndim)}
    axes = {0: "batch", **spatial} if dynamic else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
        )
    return buffer.getvalue()


def _matches_torch(model: nn.Module, onnx_bytes: bytes, x: torch.Tensor) -> bool:
    """Whether onnxruntime reproduces the network on ``x`` (1e-4)."""
    _, ort = _require_onnx()
    try:
        session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {INPUT_NAME: x.numpy()})
    except Exception:  # noqa: BLE001  onnxruntime raises its own error types for a bad shape
        return False
    with torch.no_grad():
        expected = model(x).numpy()
    return out.shape == expected.shape and bool(np.allclose(out, expected, atol=1e-4, rtol=0))


def export_onnx(
    results: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    configuration: str | None = None,
    fold: int | str | None = None,
    checkpoint: Literal["best", "latest"] = "best",
    opset: int = OPSET,
    overwrite: bool = False,
) -> Path:
    """Export one trained fold's network to ONNX with the preprocessing recipe as metadata.

    Args:
        results: the results folder.
        configuration: the plan name (``3d_fullres``, a variant...); may be left out when
            only one is trained.
        fold: the fold; may be left out when the configuration has one trained fold.
        checkpoint: ``"best"`` or ``"latest"``.
        opset: ONNX opset version.
        overwrite: replace an existing ``out_path``.

    Returns:
        The written ``.onnx`` path.

    Raises:
        ConfigError: no such checkpoint, several models and no ``configuration``/``fold``, or
            onnx/onnxruntime missing.
        OverwriteError: ``out_path`` exists and ``overwrite`` is False.
    """
    onnx, _ = _require_onnx()
    target = check_writable(out_path, overwrite=overwrite)
    path = single_checkpoint(results, configuration, fold, checkpoint)
    model, plan = model_from_checkpoint(path)
    model = model.eval().cpu()
    divisor = tuple(int(d) for d in getattr(model, "required_divisor", (1,) * plan.spatial_dims))
    patch = tuple(int(p) for p in plan.patch_size)
    example = torch.zeros(1, plan.in_channels, *patch)
    data = _export_bytes(model, example, dynamic=True, opset=opset)
    # D: the traced graph may bake in the patch size; check another size before calling it dynamic
    other = torch.randn(2, plan.in_channels, *(p + d for p, d in zip(patch, divisor, strict=True)))
    dynamic = _matches_torch(model, data, other)
    if not dynamic:
        data = _export_bytes(model, example, dynamic=False, opset=opset)
    proto = onnx.load_from_string(data)
    fold_name = path.parent.name.removeprefix("fold_")
    metadata = {
        "medseg.version": __version__,
        "medseg.plan": json.dumps(plan.to_dict(), sort_keys=True),
        "medseg.recipe": json.dumps(
            recipe(plan, model, dynamic=dynamic, fold=fold_name), sort_keys=True
        ),
    }
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = f"medseg {__version__}: {plan.name} fold {fold_name} ({path.name})"
    with atomic_path(target) as tmp:
        onnx.save(proto, str(tmp))
    return target


def read_onnx_metadata(path: str | os.PathLike[str]) -> OnnxMetadata:
    """The plan, recipe and medseg version stored in an exported ONNX file.

    Args:
        path: a file written by :func:`export_onnx`.

    Returns:
        :class:`OnnxMetadata`; ``plan`` equals the exported fold's plan.

    Raises:
        ImageIOError: the file is missing, not ONNX, or has no medseg metadata.
        ConfigError: onnx is missing, or the stored plan is invalid (a newer schema).

    Example:
        >>> meta = read_onnx_metadata("model.onnx")  # doctest: +SKIP
        >>> meta.recipe["spacing"], meta.recipe["label_names"]  # doctest: +SKIP
        ([1.0, 0.8, 0.8], {'1': 'liver'})
    """
    onnx, _ = _require_onnx()
    path = Path(path)
    if not path.is_file():
        raise ImageIOError(f"{path}: file not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001  onnx raises DecodeError and others
        raise ImageIOError(f"{path}: not an ONNX model ({type(err).__name__})") from err
    props = {p.key: p.value for p in proto.metadata_props}
    missing = [k for k in ("medseg.plan", "medseg.recipe") if k not in props]
    if missing:
        raise ImageIOError(
            f"{path}: no medseg metadata ({', '.join(missing)} missing); export it with "
            "`medseg export`"
        )
    plan = Plan.from_dict(json.loads(props["medseg.plan"]), source=str(path))
    return OnnxMetadata(plan, json.loads(props["medseg.recipe"]), props.get("medseg.version", ""))


__all__ = ["OnnxMetadata", "export_onnx", "read_onnx_metadata", "recipe", "single_checkpoint"]
