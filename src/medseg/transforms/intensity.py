"""Random intensity transforms (image only; the label passes through unchanged).

Each transform applies per sample with probability ``p``, then to each channel with
probability ``p_per_channel``; ``per_channel=True`` draws separate parameters per channel
(multi-sequence MRI), ``False`` one set per sample shared by all channels. Channels and
samples that are not selected, or whose parameters are the identity, are left bit-for-bit
unchanged. Default ranges follow nnU-Net (Isensee et al. 2021) where it has the transform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

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
        p: float = 1.0,
        per_channel: bool = True,
        p_per_channel: float = 1.0,
        channels: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            p=p, per_channel=per_channel, p_per_channel=p_per_channel, channels=channels, seed=seed
        )
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
        p: float = 1.0,
        per_channel: bool = True,
        p_per_channel: float = 1.0,
        channels: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            p=p, per_channel=per_channel, p_per_channel=p_per_channel, channels=channels, seed=seed
        )
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
        p: float = 1.0,
        per_channel: bool = True,
        p_per_channel: float = 1.0,
        channels: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            p=p, per_channel=per_channel, p_per_channel=p_per_channel, channels=channels, seed=seed
        )
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
        p: float = 1.0,
        per_channel: bool = False,
        p_per_channel: float = 1.0,
        channels: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            p=p, per_channel=per_channel, p_per_channel=p_per_channel, channels=channels, seed=seed
        )
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


class RandomRicianNoise(RandomGaussianNoise):
    """Rician noise ``sqrt((x + n_r)^2 + n_i^2)`` of magnitude MRI; the result is non-negative,
    so apply it before z-score normalisation or to non-negative intensities."""

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        std = expand_to(params["std"], image)
        real = torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        imag = torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        return fn.add_rician_noise(image, real * std, imag * std)


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
        p: float = 1.0,
        per_channel: bool = True,
        p_per_channel: float = 1.0,
        channels: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            p=p, per_channel=per_channel, p_per_channel=p_per_channel, channels=channels, seed=seed
        )
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


class RandomSharpen(RandomGaussianBlur):
    """Unsharp masking ``x + a * (x - blur(x))`` with ``a`` drawn from ``amount``."""

    def __init__(
        self,
        *,
        sigma: Range = (0.5, 1.0),
        amount: Range = (0.1, 1.0),
        isotropic: bool = True,
        p: float = 1.0,
        per_channel: bool = True,
        p_per_channel: float = 1.0,
        channels: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            sigma=sigma,
            isotropic=isotropic,
            p=p,
            per_channel=per_channel,
            p_per_channel=p_per_channel,
            channels=channels,
            seed=seed,
        )
        self.amount = check_range("amount", amount, low=0.0)

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        params = super().sample(batch, channels, shape, generator)
        params["amount"] = uniform([batch, channels], *self.amount, generator)
        return params

    def neutral(self, params: Params) -> Tensor:
        return super().neutral(params) | (params["amount"] == 0.0)

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        return fn.sharpen(image, params["sigma"], params["amount"])


class RandomHistogramEqualization(IntensityTransform):
    """Histogram equalisation (``num_bins`` bins), mapped back onto each channel's range."""

    def __init__(
        self,
        *,
        num_bins: int = 256,
        p: float = 1.0,
        p_per_channel: float = 1.0,
        channels: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            p=p, per_channel=False, p_per_channel=p_per_channel, channels=channels, seed=seed
        )
        self.num_bins = int(num_bins)

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        return {"unused": torch.zeros(batch, channels)}

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        return fn.equalize_histogram(image, num_bins=self.num_bins)


class RandomBiasField(IntensityTransform):
    """MRI bias field: multiply by ``exp`` of a random polynomial of degree ``order``.

    Args:
        order: polynomial degree (TorchIO's default 3).
        coefficients: range of each coefficient (TorchIO's default (-0.5, 0.5)).
    """

    def __init__(
        self,
        *,
        order: int = 3,
        coefficients: Range = (-0.5, 0.5),
        p: float = 1.0,
        per_channel: bool = True,
        p_per_channel: float = 1.0,
        channels: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            p=p, per_channel=per_channel, p_per_channel=p_per_channel, channels=channels, seed=seed
        )
        self.order = int(order)
        self.coefficients = check_range("coefficients", coefficients)

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        k, dims = self.order + 1, len(shape)
        coeffs = uniform([batch, channels, *[k] * dims], *self.coefficients, generator)
        degree = sum(
            torch.arange(k).view([k if i == d else 1 for i in range(dims)]) for d in range(dims)
        )
        return {"coefficients": coeffs * (degree <= self.order)}

    def neutral(self, params: Params) -> Tensor:
        return (params["coefficients"].flatten(2) == 0).all(dim=-1)

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        coeffs = params["coefficients"].to(device=image.device, dtype=torch.float32)
        return image * fn.bias_field(tuple(image.shape[2:]), coeffs).to(image.dtype)


