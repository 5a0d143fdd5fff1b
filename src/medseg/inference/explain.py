"""Explainability for image classifiers: Grad-CAM, input-gradient saliency and overlays.

Works for any classifier ``nn.Module`` mapping ``(B, C, *spatial)`` images (1, 2 or 3 spatial
axes) to ``(B, K)`` outputs (logits, or K regression targets; a ``(B,)`` output counts as
``K = 1``).

* :func:`grad_cam` (Selvaraju et al. 2017): for the target output ``y`` and the feature map
  ``A`` of a layer, ``cam = ReLU(sum_k w_k A_k)`` with ``w_k`` the spatial mean of
  ``dy/dA_k``, upsampled (multi-)linearly to the image size and divided by its maximum per
  image (an all-zero map stays zero). Without ``layer`` the layer is found by hooks on every
  module: the module that completes *last* in the forward pass while returning a spatial
  feature map ``(B, C', *spatial')`` (same number of axes as the image, more than one voxel),
  after at least one convolution ran; adaptive pooling (as VGG's to 7 x 7) belongs to the
  head and does not count. For a usual CNN that is the backbone (or last block, or last
  activation) output right before the pooling; see :func:`find_cam_layer`. A model without
  convolutions, or whose only convolution (a patch embedding) is followed by attention (a
  vision transformer), is refused: explain it with :func:`saliency`.
* :func:`saliency` (Simonyan et al. 2014): ``|dy/dx|``, maximum over channels, divided by its
  maximum per image; with ``smooth_samples`` the mean over noisy copies (SmoothGrad, Smilkov
  et al. 2017). It needs no convolution, so it also explains transformers.
* :func:`mass_inside`: the share of a heatmap's mass inside a mask (a localisation measure).
* :func:`save_overlay`: a PNG of the image in grey with the heatmap drawn over it.

Every call puts the model in eval mode and restores each module's previous mode afterwards,
removes its hooks (also on errors), and takes gradients with ``torch.autograd.grad``, so no
``.grad`` is left on the parameters. Batch items are explained independently (as long as the
model treats them independently in eval mode, which every usual layer does).

Example:
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
    ...                     nn.Flatten(), nn.Linear(4, 2))
    >>> x = torch.randn(2, 1, 16, 16)
    >>> tuple(grad_cam(net, x).shape), tuple(saliency(net, x).shape), find_cam_layer(net, x)
    ((2, 16, 16), (2, 16, 16), '1')
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from medseg.errors import ConfigError, GeometryError
from medseg.fileutil import atomic_path, check_writable
from medseg.nets.ops import CONV, CONV_TRANSPOSE, interpolation_mode

Target = int | Sequence[int] | Tensor | None

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
OVERLAY_ALPHA = 0.6  # opacity of the heatmap where it is largest (it fades to 0 where the map is 0)
OVERLAY_CMAP = "jet"


# ---------------------------------------------------------------- checks and helpers


def _spatial_dims_of(module: nn.Module) -> int | None:
    for dims in (1, 2, 3):
        if isinstance(module, (CONV[dims], CONV_TRANSPOSE[dims])):
            return dims
    return None


def _check_images(model: nn.Module, images: Tensor) -> Tensor:
    """A float copy of ``images`` that requires grad, after checking it is ``(B, C, *spatial)``."""
    if not isinstance(images, Tensor):
        raise ConfigError(
            f"images must be a torch.Tensor (B, C, *spatial), got {type(images).__name__}"
        )
    if images.ndim not in (3, 4, 5) or images.shape[0] == 0 or images.shape[1] == 0:
        raise ConfigError(
            f"images must be (B, C, *spatial) with 1, 2 or 3 spatial axes and B, C >= 1; "
            f"got shape {tuple(images.shape)} (add the batch axis with images[None], "
            "the channel axis with images[:, None])"
        )
    conv_dims = {d for m in model.modules() if (d := _spatial_dims_of(m)) is not None}
    if len(conv_dims) == 1 and (dims := conv_dims.pop()) != images.ndim - 2:
        raise ConfigError(
            f"images of shape {tuple(images.shape)} have {images.ndim - 2} spatial axes but "
            f"{type(model).__name__} uses {dims}D convolutions: pass (B, C, *spatial) with "
            f"{dims} spatial axes"
        )
    if torch.is_inference_mode_enabled():
        raise ConfigError("explanations need gradients: call them outside torch.inference_mode()")
    x = images.detach().clone()
    if not x.is_floating_point():
        x = x.float()
    return x.requires_grad_(True)


@contextmanager
def _explaining(model: nn.Module) -> Iterator[None]:
    """Eval mode and gradients on inside; every module's own training flag restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        model.train(modes[0][1])  # through ``train`` first, for modules that override it
        for module, mode in modes:
            module.training = mode


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


