"""Transforms of mask channels carried in the image: a cascade stage's previous-stage input.

A cascade stage (``3d_cascade_fullres``) sees the image channels followed by the previous
stage's segmentation. :class:`ForegroundOneHot` turns a channel of class indices into one-hot
masks (one per foreground class), so spatial transforms move them with the image;
intensity transforms are restricted to the image channels (their ``channels=`` option); and
:class:`RandomMaskMorphology` re-binarises the masks and perturbs them, as nnU-Net does, so
the later stage learns not to trust the previous one blindly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.data.cascade import foreground_one_hot
from medseg.transforms.base import LabelOrNone, Transform, check_probability

# nnU-Net perturbs the previous stage's masks: per sample and foreground class, with this
# probability, one of dilation / erosion / opening / closing with a cube of radius 1-2 voxels
P_MORPHOLOGY = 0.4


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Binary dilation of ``(B, C, *spatial)`` 0/1 masks with a cube of ``radius`` voxels."""
    pool = F.max_pool3d if mask.ndim == 5 else F.max_pool2d
    return pool(mask, 2 * radius + 1, stride=1, padding=radius)


def erode(mask: Tensor, radius: int) -> Tensor:
    """Binary erosion (the dual of :func:`dilate`; outside the image counts as foreground)."""
    return 1 - dilate(1 - mask, radius)


def perturb_masks(masks: Tensor, generator: torch.Generator, p: float = P_MORPHOLOGY) -> Tensor:
    """Random morphology on binary ``(B, K, *S)`` masks: each (sample, channel) with
    probability ``p`` gets one of dilation, erosion, opening, closing (cube of radius 1 or 2)."""
    batch, channels = masks.shape[:2]
    chosen = torch.rand(batch, channels, generator=generator) < p
    ops = torch.randint(0, 4, (batch, channels), generator=generator)
    radii = torch.randint(1, 3, (batch, channels), generator=generator)
    if not bool(chosen.any()):
        return masks
    out = masks.clone()
    for b, c in chosen.nonzero().tolist():
        m, r, op = masks[b : b + 1, c : c + 1], int(radii[b, c]), int(ops[b, c])
        if op == 0:
            m = dilate(m, r)
        elif op == 1:
            m = erode(m, r)
        elif op == 2:
            m = dilate(erode(m, r), r)
        else:
            m = erode(dilate(m, r), r)
        out[b, c] = m[0, 0]
    return out


class ForegroundOneHot(Transform):
    """Replace the last image channel (class indices) by one-hot masks of ``num_classes - 1``
    foreground classes: ``(B, C + 1, *S) -> (B, C + K - 1, *S)``. Deterministic."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(p=1.0, seed=0)
        self.num_classes = int(num_classes)

    def apply(
        self, image: Tensor, label: LabelOrNone, generator: torch.Generator
    ) -> tuple[Tensor, LabelOrNone]:
        masks = foreground_one_hot(image[:, -1:], self.num_classes, image.dtype)
        return torch.cat([image[:, :-1], masks], dim=1), label


class RandomMaskMorphology(Transform):
    """Re-binarise the mask ``channels`` at 0.5 (after interpolation), then perturb each with
    probability ``p`` (:func:`perturb_masks`).

    Args:
        channels: the mask channels of the image.
        p: per (sample, channel) probability of a random dilation/erosion/opening/closing.
        seed: seed of the transform's own generator.
    """

    def __init__(
        self, channels: Sequence[int], *, p: float = P_MORPHOLOGY, seed: int | None = None
    ) -> None:
        super().__init__(p=p, seed=seed)
        self.channels = tuple(int(c) for c in channels)
        check_probability("p", p)

    def apply(
        self, image: Tensor, label: LabelOrNone, generator: torch.Generator
    ) -> tuple[Tensor, LabelOrNone]:
        index = list(self.channels)
        masks = (image[:, index] > 0.5).to(image.dtype)
        out = image.clone()
        out[:, index] = perturb_masks(masks, generator, self.p)
        return out, label
