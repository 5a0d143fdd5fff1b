"""Exact spatial transforms: flips, quarter turns and crop-or-pad.

They move voxels by index and never interpolate, so image values and label values come out
unchanged (``RandomSpatial`` and ``RandomCropResize`` in ``medseg.transforms.spatial``
resample instead).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from medseg.transforms.base import LabelOrNone, Transform, bernoulli
from medseg.transforms.grid import centre_start, crop_or_pad, flip, rot90


class RandomFlip(Transform):
    """Flip each listed spatial axis independently with probability ``p`` (exact).

    Args:
        axes: spatial axes (0-based, array order: 3-D ``(z, y, x)``); None flips every axis.
            Leave out the left-right axis where laterality matters (e.g. mammography).
        p: per-axis, per-sample flip probability (nnU-Net: 0.5).
        seed: seed of the transform's own generator.
    """

    def __init__(
        self, *, axes: Sequence[int] | None = None, p: float = 0.5, seed: int | None = None
    ) -> None:
        super().__init__(p=p, seed=seed)
        self.axes = None if axes is None else tuple(int(a) for a in axes)

    def apply(
        self, image: Tensor, label: LabelOrNone, generator: torch.Generator
    ) -> tuple[Tensor, LabelOrNone]:
        batch, dims = image.shape[0], image.ndim - 2
        axes = range(dims) if self.axes is None else [a % dims for a in self.axes]
        chosen = torch.zeros(dims, dtype=torch.bool)
        chosen[list(axes)] = True
        flips = bernoulli([batch, dims], self.p, generator) & chosen
        return flip(image, flips), None if label is None else flip(label, flips)


class RandomRot90(Transform):
    """Rotate by 1, 2 or 3 quarter turns in one plane (exact), with probability ``p``.

    Args:
        axes: the two spatial axes of the plane; default the last two (in-plane ``(y, x)``).
            A non-square plane only gets half turns, which keep the shape.
        p: per-sample probability.
        seed: seed of the transform's own generator.
    """

    def __init__(
        self, *, axes: tuple[int, int] = (-2, -1), p: float = 0.5, seed: int | None = None
    ) -> None:
        super().__init__(p=p, seed=seed)
        self.axes = (int(axes[0]), int(axes[1]))

    def apply(
        self, image: Tensor, label: LabelOrNone, generator: torch.Generator
    ) -> tuple[Tensor, LabelOrNone]:
        batch, dims = image.shape[0], image.ndim - 2
        axes = (self.axes[0] % dims, self.axes[1] % dims)
        applies = bernoulli([batch], self.p, generator)
        turns = torch.randint(1, 4, (batch,), generator=generator)
        if image.shape[2 + axes[0]] != image.shape[2 + axes[1]]:
            turns = torch.full_like(turns, 2)
        turns = torch.where(applies, turns, 0)
        return rot90(image, turns, axes), None if label is None else rot90(label, turns, axes)


class CropOrPad(Transform):
    """Crop and/or pad to ``size``: centred, or at a random offset per sample.

    Args:
        size: output spatial shape.
        mode: "centre" (deterministic) or "random" (uniform offset per sample).
        image_fill: image value in padded voxels.
        label_fill: label value in padded voxels (0, or an ignore value).
        seed: seed of the transform's own generator (used by "random").
    """

    def __init__(
        self,
        size: Sequence[int],
        *,
        mode: str = "centre",
        image_fill: float = 0.0,
        label_fill: int = 0,
        seed: int | None = None,
    ) -> None:
        super().__init__(p=1.0, seed=seed)
        if mode not in ("centre", "random"):
            raise ValueError(f"mode must be 'centre' or 'random', got {mode!r}")
        self.size, self.mode = tuple(int(s) for s in size), mode
        self.image_fill, self.label_fill = float(image_fill), int(label_fill)

    def apply(
        self, image: Tensor, label: LabelOrNone, generator: torch.Generator
    ) -> tuple[Tensor, LabelOrNone]:
        in_shape = list(image.shape[2:])
        if len(self.size) != len(in_shape):
            raise ValueError(f"size {self.size} does not match the {len(in_shape)} spatial axes")
        if self.mode == "centre":
            starts = [centre_start(in_shape, self.size)] * image.shape[0]
        else:
            starts = [
                [
                    int(torch.randint(min(0, m - n), max(0, m - n) + 1, (1,), generator=generator))
                    for n, m in zip(self.size, in_shape, strict=True)
                ]
                for _ in range(image.shape[0])
            ]
        images = [
            crop_or_pad(image[b : b + 1], s, self.size, fill=self.image_fill)
            for b, s in enumerate(starts)
        ]
        labels = (
            None
            if label is None
            else torch.cat(
                [
                    crop_or_pad(label[b : b + 1], s, self.size, fill=self.label_fill)
                    for b, s in enumerate(starts)
                ]
            )
        )
        return torch.cat(images), labels
