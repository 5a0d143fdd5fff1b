"""Fully connected CRF post-processing of softmax outputs, by mean-field inference.

Krähenbühl & Koltun (2011), "Efficient inference in fully connected CRFs with Gaussian edge
potentials". The energy of a labelling ``x`` is ``sum_i U_i(x_i) + sum_{i<j} mu(x_i, x_j)
k(f_i, f_j)`` with the unary ``U_i(l) = -log p_i(l)`` (the network's softmax) and two
Gaussian edge kernels, positions ``p`` in mm and image values ``I``:

* smoothness: ``w_gaussian * exp(-|p_i - p_j|^2 / (2 theta_gamma^2))``;
* appearance (bilateral): ``w_bilateral * exp(-|p_i - p_j|^2 / (2 theta_alpha^2)
  - |I_i - I_j|^2 / (2 theta_beta^2))``.

Mean field updates ``Q_i(l) ∝ exp(-U_i(l) - sum_l' mu(l, l') sum_m w_m sum_{j != i}
k_m(f_i, f_j) Q_j(l'))`` start from ``Q = p``; with zero pairwise weights ``Q`` stays ``p``.
Potts compatibility ``mu(l, l') = [l != l']``. By default (``normalize=True``) each kernel's
message is divided by the kernel's total weight at the voxel (pydensecrf's
``NORMALIZE_AFTER``): it is the kernel-weighted mean of the neighbours' ``Q``, so the weights
are in nats like the unary and do not grow with theta (the paper's raw sums do, as
``(2 pi)^(d/2) theta^d`` voxels).

Approximations (this is not the permutohedral lattice of the paper):

* the smoothness kernel is an exact separable Gaussian convolution in mm, truncated at 3
  sigma (sigma per axis ``theta_gamma_mm / spacing``);
* the bilateral kernel is a truncated local window: neighbours within ``2 theta_alpha`` mm
  per axis (spatial weight >= exp(-2) = 0.14 along an axis), sampled on a grid of at most
  ``2 * max_radius + 1`` offsets per axis; where the window is wider than that, offsets are
  ``stride`` voxels apart and each sampled neighbour stands for ``stride^d`` neighbours
  (its weight is multiplied by that). Neighbours outside the image are absent. The work is
  ``(2 max_radius + 1)^d`` shifted multiplies of the ``(C, *spatial)`` map per iteration.

The image channels are z-scored first (per channel, over the image), so ``theta_beta`` is in
standard deviations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.errors import ConfigError, DatasetError

_SUM_TOLERANCE = 1e-3
_CACHE_BYTES = 2**30  # bilateral weights kept across iterations up to this size


def _cached_weights(
    feats: Tensor | None, spacing: Sequence[float], window: dict
) -> list[tuple[tuple[int, ...], Tensor]] | None:
    """The bilateral weights, computed once for all iterations when they fit in
    ``_CACHE_BYTES`` (None: recomputed in each iteration)."""
    if feats is None:
        return None
    axes = _window(spacing, window["theta_alpha_mm"], window["max_radius"])
    size = math.prod(len(a) for a in axes) * feats[0].numel() * feats.element_size()
    return list(bilateral_weights(feats, spacing, **window)) if size <= _CACHE_BYTES else None


def _check_inputs(
    probabilities: Tensor, image: Tensor | None, spacing: Sequence[float], w_bilateral: float
) -> None:
    dims = len(spacing)
    if dims not in (2, 3):
        raise ConfigError(f"dense_crf: spacing {tuple(spacing)} must have 2 or 3 entries")
    if probabilities.ndim != dims + 1 or probabilities.shape[0] < 2:
        raise DatasetError(
            f"dense_crf: probabilities of shape {tuple(probabilities.shape)} must be "
            f"(C >= 2, *spatial) with {dims} spatial axes (spacing {tuple(spacing)})"
        )
    if not torch.isfinite(probabilities).all() or bool((probabilities < 0).any()):
        raise DatasetError("dense_crf: probabilities must be finite and >= 0 (softmax output)")
    worst = float((probabilities.sum(0) - 1).abs().max())
    if worst > _SUM_TOLERANCE:
        raise DatasetError(
            f"dense_crf: probabilities do not sum to 1 over the channel axis (off by up to "
            f"{worst:.3g}); pass softmax probabilities, not logits or a one-class map"
        )
    if w_bilateral > 0 and (image is None or image.shape[0] == 0):
        raise ConfigError(
            "dense_crf: the bilateral (appearance) term needs the image; pass image= with "
            "(K >= 1, *spatial) channels or set w_bilateral=0"
        )
    if image is not None and (
        image.ndim != dims + 1 or tuple(image.shape[1:]) != tuple(probabilities.shape[1:])
    ):
        raise DatasetError(
            f"dense_crf: image of shape {tuple(image.shape)} does not match probabilities "
            f"{tuple(probabilities.shape)}; expected (K, *{tuple(probabilities.shape[1:])})"
        )


def gaussian_filter_mm(x: Tensor, spacing: Sequence[float], sigma_mm: float) -> Tensor:
    """Unnormalised separable Gaussian ``sum_j exp(-|p_i - p_j|^2 / (2 sigma^2)) x_j``
    (centre weight 1, zero outside the image, truncated at 3 sigma).

    Args:
        x: ``(C, *spatial)`` tensor.
        spacing: voxel size in mm per spatial axis.
        sigma_mm: standard deviation in mm.

    Returns:
        A ``(C, *spatial)`` tensor.

    Example:
        >>> gaussian_filter_mm(torch.ones(1, 1, 1), (1.0, 1.0), 1.0).item()
        1.0
    """
    out = x.unsqueeze(1)  # (C, 1, *spatial): each channel filtered on its own
    dims = len(spacing)
    conv = {2: F.conv2d, 3: F.conv3d}[dims]
    for axis, step in enumerate(spacing):
        sigma = sigma_mm / float(step)
        radius = max(int(math.ceil(3 * sigma)), 0)
        offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        taps = torch.exp(-(offsets**2) / (2 * sigma**2))
        shape = [1, 1] + [1] * dims
        shape[2 + axis] = taps.numel()
        padding = [0] * dims
        padding[axis] = radius
        out = conv(out, taps.reshape(shape), padding=tuple(padding))
    return out.squeeze(1)


def _window(spacing: Sequence[float], theta_alpha_mm: float, max_radius: int) -> list[list[int]]:
    """Per-axis offsets (voxels) of the truncated bilateral window."""
    axes = []
    for step in spacing:
        reach = int(math.ceil(2 * theta_alpha_mm / float(step)))
        stride = max(1, int(math.ceil(reach / max_radius)))
        count = reach // stride
        axes.append([k * stride for k in range(-count, count + 1)])
    return axes


def _shifted(x: Tensor, offset: Sequence[int], padded: Tensor, radius: Sequence[int]) -> Tensor:
    """``x`` at position ``i + offset`` (from the zero-padded copy ``padded``)."""
    index = [slice(None)] + [
        slice(r + o, r + o + n) for r, o, n in zip(radius, offset, x.shape[1:], strict=True)
    ]
    return padded[tuple(index)]


def bilateral_weights(
    image: Tensor, spacing: Sequence[float], *, theta_alpha_mm: float, theta_beta: float,
    max_radius: int = 6,
) -> Iterator[tuple[tuple[int, ...], Tensor]]:  # fmt: skip
    """The truncated bilateral window (module docstring): for every offset but 0, the
    ``(*spatial)`` weights ``k(f_i, f_{i + offset})`` (0 where the neighbour is outside).

    Args:
        image: ``(K, *spatial)`` appearance features (already scaled).
        spacing: voxel size in mm.
        theta_alpha_mm: spatial standard deviation in mm.
        theta_beta: appearance standard deviation in image units.
        max_radius: at most this many sampled offsets on each side per axis.

    Yields:
        ``(offset, weights)`` pairs, offset in voxels per axis.
    """
    axes = _window(spacing, theta_alpha_mm, max_radius)
    radius = [max(abs(a[0]), 1) for a in axes]
    pad = [p for r in reversed(radius) for p in (r, r)]
    img_pad = F.pad(image.unsqueeze(0), pad).squeeze(0)
    inside = F.pad(torch.ones_like(image[:1]).unsqueeze(0), pad).squeeze(0)
    volume = float(np.prod([(a[1] - a[0]) if len(a) > 1 else 1 for a in axes]))
    for offset in itertools.product(*axes):
        if not any(offset):
            continue
        dist2 = sum((o * float(s)) ** 2 for o, s in zip(offset, spacing, strict=True))
        diff2 = ((image - _shifted(image, offset, img_pad, radius)) ** 2).sum(0)
        weight = torch.exp(-diff2 / (2 * theta_beta**2))
        weight *= _shifted(image[:1], offset, inside, radius)[0]
        yield offset, weight * (volume * math.exp(-dist2 / (2 * theta_alpha_mm**2)))


def bilateral_filter(
    q: Tensor, image: Tensor, spacing: Sequence[float], *, theta_alpha_mm: float,
    theta_beta: float, max_radius: int = 6,
    weights: Iterable[tuple[tuple[int, ...], Tensor]] | None = None,
) -> Tensor:  # fmt: skip
    """Truncated-window bilateral message ``sum_{j != i} k(f_i, f_j) q_j`` (see the module
    docstring for the window).

    Args:
        q: ``(C, *spatial)`` values to filter.
        image, spacing, theta_alpha_mm, theta_beta, max_radius: as in
            :func:`bilateral_weights`.
        weights: the precomputed :func:`bilateral_weights` (then the image is not read).

    Returns:
        A ``(C, *spatial)`` tensor (self term excluded).
    """
    if weights is None:
        weights = bilateral_weights(
            image, spacing, theta_alpha_mm=theta_alpha_mm, theta_beta=theta_beta,
            max_radius=max_radius,
        )  # fmt: skip
    radius = [max(abs(a[0]), 1) for a in _window(spacing, theta_alpha_mm, max_radius)]
    q_pad = F.pad(q.unsqueeze(0), [p for r in reversed(radius) for p in (r, r)]).squeeze(0)
    out = torch.zeros_like(q)
    for offset, weight in weights:
        out += weight * _shifted(q, offset, q_pad, radius)
    return out


def _compatibility(compatibility: str | np.ndarray | Tensor, classes: int, like: Tensor) -> Tensor:
    if isinstance(compatibility, str):
        if compatibility != "potts":
            raise ConfigError(
                "dense_crf: compatibility must be 'potts' or a (C, C) matrix, "
                f"got {compatibility!r}"
            )
        return 1 - torch.eye(classes, dtype=like.dtype, device=like.device)
    matrix = torch.as_tensor(np.asarray(compatibility), dtype=like.dtype, device=like.device)
    if tuple(matrix.shape) != (classes, classes):
        raise ConfigError(
            f"dense_crf: compatibility matrix of shape {tuple(matrix.shape)} for {classes} classes"
        )
    return matrix


def _kernels(
    probs: Tensor, image: Tensor | None, spacing: Sequence[float], w_gaussian: float,
    gamma: float, w_bilateral: float, window: dict, normalize: bool,
) -> list[tuple[float, Callable[[Tensor], Tensor], Tensor | float]]:  # fmt: skip
    """``(weight, message function, normaliser)`` of each kernel in use; the message excludes
    the voxel itself and the normaliser is the total weight of its neighbours (or 1)."""
    kernels: list[tuple[float, Callable[[Tensor], Tensor], Tensor | float]] = []
    ones = torch.ones_like(probs[:1])
    if w_gaussian > 0:

        def smooth(q: Tensor) -> Tensor:
            return gaussian_filter_mm(q, spacing, gamma) - q

        kernels.append((w_gaussian, smooth, smooth(ones).clamp_min(1e-12) if normalize else 1.0))
    if w_bilateral > 0 and image is not None:
        feats = _zscore(image)
        cached = _cached_weights(feats, spacing, window)

        def appearance(q: Tensor) -> Tensor:
            return bilateral_filter(q, feats, spacing, weights=cached, **window)

        norm = appearance(ones).clamp_min(1e-12) if normalize else 1.0
        kernels.append((w_bilateral, appearance, norm))
    return kernels


def _zscore(image: Tensor) -> Tensor:
    flat = image.reshape(image.shape[0], -1)
    mean = flat.mean(1).reshape(-1, *[1] * (image.ndim - 1))
    std = flat.std(1).clamp_min(1e-12).reshape(-1, *[1] * (image.ndim - 1))
    return (image - mean) / std


def dense_crf(
    probabilities: np.ndarray | Tensor,
    image: np.ndarray | Tensor | None,
    *,
    spacing: Sequence[float],
    iterations: int = 5,
    w_gaussian: float = 3.0,
    theta_gamma_mm: float | None = None,
    w_bilateral: float = 5.0,
    theta_alpha_mm: float | None = None,
    theta_beta: float = 0.5,
    compatibility: str | np.ndarray = "potts",
    max_radius: int = 6,
    normalize: bool = True,
) -> np.ndarray:
    """Refine softmax probabilities with a fully connected CRF (mean field, 2D or 3D).

    Args:
        probabilities: ``(C, *spatial)`` softmax output, ``C >= 2``, summing to 1 over ``C``.
        image: ``(K, *spatial)`` image (any K >= 1; z-scored per channel inside), or None
            when ``w_bilateral == 0``.
        spacing: voxel size in mm per spatial axis (array order).
        iterations: mean-field updates (>= 0; 0 returns the input).
        w_gaussian: weight of the smoothness kernel (>= 0).
        theta_gamma_mm: its standard deviation in mm; None: 3 voxels of the finest spacing.
        w_bilateral: weight of the appearance kernel (>= 0).
        theta_alpha_mm: its spatial standard deviation in mm; None: 10 voxels of the finest
            spacing.
        theta_beta: its intensity standard deviation, in standard deviations of the image.
        compatibility: ``"potts"`` (``[l != l']``) or a ``(C, C)`` label compatibility matrix.
        max_radius: sampled bilateral offsets per side and axis (see the module docstring).
        normalize: divide each kernel's message by its total weight at the voxel, so the
            message is the kernel-weighted mean of the neighbours' ``Q`` and the weights are
            in nats like the unary (pydensecrf's ``NORMALIZE_AFTER``); False: the paper's raw
            sums, whose scale grows with theta (``(2 pi)^(d/2) theta^d`` voxels).

    Returns:
        ``(C, *spatial)`` float32 refined probabilities (sum 1 per voxel); with both weights
        0 they equal the input (up to rounding), so the argmax is unchanged.

    Raises:
        DatasetError: probabilities not ``(C >= 2, *spatial)``, negative, NaN or not summing
            to 1; an image whose spatial shape differs.
        ConfigError: bilateral weight > 0 without an image; bad spacing, weights, iterations
            or compatibility.

    Example:
        >>> p = np.full((2, 4, 4), 0.5, np.float32); p[0, 0, 0], p[1, 0, 0] = 0.9, 0.1
        >>> dense_crf(p, None, spacing=(1.0, 1.0), w_bilateral=0.0).shape
        (2, 4, 4)
    """
    probs = torch.as_tensor(np.asarray(probabilities), dtype=torch.float32)
    img = None if image is None else torch.as_tensor(np.asarray(image), dtype=torch.float32)
    if iterations < 0 or min(w_gaussian, w_bilateral, theta_beta) < 0 or max_radius < 1:
        raise ConfigError(
            f"dense_crf: iterations, weights and theta_beta must be >= 0 and max_radius >= 1 "
            f"(got iterations={iterations}, w_gaussian={w_gaussian}, w_bilateral={w_bilateral}, "
            f"theta_beta={theta_beta}, max_radius={max_radius})"
        )
    _check_inputs(probs, img, spacing, w_bilateral)
    finest = min(float(s) for s in spacing)
    gamma = 3 * finest if theta_gamma_mm is None else float(theta_gamma_mm)
    alpha = 10 * finest if theta_alpha_mm is None else float(theta_alpha_mm)
    if gamma <= 0 or alpha <= 0 or (w_bilateral > 0 and theta_beta == 0):
        raise ConfigError("dense_crf: theta_gamma_mm, theta_alpha_mm and theta_beta must be > 0")
    mu = _compatibility(compatibility, probs.shape[0], probs)
    log_p = probs.clamp_min(1e-8).log()  # -unary
    window = {"theta_alpha_mm": alpha, "theta_beta": theta_beta, "max_radius": max_radius}
    kernels = _kernels(probs, img, spacing, w_gaussian, gamma, w_bilateral, window, normalize)
    q = probs
    for _ in range(iterations):
        message = torch.zeros_like(q)
        for weight, message_of, norm in kernels:
            message += weight * message_of(q) / norm
        pairwise = torch.einsum("lk,k...->l...", mu, message)
        q = torch.softmax(log_p - pairwise, dim=0)
    return q.numpy()


def apply_crf_decision(
    probabilities: np.ndarray,
    image: np.ndarray,
    spacing: Sequence[float],
    values: Sequence[int],
    decision: dict | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The CRF that cross-validation chose (``decision["crf"]``, from
    ``medseg.inference.postprocess.choose_crf``), or None when it chose none.

    Args:
        probabilities: ``(C, *spatial)`` softmax, channel ``i`` for label value ``values[i]``.
        image: ``(K, *spatial)`` the input image in the same geometry.

    Returns:
        ``(refined probabilities, label map of values)``.
    """
    settings = (decision or {}).get("crf")
    if not settings:
        return None
    refined = dense_crf(probabilities, image, spacing=spacing, **settings)
    return refined, np.asarray(values)[refined.argmax(0)]