def _outputs(model: nn.Module, x: Tensor) -> Tensor:
    """The model's ``(B, K)`` output (a ``(B,)`` output becomes ``(B, 1)``)."""
    out = model(x)
    if not isinstance(out, Tensor):
        raise ConfigError(
            f"{type(model).__name__} must return a (B, K) tensor, got {type(out).__name__}"
        )
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim != 2 or out.shape[0] != x.shape[0]:
        raise ConfigError(
            f"{type(model).__name__} returned shape {tuple(out.shape)} for {x.shape[0]} images; "
            "explanations need a classifier or regressor with (B, K) outputs"
        )
    return out


def _target_indices(out: Tensor, target: Target) -> Tensor:
    """``(B,)`` output indices: the largest output (``None``), one int for all, or one per image."""
    batch, k = out.shape
    if target is None:
        return out.detach().argmax(dim=1)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        idx = torch.full((batch,), int(target), dtype=torch.long, device=out.device)
    else:
        idx = torch.as_tensor(target, device=out.device)
        if idx.is_floating_point() or idx.dtype == torch.bool or idx.shape not in {(batch,), ()}:
            raise ConfigError(
                f"target must be None, an int or {batch} ints (one per image), "
                f"got {tuple(idx.shape)} values of type {idx.dtype}"
            )
        idx = idx.long().expand(batch)
    if bool(((idx < 0) | (idx >= k)).any()):
        raise ConfigError(
            f"target {idx.tolist()} out of range: the model has {k} outputs (0..{k - 1})"
        )
    return idx


def _score(out: Tensor, idx: Tensor) -> Tensor:
    """Sum over the batch of each image's target output (gradients stay per image)."""
    return out.gather(1, idx[:, None]).sum()


def _normalise(maps: Tensor) -> Tensor:
    """Divide each map by its maximum; a map without positive values is returned as zeros."""
    top = maps.flatten(1).amax(dim=1).reshape(-1, *([1] * (maps.ndim - 1)))
    return torch.where(
        top > 0, maps / torch.where(top > 0, top, torch.ones_like(top)), torch.zeros_like(maps)
    )


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


def _forward_capturing(
    model: nn.Module, x: Tensor, layer: nn.Module | str | None
) -> tuple[Tensor, str, Tensor]:
    """Run the model once and return ``(outputs (B, K), layer name, its feature map)``."""
    if layer is not None:
        name, module = _resolve_layer(model, layer)
        captured: dict[str, Any] = {}

        def keep(_name: str, _module: nn.Module, out: Any) -> None:
            captured["out"] = out  # a module called twice: its last call counts

        with _hooks([(name, module)], keep):
            out = _outputs(model, x)
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
        out = _outputs(model, x)
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


# ---------------------------------------------------------------- public API


def find_cam_layer(model: nn.Module, images: Tensor) -> str:
    """The dotted name of the module :func:`grad_cam` explains when ``layer`` is None.

    It is the module that completes last in the forward pass while returning a spatial feature
    map (see the module docstring); ``""`` never (the whole model returns ``(B, K)``).

    Raises:
        ConfigError: as :func:`grad_cam` without ``layer``.

    Example:
        >>> net = nn.Sequential(nn.Conv3d(1, 2, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten())
        >>> find_cam_layer(net, torch.zeros(1, 1, 5, 5, 5))
        '0'
    """
    x = _check_images(model, images)
    with _explaining(model), torch.no_grad():
        return _forward_capturing(model, x, None)[1]


