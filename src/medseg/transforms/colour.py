"""Random colour transforms of RGB batches (pathology): HED stain, colour jitter, grey, Sobel.

Images are ``(B, C, *spatial)`` float RGB in ``[0, value_range]`` (default 255; 1.0 for
``[0, 1]``), either with ``C = 3`` or with ``channels`` naming the three RGB channels (the
others pass through). A wrong channel count or a value outside the range raises a
``ValueError`` that names it. Labels are never touched. As for every transform
(``medseg.transforms.base``), each sample applies with probability ``p``, parameters come
from the seeded generator, and samples whose parameters are the identity are returned
bit-for-bit unchanged.

* :class:`RandomHEDStain`: Tellez et al. 2018 (IEEE TMI 37(9), "Whole-slide mitosis
  detection in H&E breast histology using PHH3 as a reference to train distilled
  stain-invariant convolutional networks"): Ruifrok-Johnston deconvolution into H, E, DAB,
  ``s' = alpha s + beta`` per channel, ``alpha ~ U(1 - sigma_a, 1 + sigma_a)``, ``beta ~
  U(-sigma_b, sigma_b)`` (defaults 0.05 and 0.05, Tellez's "HED-light"; 0.2 is "strong").
* :class:`RandomColourJitter`: brightness, contrast, saturation and hue with torchvision's
  ``ColorJitter`` semantics (factor ranges ``[max(0, 1 - v), 1 + v]``, hue shift in
  ``[-h, h]`` of a full turn, the four in a random order per sample).
* :class:`RandomGrey`: ITU-R BT.601 luma copied to the three channels.
* :class:`RandomSobel`: the image replaced by (or blended with) its Sobel gradient magnitude.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from medseg.transforms.base import LabelOrNone, Transform, bernoulli, check_range, uniform
from medseg.transforms.colour_space import (
    check_rgb,
    hed_to_rgb,
    hsv_to_rgb,
    luma,
    rgb_to_hed,
    rgb_to_hsv,
)

Params = dict[str, Tensor]


def _per_sample(values: Tensor, image: Tensor) -> Tensor:
    """``(b,)`` or ``(b, 3)`` CPU values shaped to broadcast against ``(b, 3, *spatial)``."""
    values = values.to(device=image.device, dtype=image.dtype)
    if values.ndim == 1:
        values = values[:, None]
    return values.view(*values.shape, *[1] * (image.ndim - 2))


def _blend(image: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    f = _per_sample(factor, image)
    return (f * image + (1.0 - f) * other).clamp(0.0, 1.0)


def adjust_brightness(rgb: Tensor, factor: Tensor) -> Tensor:
    """``clip(x f)`` of ``[0, 1]`` RGB ``(b, 3, *spatial)``, ``factor`` ``(b,)``."""
    return (rgb * _per_sample(factor, rgb)).clamp(0.0, 1.0)


def adjust_contrast(rgb: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's mean luma: ``clip(f x + (1 - f) mean)`` (torchvision)."""
    mean = luma(rgb).mean(dim=tuple(range(1, rgb.ndim)), keepdim=True)
    return _blend(rgb, mean, factor)


def adjust_saturation(rgb: Tensor, factor: Tensor) -> Tensor:
    """Blend with the grey (luma) image: 0 grey, 1 unchanged, > 1 more saturated."""
    return _blend(rgb, luma(rgb), factor)


def adjust_hue(rgb: Tensor, shift: Tensor | float) -> Tensor:
    """Rotate the hue by ``shift`` full turns (``(b,)`` or a number; 1 is a full turn)."""
    hsv = rgb_to_hsv(rgb)
    shift = torch.as_tensor(shift, dtype=torch.float64).expand(rgb.shape[0])
    hue = (hsv[:, :1] + _per_sample(shift, rgb)) % 1.0
    return hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1)).clamp(0.0, 1.0)


def sobel_magnitude(image: Tensor) -> Tensor:
    """Sobel gradient magnitude of each channel of ``(B, C, *spatial)``, any number of
    spatial axes: per axis the central difference ``x[i+1] - x[i-1]`` smoothed by ``[1, 2,
    1]`` along every other axis (``scipy.ndimage.sobel``, edges replicated), then the
    Euclidean norm over axes. A unit step gives ``4**(dims-1)`` on both sides of it."""

    def along(x: Tensor, axis: int, taps: tuple[float, float, float]) -> Tensor:
        padded = torch.cat([x.narrow(axis, 0, 1), x, x.narrow(axis, -1, 1)], dim=axis)
        n = x.shape[axis]
        return sum(w * padded.narrow(axis, k, n) for k, w in enumerate(taps) if w)  # type: ignore[return-value]

    axes = range(2, image.ndim)
    total = torch.zeros_like(image)
    for axis in axes:
        grad = along(image, axis, (-1.0, 0.0, 1.0))
        for other in axes:
            if other != axis:
                grad = along(grad, other, (1.0, 2.0, 1.0))
        total = total + grad**2
    return total.sqrt()


