"""Augmentation presets: nnU-Net's default training pipeline and a light one.

Both return a ``Compose`` that takes ``(image, label)`` batches ``(B, C, *spatial)`` /
``(B, 1, *spatial)``. See ``docs/augmentation.md`` for per-modality advice (e.g. leave the
left-right axis out of ``mirror_axes`` where laterality matters).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from medseg.transforms.base import Compose, Transform
from medseg.transforms.grid import LabelMode
from medseg.transforms.intensity import (
    RandomBrightness,
    RandomContrast,
    RandomGamma,
    RandomGaussianBlur,
    RandomGaussianNoise,
    RandomLowResolution,
)
from medseg.transforms.spatial import RandomFlip, RandomSpatial


def _probabilities(spatial_dims: int, p: float | None) -> Callable[[float], float]:
    """Check ``spatial_dims``; return ``prob(default)``: a preset's probability, or ``p``."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")

    def prob(default: float) -> float:
        return default if p is None else p

    return prob


def _mirror_and_compose(
    transforms: list[Transform],
    mirror_axes: Sequence[int] | None,
    prob: Callable[[float], float],
    seed: int | None,
) -> Compose:
    """``transforms`` then mirroring of each axis (0.5) unless ``mirror_axes`` is empty."""
    if mirror_axes is None or len(mirror_axes) > 0:
        transforms.append(RandomFlip(axes=mirror_axes, p=prob(0.5)))
    return Compose(transforms, seed=seed)


def nnunet_default(
    spatial_dims: int,
    p: float | None = None,
    *,
    patch_size: Sequence[int] | None = None,
    mirror_axes: Sequence[int] | None = None,
    label_mode: LabelMode = "nearest",
    intensity_channels: Sequence[int] | None = None,
    p_elastic: float = 0.0,
    seed: int | None = None,
) -> Compose:
    """nnU-Net v2's default training augmentation (``nnUNetTrainer.get_training_transforms``).

    In order, with nnU-Net's per-sample probabilities: rotation (2-D +-180 deg, 3-D +-30 deg
    per plane, 0.2) and scaling (0.7-1.4, isotropic, 0.2) in one resampling; Gaussian noise
    (std 0-0.1, 0.1); Gaussian blur (sigma 0.5-1 per axis, 0.2, per channel 0.5);
    multiplicative brightness (0.75-1.25, 0.15); contrast (0.75-1.25, 0.15); low resolution
    (zoom 0.5-1, 0.25, per channel 0.5); inverted gamma (0.7-1.5, 0.1); gamma (0.7-1.5, 0.3);
    mirroring of each axis (0.5). Elastic deformation is off, as in nnU-Net v2, unless
    ``p_elastic`` > 0 (U-Net's key augmentation for few training images, Ronneberger 2015).

    Differences from nnU-Net: factor ranges are sampled uniformly (nnU-Net's ``BGContrast``
    draws below and above 1 with equal chance); labels are resampled with ``label_mode``
    ("nearest" by default; nnU-Net v2 interpolates one-hot labels, i.e. ``"linear"``).

    Args:
        spatial_dims: 2 or 3.
        p: None for nnU-Net's probabilities; a number replaces every probability (including
            per-channel and per-axis ones), so ``p=1.0`` applies every transform.
        patch_size: output spatial shape of the spatial transform (None: the input's).
        mirror_axes: spatial axes that may be mirrored (None: all; ``()``: none).
        label_mode: "nearest" or "linear" label resampling.
        intensity_channels: the channels intensity transforms change (None: all); e.g. only
            the image channels of a cascade stage's input, not its previous-stage masks.
        p_elastic: per-sample probability of an elastic deformation (random displacements
            of 5 control points per axis, std 2-5 voxels, cubic B-spline), in the same
            resampling as rotation and scaling.
        seed: seed of the pipeline's generator.

    Returns:
        The pipeline.
    """
    prob = _probabilities(spatial_dims, p)
    rotation = (-180.0, 180.0) if spatial_dims == 2 else (-30.0, 30.0)
    transforms: list[Transform] = [
        RandomSpatial(
            output_size=patch_size,
            p_rotation=prob(0.2),
            rotation_deg=rotation,
            p_scale=prob(0.2),
            scale=(0.7, 1.4),
            p_elastic=p_elastic,
            label_mode=label_mode,
        ),
        RandomGaussianNoise(std=(0.0, 0.1), p=prob(0.1), channels=intensity_channels),
        RandomGaussianBlur(
            sigma=(0.5, 1.0), p=prob(0.2), p_per_channel=prob(0.5), channels=intensity_channels
        ),
        RandomBrightness(
            mode="multiplicative",
            value_range=(0.75, 1.25),
            p=prob(0.15),
            channels=intensity_channels,
        ),
        RandomContrast(factor=(0.75, 1.25), p=prob(0.15), channels=intensity_channels),
        RandomLowResolution(
            zoom=(0.5, 1.0), p=prob(0.25), p_per_channel=prob(0.5), channels=intensity_channels
        ),
        RandomGamma(gamma=(0.7, 1.5), invert=True, p=prob(0.1), channels=intensity_channels),
        RandomGamma(gamma=(0.7, 1.5), invert=False, p=prob(0.3), channels=intensity_channels),
    ]
    return _mirror_and_compose(transforms, mirror_axes, prob, seed)


def light(
    spatial_dims: int,
    p: float | None = None,
    *,
    patch_size: Sequence[int] | None = None,
    mirror_axes: Sequence[int] | None = None,
    intensity_channels: Sequence[int] | None = None,
    p_elastic: float = 0.0,
    seed: int | None = None,
) -> Compose:
    """A light pipeline for small or fragile datasets (and quick CPU runs).

    Small rotation (+-15 deg, 0.2) and scaling (0.9-1.1, 0.2) in one resampling, mirroring
    (0.5 per axis), brightness and contrast (0.9-1.1, 0.15 each) and weak noise (std 0-0.05,
    0.1).

    Args:
        spatial_dims, patch_size, mirror_axes, intensity_channels, p_elastic, seed: as
            :func:`nnunet_default`.
        p: None for the probabilities above; a number replaces every probability.

    Returns:
        The pipeline.
    """
    prob = _probabilities(spatial_dims, p)
    transforms: list[Transform] = [
        RandomSpatial(
            output_size=patch_size,
            p_rotation=prob(0.2),
            rotation_deg=(-15.0, 15.0),
            p_scale=prob(0.2),
            scale=(0.9, 1.1),
            p_elastic=p_elastic,
        ),
        RandomBrightness(
            mode="multiplicative", value_range=(0.9, 1.1), p=prob(0.15), channels=intensity_channels
        ),
        RandomContrast(factor=(0.9, 1.1), p=prob(0.15), channels=intensity_channels),
        RandomGaussianNoise(std=(0.0, 0.05), p=prob(0.1), channels=intensity_channels),
    ]
    return _mirror_and_compose(transforms, mirror_axes, prob, seed)
