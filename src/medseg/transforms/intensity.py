"""Random intensity transforms (image only; the label passes through unchanged).

Each transform applies per sample with probability ``p``, then to each channel with
probability ``p_per_channel``; ``per_channel=True`` draws separate parameters per channel
(multi-sequence MRI), ``False`` one set per sample shared by all channels. Channels and
samples that are not selected, or whose parameters are the identity, are left bit-for-bit
unchanged. Default ranges follow nnU-Net (Isensee et al. 2021) where it has the transform.

This module holds the base class and the transforms nnU-Net's default pipeline uses;
``medseg.transforms.intensity_extra`` holds the others (Rician noise, sharpening, histogram
equalisation, bias field, erasing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypedDict

import torch
from torch import Tensor

if TYPE_CHECKING:
    from typing_extensions import Unpack

from medseg.transforms import functional as fn
from medseg.transforms.base import (
    LabelOrNone,
    Transform,
    apply_to_selected,
    bernoulli,
    check_probability,
    check_range,
    device_generator,
    expand_to,
    uniform,
)

Range = tuple[float, float]
Shape = tuple[int, ...]
Params = dict[str, Tensor]


class IntensityOptions(TypedDict, total=False):
    """The options every intensity transform takes (see :class:`IntensityTransform`)."""

    p: float
    per_channel: bool
    p_per_channel: float
    channels: Sequence[int] | None
    seed: int | None


class IntensityTransform(Transform):
    """Base: sample ``(B, C, ...)`` parameters, skip neutral ones, apply to selected channels.

    Subclasses implement ``sample`` (parameters shaped ``(B, c, ...)`` with ``c`` = C or 1),
    ``neutral`` (``(B, C)`` bool, True where the parameters do nothing) and ``function``.

    Args:
        p: per-sample probability.
        per_channel: draw parameters per channel (True) or once per sample (False).
        p_per_channel: probability that each channel of a selected sample is transformed.
        channels: only these image channels are transformed, the others pass through
            unchanged (None: all). E.g. a cascade stage's input holds the image channels
            followed by the previous stage's one-hot masks, which an intensity change must
            not touch.
        seed: seed of the transform's own generator.
    """

    def __init__(
        self,
        *,
        p: float = 1.0,
        per_channel: bool = True,
        p_per_channel: float = 1.0,
        channels: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed)
        self.channels = None if channels is None else tuple(int(c) for c in channels)
        self.per_channel = per_channel
        self.p_per_channel = check_probability("p_per_channel", p_per_channel)

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        raise NotImplementedError

    def neutral(self, params: Params) -> Tensor:
        return torch.zeros(params[next(iter(params))].shape[:2], dtype=torch.bool)

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def apply(
        self, image: Tensor, label: LabelOrNone, generator: torch.Generator
    ) -> tuple[Tensor, LabelOrNone]:
        if self.channels is None:
            return self._apply_to(image, generator), label
        index = list(self.channels)
        if max(index) >= image.shape[1]:
            raise ValueError(
                f"channels {self.channels} out of range for {image.shape[1]} channel(s)"
            )
        out = image.clone()
        out[:, index] = self._apply_to(image[:, index], generator)
        return out, label

    def _apply_to(self, image: Tensor, generator: torch.Generator) -> Tensor:
        batch, channels = image.shape[:2]
        applies = bernoulli([batch], self.p, generator)
        channel_on = bernoulli([batch, channels], self.p_per_channel, generator)
        raw = self.sample(
            batch, channels if self.per_channel else 1, tuple(image.shape[2:]), generator
        )
        params = {k: v.expand(batch, channels, *v.shape[2:]) for k, v in raw.items()}
        selected = applies[:, None] & channel_on & ~self.neutral(params)
        noise_generator = device_generator(generator, image.device)

        def run(sub: Tensor, rows: Tensor) -> Tensor:
            return self.function(sub, {k: v[rows] for k, v in params.items()}, noise_generator)

        return apply_to_selected(image, selected, run)


class RandomBrightness(IntensityTransform):
    """Brightness: ``x * f`` ("multiplicative", nnU-Net 0.75-1.25) or ``x + s`` ("additive").

    Args:
        mode: "multiplicative" or "additive".
        value_range: range of ``f`` (default (0.75, 1.25)) or ``s`` (default (-0.1, 0.1),
            in the units of the normalised image).
    """

    def __init__(
        self,
        *,
        mode: Literal["multiplicative", "additive"] = "multiplicative",
        value_range: Range | None = None,
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(**common)
        if mode not in ("multiplicative", "additive"):
            raise ValueError(f"mode must be 'multiplicative' or 'additive', got {mode!r}")
        self.mode = mode
        default = (0.75, 1.25) if mode == "multiplicative" else (-0.1, 0.1)
        self.value_range = check_range("value_range", value_range or default)

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        return {"value": uniform([batch, channels], *self.value_range, generator)}

    def neutral(self, params: Params) -> Tensor:
        return params["value"] == (1.0 if self.mode == "multiplicative" else 0.0)

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        if self.mode == "multiplicative":
            return fn.scale_intensity(image, params["value"])
        return fn.shift_intensity(image, params["value"])


class RandomContrast(IntensityTransform):
    """Contrast around the channel mean by a factor in ``factor`` (nnU-Net: 0.75-1.25).

    Args:
        preserve_range: clip to the channel's input [min, max] (nnU-Net: True).
    """

    def __init__(
        self,
        *,
        factor: Range = (0.75, 1.25),
        preserve_range: bool = True,
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(**common)
        self.factor = check_range("factor", factor, low=0.0)
        self.preserve_range = preserve_range

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        return {"factor": uniform([batch, channels], *self.factor, generator)}

    def neutral(self, params: Params) -> Tensor:
        return params["factor"] == 1.0

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        return fn.adjust_contrast(image, params["factor"], preserve_range=self.preserve_range)


class RandomGamma(IntensityTransform):
    """Gamma correction of the range-normalised image (nnU-Net: 0.7-1.5, stats retained).

    Args:
        gamma: exponent range.
        invert: apply to the negated image (nnU-Net's second gamma transform).
        retain_stats: restore each channel's mean and standard deviation.
    """

    def __init__(
        self,
        *,
        gamma: Range = (0.7, 1.5),
        invert: bool = False,
        retain_stats: bool = True,
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(**common)
        self.gamma = check_range("gamma", gamma, low=0.0)
        self.invert, self.retain_stats = invert, retain_stats

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        return {"gamma": uniform([batch, channels], *self.gamma, generator)}

    def neutral(self, params: Params) -> Tensor:
        return params["gamma"] == 1.0

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        return fn.adjust_gamma(
            image, params["gamma"], invert=self.invert, retain_stats=self.retain_stats
        )


class RandomGaussianNoise(IntensityTransform):
    """Additive zero-mean Gaussian noise; its standard deviation is drawn from ``std``."""

    def __init__(
        self,
        *,
        std: Range = (0.0, 0.1),
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(**{"per_channel": False, **common})
        self.std = check_range("std", std, low=0.0)

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        return {"std": uniform([batch, channels], *self.std, generator)}

    def neutral(self, params: Params) -> Tensor:
        return params["std"] == 0.0

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        noise = torch.randn(
            image.shape, generator=generator, device=image.device, dtype=image.dtype
        )
        return image + noise * expand_to(params["std"], image)


class RandomGaussianBlur(IntensityTransform):
    """Gaussian blur with sigma (voxels) drawn from ``sigma`` (nnU-Net: 0.5-1.0, per axis).

    Args:
        isotropic: one sigma for all axes (True) or one per axis (nnU-Net: False).
    """

    def __init__(
        self,
        *,
        sigma: Range = (0.5, 1.0),
        isotropic: bool = False,
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(**common)
        self.sigma = check_range("sigma", sigma, low=0.0)
        self.isotropic = isotropic

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        dims = len(shape)
        sigma = uniform([batch, channels, 1 if self.isotropic else dims], *self.sigma, generator)
        return {"sigma": sigma.expand(batch, channels, dims)}

    def neutral(self, params: Params) -> Tensor:
        return (params["sigma"] == 0.0).all(dim=-1)

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        return fn.gaussian_blur(image, params["sigma"])


class RandomLowResolution(IntensityTransform):
    """Simulate low resolution: nearest downsampling by ``zoom``, linear upsampling (nnU-Net:
    zoom 0.5-1, p 0.25, p_per_channel 0.5)."""

    def __init__(
        self,
        *,
        zoom: Range = (0.5, 1.0),
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(**common)
        self.zoom = check_range("zoom", zoom, low=math.ulp(0.0))
        if self.zoom[1] > 1.0:
            raise ValueError(f"zoom must lie in (0, 1], got {zoom}")

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        return {"zoom": uniform([batch, channels], *self.zoom, generator)}

    def neutral(self, params: Params) -> Tensor:
        return params["zoom"] >= 1.0

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        return fn.simulate_low_resolution(image, params["zoom"])
