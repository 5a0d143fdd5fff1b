"""Pathology presets: the H&E augmentation preset, and stain normalisers from plan JSON.

``pathology`` takes ``(B, 3, *spatial)`` RGB in ``[0, value_range]`` (default 255: a plan
whose normalisation is ``"none"`` for the three channels) and ``(B, 1, *spatial)`` labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medseg.errors import ConfigError
from medseg.transforms.base import Compose, Transform
from medseg.transforms.colour import RandomColourJitter, RandomGrey, RandomHEDStain
from medseg.transforms.colour_reinhard import ReinhardNormalizer
from medseg.transforms.flip_crop import RandomFlip, RandomRot90
from medseg.transforms.presets import _probabilities
from medseg.transforms.spatial import RandomSpatial
from medseg.transforms.stain import MacenkoNormalizer


def pathology(
    spatial_dims: int = 2,
    p: float | None = None,
    *,
    patch_size: Sequence[int] | None = None,
    mirror_axes: Sequence[int] | None = None,
    intensity_channels: Sequence[int] | None = None,
    p_elastic: float = 0.0,
    value_range: float = 255.0,
    hed_sigma: float = 0.05,
    seed: int | None = None,
) -> Compose:
    """Pathology training augmentation (tissue has no orientation; stains vary by lab).

    In order, with per-sample probabilities: HED stain jitter (Tellez 2018, alpha and beta
    sigma ``hed_sigma`` = 0.05, 0.5); colour jitter (brightness, contrast, saturation 0.1,
    hue 0.02 turns, 0.5); grey (0.1); a light resampling (rotation +-180 deg 0.2, scaling
    0.9-1.1 0.2, border padding so no black corners; no elastic unless ``p_elastic``);
    quarter turns in the last two axes (0.5); mirroring of each axis (0.5). Colour comes
    before geometry so it sees the original ``[0, value_range]`` values.

    Args:
        spatial_dims: 2 (tiles) or 3.
        p: None for the probabilities above; a number replaces every probability.
        patch_size: output spatial shape of the resampling (None: the input's).
        mirror_axes: axes that may be mirrored (None: all; ``()``: none).
        intensity_channels: the three RGB channels (None: the image has exactly 3).
        p_elastic: per-sample probability of elastic deformation (default off).
        value_range: the colour scale, 255 (0..255 floats) or 1.
        hed_sigma: sigma of the HED alpha and beta.
        seed: seed of the pipeline's generator.

    Returns:
        The pipeline.

    Example:
        >>> [type(t).__name__ for t in pathology(2).transforms][:3]
        ['RandomHEDStain', 'RandomColourJitter', 'RandomGrey']
    """
    prob = _probabilities(spatial_dims, p)
    colour = {"value_range": value_range, "channels": intensity_channels}
    transforms: list[Transform] = [
        RandomHEDStain(sigma_alpha=hed_sigma, sigma_beta=hed_sigma, p=prob(0.5), **colour),
        RandomColourJitter(
            brightness=0.1, contrast=0.1, saturation=0.1, hue=0.02, p=prob(0.5), **colour
        ),
        RandomGrey(p=prob(0.1), **colour),
        RandomSpatial(
            output_size=patch_size,
            p_rotation=prob(0.2),
            rotation_deg=(-180.0, 180.0) if spatial_dims == 2 else (-30.0, 30.0),
            p_scale=prob(0.2),
            scale=(0.9, 1.1),
            p_elastic=p_elastic,
            image_padding="border",
        ),
        RandomRot90(p=prob(0.5)),
    ]
    if mirror_axes is None or len(mirror_axes) > 0:
        transforms.append(RandomFlip(axes=mirror_axes, p=prob(0.5)))
    return Compose(transforms, seed=seed)


StainNormalizer = MacenkoNormalizer | ReinhardNormalizer


def stain_normalizer_from_config(config: dict[str, Any]) -> StainNormalizer:
    """A fitted normaliser from its ``to_dict`` JSON (e.g. a plan's ``stain_normalizer``).

    Raises:
        ConfigError: unknown ``method`` (valid: "macenko", "reinhard") or a bad entry.

    Example:
        >>> stain_normalizer_from_config(MacenkoNormalizer().to_dict()).beta
        0.15
    """
    methods = {"macenko": MacenkoNormalizer, "reinhard": ReinhardNormalizer}
    method = config.get("method") if isinstance(config, dict) else None
    if method not in methods:
        raise ConfigError(
            f"stain normaliser config: method must be one of {sorted(methods)}, got {method!r}"
        )
    return methods[method].from_dict(config)
