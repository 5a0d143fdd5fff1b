"""Intensity transforms beyond nnU-Net's default pipeline: Rician noise, sharpening,
histogram equalisation, an MRI bias field and random erasing.

Conventions (``p``, ``per_channel``, ``p_per_channel``, ``channels``, untouched channels
bit-for-bit unchanged) are those of ``medseg.transforms.intensity.IntensityTransform``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:
    from typing_extensions import Unpack

from medseg.transforms import functional as fn
from medseg.transforms.base import check_range, expand_to, uniform
from medseg.transforms.intensity import (
    IntensityOptions,
    IntensityTransform,
    Params,
    RandomGaussianBlur,
    RandomGaussianNoise,
    Range,
    Shape,
)


class RandomRicianNoise(RandomGaussianNoise):
    """Rician noise ``sqrt((x + n_r)^2 + n_i^2)`` of magnitude MRI; the result is non-negative,
    so apply it before z-score normalisation or to non-negative intensities."""

    def function(self, image: Tensor, params: Params, generator: torch.Generator) -> Tensor:
        std = expand_to(params["std"], image)
        real = torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        imag = torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        return fn.add_rician_noise(image, real * std, imag * std)


class RandomSharpen(RandomGaussianBlur):
    """Unsharp masking ``x + a * (x - blur(x))`` with ``a`` drawn from ``amount``."""

    def __init__(
        self,
        *,
        sigma: Range = (0.5, 1.0),
        amount: Range = (0.1, 1.0),
        isotropic: bool = True,
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(sigma=sigma, isotropic=isotropic, **common)
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
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(**{**common, "per_channel": False})
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
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(**common)
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
        **common: Unpack[IntensityOptions],
    ) -> None:
        super().__init__(**{**common, "per_channel": False, "p_per_channel": 1.0})
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
