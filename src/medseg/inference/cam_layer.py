"""Which feature map Grad-CAM explains (``medseg.inference.explain``): a named layer, or the
one found by hooks on every module (see ``find_cam_layer``), captured in one forward pass.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from medseg.errors import ConfigError
from medseg.inference.explain_model import check_images, explaining, model_outputs

# resample to a fixed size whatever the input (VGG's 7 x 7): the stage after the feature map,
# never the map
ADAPTIVE_POOLS = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


@contextmanager
def _hooks(
    modules: Sequence[tuple[str, nn.Module]], hook: Callable[[str, nn.Module, Any], None]
) -> Iterator[None]:
    handles = []
    try:
        for name, module in modules:
            handles.append(
                module.register_forward_hook(
                    lambda mod, _inp, out, _name=name: hook(_name, mod, out)
                )
            )
        yield
    finally:
        for handle in handles:
            handle.remove()


def _module_names(model: nn.Module) -> dict[nn.Module, str]:
    names: dict[nn.Module, str] = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    return names


def _resolve_layer(model: nn.Module, layer: nn.Module | str) -> tuple[str, nn.Module]:
    if isinstance(layer, nn.Module):
        name = _module_names(model).get(layer)
        if name is None or layer is model:
            raise ConfigError(
                f"layer {type(layer).__name__} is not a submodule of {type(model).__name__}"
            )
        return name, layer
    modules = dict(model.named_modules())
    modules.pop("", None)
    if layer in modules:
        return layer, modules[layer]
    close = difflib.get_close_matches(str(layer), list(modules), n=4, cutoff=0.5)
    convs = [n for n, m in modules.items() if isinstance(m, _ConvNd)][-3:]
    top = [n for n, _ in model.named_children()]
    some = list(dict.fromkeys([*close, *top, *convs]))[:8]
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    raise ConfigError(
        f"layer {layer!r} is not a module of {type(model).__name__}: {hint}"
        f"valid names include {', '.join(map(repr, some)) or '(none: the model has no submodules)'}"
    )


def _is_spatial(out: Any, x: Tensor) -> bool:
    return (
        isinstance(out, Tensor)
        and out.is_floating_point()
        and out.ndim == x.ndim
        and out.shape[0] == x.shape[0]
        and math.prod(out.shape[2:]) > 1
    )


def _is_attention(module: nn.Module) -> bool:
    transformer_types = (
        nn.MultiheadAttention,
        nn.TransformerEncoderLayer,
        nn.TransformerDecoderLayer,
    )
    kind = type(module).__name__.lower()
    return isinstance(module, transformer_types) or "attention" in kind or "transformer" in kind


def forward_capturing(
    model: nn.Module, x: Tensor, layer: nn.Module | str | None
) -> tuple[Tensor, str, Tensor]:
    """Run the model once and return ``(outputs (B, K), layer name, its feature map)``: of
    ``layer``, or of the last module returning a spatial feature map when it is None."""
    if layer is not None:
        return _capture_layer(model, x, layer)
    return _capture_last_map(model, x)


def _capture_layer(
    model: nn.Module, x: Tensor, layer: nn.Module | str
) -> tuple[Tensor, str, Tensor]:
    """The given layer's output; refused when it did not run or is not a feature map."""
    name, module = _resolve_layer(model, layer)
    captured: dict[str, Any] = {}

    def keep(_name: str, _module: nn.Module, out: Any) -> None:
        captured["out"] = out  # a module called twice: its last call counts

    with _hooks([(name, module)], keep):
        out = model_outputs(model, x)
    if "out" not in captured:
        raise ConfigError(
            f"layer {name!r} ({type(module).__name__}) did not run in the forward pass"
        )
    feature = captured["out"]
    if not _is_spatial(feature, x):
        shape = tuple(feature.shape) if isinstance(feature, Tensor) else type(feature).__name__
        raise ConfigError(
            f"layer {name!r} ({type(module).__name__}) returns {shape}, not a feature map "
            f"(B, C, *spatial) with {x.ndim - 2} spatial axes and more than one voxel; "
            "choose a convolutional layer before the global pooling"
        )
    return out, name, feature


def _capture_last_map(model: nn.Module, x: Tensor) -> tuple[Tensor, str, Tensor]:
    """The output of the module that completes last with a spatial feature map after a
    convolution ran (adaptive pools excluded); refused for models without one, and for a
    transformer whose only convolution is its patch embedding."""
    state: dict[str, Any] = {"convs": 0, "last": None, "attention_after": None}

    def watch(name: str, module: nn.Module, out: Any) -> None:
        if isinstance(module, _ConvNd):
            state["convs"] += 1
        if state["convs"] and _is_spatial(out, x) and not isinstance(module, ADAPTIVE_POOLS):
            state["last"] = (name, out)
            state["attention_after"] = None
        elif (
            state["last"] is not None and state["attention_after"] is None and _is_attention(module)
        ):
            state["attention_after"] = name

    modules = [(n, m) for n, m in model.named_modules() if n]
    with _hooks(modules, watch):
        out = model_outputs(model, x)
    kind = type(model).__name__
    if state["last"] is None:
        reason = (
            "has no convolutional layer"
            if not state["convs"]
            else "has no spatial feature map after its first convolution"
        )
        raise ConfigError(
            f"Grad-CAM needs a convolutional feature map but {kind} {reason} "
            "(a transformer or MLP?): use saliency() instead, or pass layer= a module returning "
            "(B, C, *spatial)"
        )
    name, feature = state["last"]
    if state["attention_after"] is not None and state["convs"] == 1:
        raise ConfigError(
            f"the only convolution of {kind} ({name!r}, a patch embedding?) is followed by the "
            f"attention module {state['attention_after']!r}: a transformer, whose decision is not "
            f"made on that map; use saliency() instead, or pass layer={name!r} to explain that map "
            "anyway"
        )
    return out, name, feature


def find_cam_layer(model: nn.Module, images: Tensor) -> str:
    """The dotted name of the module :func:`grad_cam` explains when ``layer`` is None.

    It is the module that completes last in the forward pass while returning a spatial feature
    map (the rule is in the docstring of ``medseg.inference.explain``); ``""`` never (the
    whole model returns ``(B, K)``).

    Raises:
        ConfigError: as :func:`grad_cam` without ``layer``.

    Example:
        >>> net = nn.Sequential(nn.Conv3d(1, 2, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten())
        >>> find_cam_layer(net, torch.zeros(1, 1, 5, 5, 5))
        '0'
    """
    x = check_images(model, images)
    with explaining(model), torch.no_grad():
        return forward_capturing(model, x, None)[1]
