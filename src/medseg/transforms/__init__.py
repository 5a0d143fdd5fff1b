"""Batched 2-D/3-D augmentation on torch tensors, one sampling grid per batch.

Every transform is called as ``image, label = transform(image, label)`` on ``(B, C, *spatial)``
/ ``(B, 1, *spatial)`` tensors on any device (``label`` may be None); see
``medseg.transforms.base`` for the conventions and ``docs/augmentation.md`` for a guide.

Example:
    >>> import torch
    >>> pipeline = nnunet_default(spatial_dims=2, seed=0)
    >>> image, label = pipeline(torch.randn(4, 1, 32, 32), torch.zeros(4, 1, 32, 32, dtype=torch.long))
    >>> tuple(image.shape), label.dtype
    ((4, 1, 32, 32), torch.int64)
"""

from __future__ import annotations

from typing import Any

from medseg.registry import Registry
from medseg.transforms.base import Compose, Transform
from medseg.transforms.intensity import (
    IntensityTransform,
    RandomBiasField,
    RandomBrightness,
    RandomContrast,
    RandomErasing,
    RandomGamma,
    RandomGaussianBlur,
    RandomGaussianNoise,
    RandomHistogramEqualization,
    RandomLowResolution,
    RandomRicianNoise,
    RandomSharpen,
)
from medseg.transforms.presets import light, nnunet_default
from medseg.transforms.spatial import (
    CropOrPad,
    RandomCropResize,
    RandomFlip,
    RandomRot90,
    RandomSpatial,
    apply_spatial,
)

TRANSFORMS = Registry("transform")

for _name, _builder in {
    "spatial": RandomSpatial,
    "flip": RandomFlip,
    "rot90": RandomRot90,
    "crop_or_pad": CropOrPad,
    "crop_resize": RandomCropResize,
    "low_resolution": RandomLowResolution,
    "brightness": RandomBrightness,
    "contrast": RandomContrast,
    "gamma": RandomGamma,
    "gaussian_noise": RandomGaussianNoise,
    "rician_noise": RandomRicianNoise,
    "gaussian_blur": RandomGaussianBlur,
    "sharpen": RandomSharpen,
    "histogram_equalization": RandomHistogramEqualization,
    "bias_field": RandomBiasField,
    "erasing": RandomErasing,
    "nnunet_default": nnunet_default,
    "light": light,
}.items():
    TRANSFORMS.register(_name)(_builder)


def build_transform(name: str, **kwargs: Any) -> Transform:
    """Build a registered transform or preset by name.

    Args:
        name: one of ``TRANSFORMS.names()`` (e.g. "nnunet_default", "light", "gamma").
        **kwargs: the builder's options (presets need ``spatial_dims``).

    Raises:
        ConfigError: unknown name; the message lists the valid names and the closest one.

    Example:
        >>> build_transform("light", spatial_dims=3).__class__.__name__
        'Compose'
    """
    return TRANSFORMS.build(name, **kwargs)


__all__ = [
    "TRANSFORMS",
    "Compose",
    "CropOrPad",
    "IntensityTransform",
    "RandomBiasField",
    "RandomBrightness",
    "RandomContrast",
    "RandomCropResize",
    "RandomErasing",
    "RandomFlip",
    "RandomGamma",
    "RandomGaussianBlur",
    "RandomGaussianNoise",
    "RandomHistogramEqualization",
    "RandomLowResolution",
    "RandomRicianNoise",
    "RandomRot90",
    "RandomSharpen",
    "RandomSpatial",
    "Transform",
    "apply_spatial",
    "build_transform",
    "light",
    "nnunet_default",
]