def _factor_range(name: str, value: float | Sequence[float], bound: float) -> tuple[float, float]:
    """torchvision's ``_check_input``: a number ``v`` -> ``[max(0, c - v), c + v]``."""
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
        centre = 0.0 if name == "hue" else 1.0
        low = -value if name == "hue" else max(0.0, 1.0 - value)
        value = (low, centre + value)
    low, high = check_range(name, value)
    if (name == "hue" and not -0.5 <= low <= high <= 0.5) or (name != "hue" and low < bound):
        limits = "[-0.5, 0.5]" if name == "hue" else f">= {bound}"
        raise ValueError(f"{name} range must lie in {limits}, got {value}")
    return low, high


class ColourTransform(Transform):
    """Base: check RGB, sample ``(B, ...)`` parameters, transform ``[0, 1]`` RGB.

    Subclasses implement ``sample``, ``neutral`` (``(B,)`` bool: parameters that do nothing)
    and ``function`` (on ``[0, 1]`` RGB of the selected samples).

    Args:
        value_range: the colour scale (255: 0..255 floats; 1: ``[0, 1]``).
        channels: the three RGB channels of the image (None: the image has exactly 3).
        p: per-sample probability.
        seed: seed of the transform's own generator.
    """

    def __init__(
        self,
        *,
        value_range: float = 255.0,
        channels: Sequence[int] | None = None,
        p: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed)
        if value_range <= 0:
            raise ValueError(f"value_range must be > 0 (255 or 1), got {value_range}")
        if channels is not None and len(channels) != 3:
            raise ValueError(f"channels must name the 3 RGB channels, got {channels}")
        self.value_range = float(value_range)
        self.channels = None if channels is None else tuple(int(c) for c in channels)

    def sample(self, batch: int, generator: torch.Generator) -> Params:
        raise NotImplementedError

    def neutral(self, params: Params) -> Tensor:
        return torch.zeros(next(iter(params.values())).shape[0], dtype=torch.bool)

    def function(self, rgb: Tensor, params: Params) -> Tensor:
        raise NotImplementedError

    def apply(
        self, image: Tensor, label: LabelOrNone, generator: torch.Generator
    ) -> tuple[Tensor, LabelOrNone]:
        index = list(self.channels) if self.channels is not None else None
        if index is not None and max(index) >= image.shape[1]:
            raise ValueError(f"channels {self.channels} out of range for {image.shape[1]}")
        rgb = image if index is None else image[:, index]
        check_rgb(rgb, self.value_range)
        batch = image.shape[0]
        applies = bernoulli([batch], self.p, generator)
        params = self.sample(batch, generator)
        rows = applies & ~self.neutral(params)
        if not bool(rows.any()):
            return image, label
        rows_dev = rows.to(image.device)
        result = self.function(
            rgb[rows_dev] / self.value_range, {k: v[rows] for k, v in params.items()}
        )
        out = rgb.clone()
        out[rows_dev] = (result * self.value_range).to(image.dtype)
        if index is None:
            return out, label
        full = image.clone()
        full[:, index] = out
        return full, label


class RandomHEDStain(ColourTransform):
    """HED stain augmentation (Tellez et al. 2018): per sample and stain channel ``s' =
    alpha s + beta`` in Ruifrok-Johnston H-E-DAB optical density (unclipped, so sigma 0 is
    the identity), back to RGB clipped to the range.

    Args:
        sigma_alpha: ``alpha ~ U(1 - sigma_alpha, 1 + sigma_alpha)`` (default 0.05).
        sigma_beta: ``beta ~ U(-sigma_beta, sigma_beta)`` (default 0.05; densities in
            scikit-image's ``rgb2hed`` units).
        value_range, channels, p, seed: as :class:`ColourTransform`.
    """

    def __init__(
        self, *, sigma_alpha: float = 0.05, sigma_beta: float = 0.05, **common: Any
    ) -> None:
        super().__init__(**common)
        if not (0 <= sigma_alpha <= 1 and sigma_beta >= 0):
            raise ValueError(
                f"need 0 <= sigma_alpha <= 1, sigma_beta >= 0; got {sigma_alpha}, {sigma_beta}"
            )
        self.sigma_alpha, self.sigma_beta = float(sigma_alpha), float(sigma_beta)

    def sample(self, batch: int, generator: torch.Generator) -> Params:
        a, b = self.sigma_alpha, self.sigma_beta
        return {
            "alpha": uniform([batch, 3], 1.0 - a, 1.0 + a, generator),
            "beta": uniform([batch, 3], -b, b, generator),
        }

    def neutral(self, params: Params) -> Tensor:
        return (params["alpha"] == 1).all(1) & (params["beta"] == 0).all(1)

    def function(self, rgb: Tensor, params: Params) -> Tensor:
        hed = rgb_to_hed(rgb, clip=False)
        hed = hed * _per_sample(params["alpha"], rgb) + _per_sample(params["beta"], rgb)
        return hed_to_rgb(hed)