class RandomErasing(IntensityTransform):
    """Cutout / random erasing: fill 1..n random boxes (shared by all channels).

    Args:
        num_boxes: (min, max) number of boxes per sample.
        box_fraction: range of each box side as a fraction of the axis length.
        fill: "zero" (cutout), "mean" (channel mean) or "noise" (Gaussian with the channel's
            mean and standard deviation, random erasing). The label is not changed.
    """

    def __init__(
        self,
        *,
        num_boxes: tuple[int, int] = (1, 3),
        box_fraction: Range = (0.1, 0.3),
        fill: Literal["zero", "mean", "noise"] = "zero",
        p: float = 1.0,
        channels: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(p=p, per_channel=False, p_per_channel=1.0, channels=channels, seed=seed)
        if not 1 <= num_boxes[0] <= num_boxes[1]:
            raise ValueError(f"num_boxes must be (min, max) with 1 <= min <= max, got {num_boxes}")
        self.num_boxes = (int(num_boxes[0]), int(num_boxes[1]))
        self.box_fraction = check_range("box_fraction", box_fraction, low=0.0)
        if fill not in ("zero", "mean", "noise"):
            raise ValueError(f"fill must be 'zero', 'mean' or 'noise', got {fill!r}")
        self.fill = fill

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        dims, most = len(shape), self.num_boxes[1]
        size_vox = torch.tensor(shape, dtype=torch.float64)
        count = torch.randint(self.num_boxes[0], most + 1, (batch,), generator=generator)
        size = (uniform([batch, most, dims], *self.box_fraction, generator) * size_vox).floor()
        start = (uniform([batch, most, dims], 0.0, 1.0, generator) * (size_vox - size + 1)).floor()
        size = size * (torch.arange(most)[None, :] < count[:, None]).unsqueeze(
            -1
        )  # unused boxes: empty
        return {"lower": start.long().unsqueeze(1), "upper": (start + size).long().unsqueeze(1)}

    def neutral(self, params: Params) -> Tensor:
        return (params["upper"] <= params["lower"]).any(dim=-1).all(dim=-1)

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        mask = fn.box_mask(
            tuple(image.shape[2:]),
            params["lower"][:, 0],
            params["upper"][:, 0],
            device=image.device,
        )
        dims = tuple(range(2, image.ndim))
        if self.fill == "zero":
            return fn.erase_boxes(image, mask, torch.zeros(image.shape[:2]))
        if self.fill == "mean":
            return fn.erase_boxes(image, mask, image.mean(dim=dims))
        mean, std = image.mean(dim=dims, keepdim=True), image.std(dim=dims, keepdim=True)
        noise = torch.randn(
            image.shape, generator=generator, device=image.device, dtype=image.dtype
        )
        return fn.erase_boxes(image, mask, noise * std + mean)


class RandomLowResolution(IntensityTransform):
    """Simulate low resolution: nearest downsampling by ``zoom``, linear upsampling (nnU-Net:
    zoom 0.5-1, p 0.25, p_per_channel 0.5)."""

    def __init__(
        self,
        *,
        zoom: Range = (0.5, 1.0),
        p: float = 1.0,
        per_channel: bool = True,
        p_per_channel: float = 1.0,
        channels: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            p=p, per_channel=per_channel, p_per_channel=p_per_channel, channels=channels, seed=seed
        )
        self.zoom = check_range("zoom", zoom, low=math.ulp(0.0))
        if self.zoom[1] > 1.0:
            raise ValueError(f"zoom must lie in (0, 1], got {zoom}")

    def sample(self, batch: int, channels: int, shape: Shape, generator: torch.Generator) -> Params:
        return {"zoom": uniform([batch, channels], *self.zoom, generator)}

    def neutral(self, params: Params) -> Tensor:
        return params["zoom"] >= 1.0

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        return fn.simulate_low_resolution(image, params["zoom"])