def grad_cam(
    model: nn.Module, images: Tensor, target: Target = None, layer: nn.Module | str | None = None
) -> Tensor:
    """Grad-CAM heatmaps, one per image, in [0, 1] at the image size.

    Args:
        model: a classifier (or regressor) ``(B, C, *spatial) -> (B, K)``.
        images: ``(B, C, *spatial)`` with 1, 2 or 3 spatial axes.
        target: the output to explain: None (each image's largest output: the predicted
            class; pass it explicitly for a regressor), an int for every image, or ``B`` ints.
        layer: the module whose output is explained: a submodule or its dotted name
            (``"backbone.layer4"``); None finds it (:func:`find_cam_layer`). A module run
            several times counts with its last call.

    Returns:
        ``(B, *spatial)`` float tensor on the images' device, each map divided by its maximum
        (an all-zero map, e.g. a target no region speaks for, stays zero).

    Raises:
        ConfigError: images not ``(B, C, *spatial)`` or with the wrong number of axes for the
            model's convolutions; no convolutional feature map (a transformer: use
            :func:`saliency`); an unknown ``layer`` or one not returning a feature map; an
            invalid ``target``; a model output that is not ``(B, K)``.
    """
    x = _check_images(model, images)
    with _explaining(model):
        out, name, feature = _forward_capturing(model, x, layer)
        idx = _target_indices(out, target)
        if not feature.requires_grad:
            raise ConfigError(
                f"the output of layer {name!r} does not depend on the images through autograd "
                "(detached or computed under no_grad inside the model)"
            )
        (grads,) = torch.autograd.grad(_score(out, idx), feature, allow_unused=True)
        if grads is None:
            raise ConfigError(
                f"the explained outputs do not depend on layer {name!r}; choose another layer"
            )
        spatial = tuple(range(2, feature.ndim))
        weights = grads.detach().float().mean(dim=spatial, keepdim=True)
        cam = F.relu((weights * feature.detach().float()).sum(dim=1, keepdim=True))
    cam = F.interpolate(
        cam, size=tuple(x.shape[2:]), mode=interpolation_mode(x.ndim - 2), align_corners=False
    )
    return _normalise(cam[:, 0].clamp_min(0)).to(images.device)


