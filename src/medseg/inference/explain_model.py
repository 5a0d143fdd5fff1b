"""Running a classifier for an explanation (``medseg.inference.explain``): the images checked
as ``(B, C, *spatial)``, the model in eval mode with gradients on (every module's own mode
restored after), and its output checked as ``(B, K)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.ops import CONV, CONV_TRANSPOSE


def _spatial_dims_of(module: nn.Module) -> int | None:
    for dims in (1, 2, 3):
        if isinstance(module, (CONV[dims], CONV_TRANSPOSE[dims])):
            return dims
    return None


def check_images(model: nn.Module, images: Tensor) -> Tensor:
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
def explaining(model: nn.Module) -> Iterator[None]:
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


def model_outputs(model: nn.Module, x: Tensor) -> Tensor:
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