class RandomColourJitter(ColourTransform):
    """Brightness, contrast, saturation and hue jitter (torchvision ``ColorJitter`` semantics,
    per sample, in a random order per sample).

    Args:
        brightness, contrast, saturation: ``v`` -> factor ``~ U(max(0, 1 - v), 1 + v)``, or a
            ``(low, high)`` factor range; 0 leaves it out.
        hue: ``h`` in [0, 0.5] -> shift ``~ U(-h, h)`` full turns, or a ``(low, high)`` range
            within [-0.5, 0.5].
        value_range, channels, p, seed: as :class:`ColourTransform`.
    """

    KEYS = ("brightness", "contrast", "saturation", "hue")
    OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)

    def __init__(
        self,
        *,
        brightness: float | Sequence[float] = 0.0,
        contrast: float | Sequence[float] = 0.0,
        saturation: float | Sequence[float] = 0.0,
        hue: float | Sequence[float] = 0.0,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        values = (brightness, contrast, saturation, hue)
        self.ranges = {k: _factor_range(k, v, 0.0) for k, v in zip(self.KEYS, values, strict=True)}

    def sample(self, batch: int, generator: torch.Generator) -> Params:
        params = {k: uniform([batch], *r, generator) for k, r in self.ranges.items()}
        params["order"] = torch.argsort(torch.rand(batch, 4, generator=generator), dim=1)
        return params

    def _identity(self, params: Params) -> dict[str, Tensor]:
        return {k: params[k] == (0.0 if k == "hue" else 1.0) for k in self.KEYS}

    def neutral(self, params: Params) -> Tensor:
        same = self._identity(params)
        return same["brightness"] & same["contrast"] & same["saturation"] & same["hue"]

    def function(self, rgb: Tensor, params: Params) -> Tensor:
        same = self._identity(params)
        for step in range(4):
            for op_index, (key, op) in enumerate(zip(self.KEYS, self.OPS, strict=True)):
                rows = (params["order"][:, step] == op_index) & ~same[key]
                if bool(rows.any()):
                    rows_dev = rows.to(rgb.device)
                    rgb = rgb.clone()
                    rgb[rows_dev] = op(rgb[rows_dev], params[key][rows])
        return rgb


class RandomGrey(ColourTransform):
    """Colour drop: the ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` in all three
    channels, with probability ``p`` per sample.

    Args:
        value_range, channels, p, seed: as :class:`ColourTransform`.
    """

    def sample(self, batch: int, generator: torch.Generator) -> Params:
        return {"grey": torch.ones(batch)}

    def function(self, rgb: Tensor, params: Params) -> Tensor:
        return luma(rgb).expand_as(rgb).clone()


class RandomSobel(ColourTransform):
    """Sobel edge augmentation: the image replaced by (``"replace"``) or blended with
    (``"blend"``, weight ``w ~ U(blend)``) its edge map ``min(|grad| / 4**(dims-1), 1)`` per
    channel (a step of height 1 maps to 1), or of the luma with ``grey=True``.

    Args:
        mode: "replace" or "blend".
        blend: range of the edge map's weight ``w`` for "blend" (default (0.2, 0.8)).
        grey: edges of the luma, copied to the three channels (else per channel).
        value_range, channels, p, seed: as :class:`ColourTransform`.
    """

    def __init__(
        self,
        *,
        mode: Literal["replace", "blend"] = "replace",
        blend: tuple[float, float] = (0.2, 0.8),
        grey: bool = False,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if mode not in ("replace", "blend"):
            raise ValueError(f"mode must be 'replace' or 'blend', got {mode!r}")
        self.mode = mode
        self.blend = check_range("blend", blend, low=0.0)
        if self.blend[1] > 1:
            raise ValueError(f"blend weights must lie in [0, 1], got {blend}")
        self.grey = bool(grey)

    def sample(self, batch: int, generator: torch.Generator) -> Params:
        low, high = (1.0, 1.0) if self.mode == "replace" else self.blend
        return {"weight": uniform([batch], low, high, generator)}

    def neutral(self, params: Params) -> Tensor:
        return params["weight"] == 0

    def function(self, rgb: Tensor, params: Params) -> Tensor:
        source = luma(rgb) if self.grey else rgb
        edges = (sobel_magnitude(source) / 4 ** (rgb.ndim - 3)).clamp(0.0, 1.0)
        return _blend(edges.expand_as(rgb), rgb, params["weight"])
