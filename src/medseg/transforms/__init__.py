"""Batched 2-D/3-D augmentation on torch tensors, one sampling grid per batch.

Every transform is called as ``image, label = transform(image, label)`` on ``(B, C, *spatial)``
/ ``(B, 1, *spatial)`` tensors on any device (``label`` may be None); see
``medseg.transforms.base`` for the conventions and ``docs/augmentation.md`` for a guide.

Example:
    >>> import torch
    >>> pipeline = nnunet_default(spatial_dims=2, seed=0)
    >>> image, label = pipeline(
    ...     torch.randn(4, 1, 32, 32), torch.zeros(4, 1, 32, 32, dtype=torch.long)
    ... )
    >>> tuple(image.shape), label.dtype
    ((4, 1, 32, 32), torch.int64)
"""

from __future__ import annotations

from typing import Any

from medseg.registry import Registry
from medseg.transforms.base import Compose, Transform
from medseg.transforms.colour import (
    ColourTransform,
    RandomColourJitter,
    RandomGrey,
    RandomHEDStain,
    RandomSobel,
)
from medseg.transforms.colour_reinhard import ReinhardNormalizer
from medseg.transforms.flip_crop import CropOrPad, RandomFlip, RandomRot90
from medseg.transforms.intensity import (
    IntensityTransform,
    RandomBrightness,
    RandomContrast,
    RandomGamma,
    RandomGaussianBlur,
    RandomGaussianNoise,
    RandomLowResolution,
)
from medseg.transforms.intensity_extra import (
    RandomBiasField,
    RandomErasing,
    RandomHistogramEqualization,
    RandomRicianNoise,
    RandomSharpen,
)
from medseg.transforms.mri_artefacts import (
    RandomGhosting,
    RandomMotion,
    RandomSpike,
    RandomSusceptibility,
)
from medseg.transforms.presets import light, nnunet_default

# imported under another name: ``medseg.transforms.mri_artefacts`` stays the module
from medseg.transforms.presets_mri import mri_artefacts as mri_artefacts_preset
from medseg.transforms.presets_pathology import (
    StainNormalizer,
    pathology,
    stain_normalizer_from_config,
)
from medseg.transforms.spatial import RandomCropResize, RandomSpatial, apply_spatial
from medseg.transforms.stain import MacenkoNormalizer

TRANSFORMS = Registry("transform")

for _name, _builder, _description in [
    (
        "spatial",
        RandomSpatial,
        "Rotation, scaling, shear, translation and elastic deformation in one resampling",
    ),
    ("flip", RandomFlip, "Flip each spatial axis independently with probability p"),
    ("rot90", RandomRot90, "Rotate by 1, 2 or 3 quarter turns in one plane"),
    ("crop_or_pad", CropOrPad, "Crop and/or pad to a size, centred or at a random offset"),
    ("crop_resize", RandomCropResize, "Crop a random box and resize it to the output size"),
    (
        "low_resolution",
        RandomLowResolution,
        "Simulate low resolution: nearest downsampling, linear upsampling",
    ),
    ("brightness", RandomBrightness, "Multiply (or shift) the intensities by a random factor"),
    ("contrast", RandomContrast, "Scale the contrast around the channel mean"),
    ("gamma", RandomGamma, "Gamma correction of the range-normalised image"),
    ("gaussian_noise", RandomGaussianNoise, "Additive zero-mean Gaussian noise"),
    ("rician_noise", RandomRicianNoise, "Rician noise of magnitude MRI (non-negative)"),
    ("gaussian_blur", RandomGaussianBlur, "Gaussian blur with a random sigma (voxels)"),
    ("sharpen", RandomSharpen, "Unsharp masking x + a * (x - blur(x))"),
    (
        "histogram_equalization",
        RandomHistogramEqualization,
        "Histogram equalisation, mapped back onto each channel's range",
    ),
    ("bias_field", RandomBiasField, "MRI bias field: multiply by exp of a random polynomial"),
    ("erasing", RandomErasing, "Cutout / random erasing of 1..n random boxes"),
    # colour (RGB pathology tiles, values in [0, value_range])
    ("hed_stain", RandomHEDStain, "H&E stain jitter in HED optical density (Tellez 2018)"),
    ("colour_jitter", RandomColourJitter, "Brightness, contrast, saturation and hue jitter"),
    ("grey", RandomGrey, "Colour drop: ITU-R 601 luma in all three channels"),
    ("sobel", RandomSobel, "Replace or blend the image with its Sobel edge magnitude"),
    # MRI acquisition artefacts (k-space); the labels are untouched
    ("motion", RandomMotion, "MRI rigid motion: k-space lines mixed from moved copies"),
    ("ghosting", RandomGhosting, "MRI ghosting: every n-th k-space line scaled"),
    ("spike", RandomSpike, "MRI spike: bright k-space points (stripes)"),
    (
        "susceptibility",
        RandomSusceptibility,
        "Susceptibility-like local distortion along the phase-encoding axis",
    ),
    # presets
    ("nnunet_default", nnunet_default, "Preset: nnU-Net v2's default training augmentation"),
    ("light", light, "Preset: a light pipeline for small or fragile datasets"),
    (
        "mri_artefacts",
        mri_artefacts_preset,
        "Preset: nnU-Net default + MRI motion, ghosting, spikes",
    ),
    ("pathology", pathology, "Preset: H&E tiles: HED stain, colour jitter, grey, flips, rot90"),
]:
    TRANSFORMS.register(_name, description=_description)(_builder)


def build_transform(name: str, **kwargs: Any) -> Transform:
    """Build a registered transform or preset by name.

    Args:
        name: one of ``TRANSFORMS.names()`` (e.g. "nnunet_default", "light", "gamma").
        **kwargs: the builder's options (presets need ``spatial_dims``).

    Raises:
        ConfigError: unknown name or option; the message lists the valid ones and the
            closest one.

    Example:
        >>> build_transform("light", spatial_dims=3).__class__.__name__
        'Compose'
    """
    return TRANSFORMS.build(name, **kwargs)


__all__ = [
    "TRANSFORMS",
    "ColourTransform",
    "Compose",
    "CropOrPad",
    "IntensityTransform",
    "MacenkoNormalizer",
    "RandomBiasField",
    "RandomBrightness",
    "RandomColourJitter",
    "RandomContrast",
    "RandomCropResize",
    "RandomErasing",
    "RandomFlip",
    "RandomGamma",
    "RandomGhosting",
    "RandomMotion",
    "RandomSpike",
    "RandomSusceptibility",
    "mri_artefacts_preset",
    "RandomGaussianBlur",
    "RandomGaussianNoise",
    "RandomGrey",
    "RandomHEDStain",
    "RandomHistogramEqualization",
    "RandomLowResolution",
    "RandomRicianNoise",
    "RandomRot90",
    "RandomSharpen",
    "RandomSobel",
    "RandomSpatial",
    "ReinhardNormalizer",
    "StainNormalizer",
    "Transform",
    "apply_spatial",
    "build_transform",
    "light",
    "nnunet_default",
    "pathology",
    "stain_normalizer_from_config",
]