def saliency(
    model: nn.Module,
    images: Tensor,
    target: Target = None,
    smooth_samples: int = 0,
    noise: float = 0.1,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Input-gradient saliency ``|d output / d image|`` (max over channels), in [0, 1].

    Args:
        model: any differentiable ``(B, C, *spatial) -> (B, K)`` model (a transformer too).
        images: ``(B, C, *spatial)`` with 1, 2 or 3 spatial axes.
        target: as :func:`grad_cam` (None: the class predicted on the clean images).
        smooth_samples: SmoothGrad: average ``|gradient|`` over this many copies with
            Gaussian noise added (0: the plain gradient of the clean images).
        noise: SmoothGrad noise standard deviation as a share of each image's intensity range
            (max - min); 0.1-0.2 is the paper's advice.
        generator: random generator for the noise (on the images' device), for reproducible maps.

    Returns:
        ``(B, *spatial)`` float tensor, each map divided by its maximum (all-zero stays zero).

    Raises:
        ConfigError: as :func:`grad_cam` (images, target, outputs), or a negative
            ``smooth_samples`` or ``noise``.
    """
    if int(smooth_samples) != smooth_samples or smooth_samples < 0:
        raise ConfigError(f"smooth_samples must be an int >= 0, got {smooth_samples!r}")
    if not math.isfinite(noise) or noise < 0:
        raise ConfigError(f"noise must be a finite number >= 0, got {noise!r}")
    x = _check_images(model, images)
    with _explaining(model):
        if smooth_samples == 0:
            out = _outputs(model, x)
            (grads,) = torch.autograd.grad(_score(out, _target_indices(out, target)), x)
            total = grads.abs()
        else:
            with torch.no_grad():
                idx = _target_indices(_outputs(model, x), target)
            flat = x.detach().flatten(1)
            sigma = (noise * (flat.amax(dim=1) - flat.amin(dim=1))).reshape(
                -1, *([1] * (x.ndim - 1))
            )
            total = torch.zeros_like(x)
            for _ in range(int(smooth_samples)):
                eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                noisy = (x.detach() + sigma * eps).requires_grad_(True)
                (grads,) = torch.autograd.grad(_score(_outputs(model, noisy), idx), noisy)
                total += grads.abs()
            total /= smooth_samples
    return _normalise(total.detach().float().amax(dim=1)).to(images.device)


def mass_inside(heatmap: Tensor | np.ndarray, mask: Tensor | np.ndarray) -> float:
    """The share of the heatmap's total mass inside ``mask``: ``sum(h[mask]) / sum(h)``.

    Args:
        heatmap: non-negative map (e.g. from :func:`grad_cam`), any shape.
        mask: same shape; non-zero = inside.

    Returns:
        A number in [0, 1]; NaN when the heatmap is all zero (nothing to localise). A map
        spread uniformly scores the mask's area fraction.

    Raises:
        ValueError: shapes differ, or the heatmap has negative or non-finite values.

    Example:
        >>> mass_inside(np.array([[3.0, 1.0], [0.0, 0.0]]), np.array([[1, 0], [0, 0]], bool))
        0.75
    """
    heat = (
        heatmap.detach().cpu().double().numpy()
        if isinstance(heatmap, Tensor)
        else np.asarray(heatmap, float)
    )
    inside = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    if heat.shape != inside.shape:
        raise ValueError(f"heatmap {heat.shape} and mask {inside.shape} differ in shape")
    if not np.isfinite(heat).all() or (heat < 0).any():
        raise ValueError(
            "the heatmap must be finite and non-negative (take abs() or a ReLU of a signed map)"
        )
    total = float(heat.sum())
    if total <= 0:
        return math.nan
    return float(heat[inside.astype(bool)].sum()) / total


def peak_slice(heatmap: Tensor | np.ndarray) -> int | None:
    """The axial slice (array axis 0 of a 3D ``(z, y, x)`` map) with the most heatmap mass.

    Returns:
        The slice index (the first one on ties; the middle one for an all-zero map), or None
        for a 2D map.

    Example:
        >>> h = np.zeros((4, 2, 2)); h[2, 0, 0] = 1.0
        >>> peak_slice(h), peak_slice(h[0])
        (2, None)
    """
    heat = _to_numpy(heatmap)
    if heat.ndim == 2:
        return None
    if heat.ndim != 3:
        raise ValueError(f"expected a 2D or 3D heatmap, got shape {heat.shape}")
    mass = np.nan_to_num(heat).reshape(len(heat), -1).sum(axis=1)
    return int(mass.argmax()) if mass.max() > 0 else len(heat) // 2


def _to_numpy(array: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(array, Tensor):
        return array.detach().cpu().float().numpy()
    return np.asarray(array, dtype=float)


def save_overlay(
    image: Tensor | np.ndarray,
    heatmap: Tensor | np.ndarray,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a PNG of the image in grey with the heatmap over it in colour.

    The heatmap's opacity grows with its value (transparent where it is 0), with a colour bar
    scaled to the map's maximum. A 3D map is shown on the axial slice (array axis 0) with the
    most heatmap mass (:func:`peak_slice`), named in the title.

    Args:
        image: ``(*spatial)`` or ``(C, *spatial)`` (the first channel is shown), 2D or 3D.
        heatmap: ``(*spatial)``, e.g. one item of :func:`grad_cam`'s output.
        path: the PNG to write (atomically: a temporary file renamed at the end).
        title: text above the picture (default ``"heatmap"``).
        overwrite: replace an existing file.

    Returns:
        The written path.

    Raises:
        OverwriteError: ``path`` exists and ``overwrite`` is False.
        GeometryError: the image does not match the heatmap.
        ConfigError: the heatmap is not 2D or 3D.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    target = check_writable(path, overwrite=overwrite)
    heat = np.nan_to_num(_to_numpy(heatmap), nan=0.0, posinf=0.0, neginf=0.0)
    picture = _to_numpy(image)
    if heat.ndim not in (2, 3):
        raise ConfigError(f"save_overlay draws 2D or 3D heatmaps, got shape {heat.shape}")
    if picture.shape != heat.shape:
        if picture.ndim == heat.ndim + 1 and picture.shape[1:] == heat.shape:
            picture = picture[0]
        else:
            raise GeometryError(
                f"image {picture.shape} does not match heatmap {heat.shape}: "
                "expected (*spatial) or (C, *spatial)"
            )
    z = peak_slice(heat)
    if z is not None:
        picture, shown = picture[z], heat[z]
    else:
        shown = heat
    top = max(float(heat.max()), 1e-12)
    level = np.clip(shown / top, 0.0, 1.0)
    cmap = colormaps[OVERLAY_CMAP]
    rgba = cmap(level)
    rgba[..., 3] = OVERLAY_ALPHA * level

    figure = Figure(figsize=(4.4, 4.0))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    finite = picture[np.isfinite(picture)]
    low, high = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    ax.imshow(
        np.nan_to_num(picture),
        cmap="gray",
        vmin=low,
        vmax=max(high, low + 1e-6),
        interpolation="nearest",
    )
    ax.imshow(rgba, interpolation="nearest")
    mappable = ScalarMappable(norm=Normalize(0.0, top), cmap=cmap)
    figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks([])
    ax.set_yticks([])
    text = title or "heatmap"
    ax.set_title(
        text if z is None else f"{text}\naxial slice {z} of {len(heat)} (most heatmap mass)",
        fontsize=9,
    )
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return target


__all__ = ["find_cam_layer", "grad_cam", "mass_inside", "peak_slice", "save_overlay", "saliency"]
