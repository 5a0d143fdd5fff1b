"""Applying a trained denoiser: ``denoise(run_dir, image) -> Image``.

The network sees each image normalised by its own intensities (``(x - p0.5) / (p99.5 -
p0.5)``, percentiles per channel of the noisy input itself, the only image there is at
inference time); its output is mapped back to the input's units. An image up to
``WHOLE_IMAGE_VOXELS`` voxels is denoised in one pass (padded symmetrically to the network's
divisor, then cropped back); a larger one tile by tile
(``medseg.inference.sliding_window_inference``, the training patch, half overlap, Gaussian
blending).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.device import resolve_device
from medseg.enhance.config import DenoiseConfig
from medseg.errors import ConfigError, GeometryError
from medseg.inference.sliding_window import flip_combinations, sliding_window_inference
from medseg.io import Image
from medseg.nets.residual_unet import ResidualDenoiser
from medseg.training.checkpoint import load_checkpoint

WHOLE_IMAGE_VOXELS = 256**3 // 8  # 2 M voxels: a 1448^2 picture or a 128^3 volume
PERCENTILES = (0.5, 99.5)


def intensity_stats(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(low, scale)`` of a ``(C, *spatial)`` array, broadcastable to it:
    the 0.5th percentile and the 0.5-99.5 percentile span (at least 1e-6)."""
    flat = np.asarray(array, dtype=np.float64).reshape(array.shape[0], -1)
    low, high = np.percentile(flat, PERCENTILES, axis=1)
    scale = np.maximum(high - low, 1e-6)
    shape = (-1,) + (1,) * (array.ndim - 1)
    return low.reshape(shape).astype(np.float32), scale.reshape(shape).astype(np.float32)


def build_denoiser(config: DenoiseConfig) -> ResidualDenoiser:
    """The config's network, freshly initialised."""
    if config.spatial_dims is None or config.in_channels is None:
        raise ConfigError("the denoise config has no spatial_dims/in_channels (not resolved)")
    channels = config.in_channels
    return ResidualDenoiser(config.spatial_dims, channels, channels, features=config.features)


def load_denoiser(
    run_dir: str | os.PathLike[str], *, checkpoint: str = "best"
) -> tuple[nn.Module, DenoiseConfig]:
    """The trained network (eval mode) and its config from ``RUN/checkpoint_<best|latest>.pt``.

    Raises:
        ConfigError: no checkpoint, or a checkpoint that is not a denoiser's.
        UnsafeFileError: a checkpoint that would run code to load.
    """
    path = Path(run_dir) / f"checkpoint_{checkpoint}.pt"
    data = load_checkpoint(path, kind="weights", what="denoiser checkpoint")
    if "denoise_config" not in data or "network_state" not in data:
        raise ConfigError(f"{path}: not a denoiser checkpoint (no denoise_config)")
    config = DenoiseConfig.from_dict(dict(data["denoise_config"]), source=str(path))
    model = build_denoiser(config)
    model.load_state_dict(data["network_state"])
    return model.eval(), config


def _pad_amounts(shape: tuple[int, ...], divisor: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(0, (-s) % d) for s, d in zip(shape, divisor, strict=True)]


def denoise_array(
    model: nn.Module,
    config: DenoiseConfig,
    array: np.ndarray,
    *,
    device: Any = None,
    mirror: bool = False,
) -> np.ndarray:
    """Denoise a ``(C, *spatial)`` array; returns float32 of the same shape and units.

    Args:
        mirror: average the outputs of every flip combination of the spatial axes (4 passes
            in 2D, 8 in 3D; a self-ensemble, Timofte et al. 2016).

    Raises:
        GeometryError: the array's dimensions or channels differ from the model's.
    """
    array = np.asarray(array, dtype=np.float32)
    dims, channels = config.spatial_dims, config.in_channels
    if array.ndim != dims + 1 or array.shape[0] != channels:
        raise GeometryError(
            f"the denoiser takes ({channels}, *spatial) {dims}D images, got shape {array.shape}"
        )
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    low, scale = intensity_stats(array)
    x = (array - low) / scale
    spatial = array.shape[1:]
    pads = _pad_amounts(spatial, tuple(model.required_divisor))
    x = np.pad(x, [(0, 0), *pads], mode="symmetric")
    tensor = torch.from_numpy(np.ascontiguousarray(x))[None]
    axes = tuple(range(dims)) if mirror else None
    model.eval()
    with torch.inference_mode():
        if math.prod(spatial) <= WHOLE_IMAGE_VOXELS:
            flips = flip_combinations(axes, dims)
            out = sum(model(tensor.to(dev).flip(f)).float().cpu().flip(f) for f in flips)
            out = out / len(flips)
        else:
            out = sliding_window_inference(
                tensor,
                model,
                config.resolved_patch(),
                output="logits",
                device=dev,
                amp=False,
                mirror_axes=axes,
            )
    crop = tuple(slice(0, s) for s in spatial)
    return (out[0].numpy()[(slice(None), *crop)] * scale + low).astype(np.float32)


def denoise_image(model: nn.Module, config: DenoiseConfig, image: Image, **kw: Any) -> Image:
    """Denoise an :class:`Image` (with or without a channel axis) on its own grid."""
    if image.spatial_dims != config.spatial_dims:
        raise GeometryError(
            f"the denoiser was trained on {config.spatial_dims}D images; this one is "
            f"{image.spatial_dims}D"
        )
    out = denoise_array(model, config, image.channels_first(), **kw)
    return image.with_array(out if image.has_channels else out[0])


def denoise(
    run_dir: str | os.PathLike[str], image: Image, *, device: Any = None, mirror: bool = False
) -> Image:
    """Denoise ``image`` with the best checkpoint of a ``medseg enhance train`` run.

    Args:
        run_dir: the run folder.
        image: ``(*spatial)`` or ``(C, *spatial)``, the dimension and channels it was trained on.
        device: "cpu", "cuda" or None (CPU).
        mirror: average over flips of the spatial axes (:func:`denoise_array`).

    Returns:
        The denoised image, same grid, shape and intensity units, float32.

    Raises:
        ConfigError: not a denoiser run (or a super-resolution one).
        GeometryError: an image of another dimension or channel count.
    """
    model, config = load_denoiser(run_dir)
    if config.mode == "super_resolution":
        raise ConfigError(
            f"{run_dir}: a super-resolution run; upsample with medseg.enhance.super_resolve"
        )
    model.to(resolve_device(device or "cpu"))
    return denoise_image(model, config, image, mirror=mirror)
