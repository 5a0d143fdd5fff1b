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

Where they live: Grad-CAM's layer choice and capture in ``medseg.inference.cam_layer``, the
checks of images and outputs in ``medseg.inference.explain_model``, the pictures in
``medseg.inference.overlay``; every public name is importable from here.

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

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.inference.cam_layer import find_cam_layer, forward_capturing
from medseg.inference.explain_model import check_images, explaining, model_outputs
from medseg.inference.overlay import peak_slice, save_overlay
from medseg.nets.ops import interpolation_mode

Target = int | Sequence[int] | Tensor | None


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
    x = check_images(model, images)
    with explaining(model):
        out, name, feature = forward_capturing(model, x, layer)
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
    x = check_images(model, images)
    with explaining(model):
        if smooth_samples == 0:
            out = model_outputs(model, x)
            (grads,) = torch.autograd.grad(_score(out, _target_indices(out, target)), x)
            total = grads.abs()
        else:
            with torch.no_grad():
                idx = _target_indices(model_outputs(model, x), target)
            flat = x.detach().flatten(1)
            sigma = (noise * (flat.amax(dim=1) - flat.amin(dim=1))).reshape(
                -1, *([1] * (x.ndim - 1))
            )
            total = torch.zeros_like(x)
            for _ in range(int(smooth_samples)):
                eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                noisy = (x.detach() + sigma * eps).requires_grad_(True)
                (grads,) = torch.autograd.grad(_score(model_outputs(model, noisy), idx), noisy)
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


__all__ = ["find_cam_layer", "grad_cam", "mass_inside", "peak_slice", "save_overlay", "saliency"]
