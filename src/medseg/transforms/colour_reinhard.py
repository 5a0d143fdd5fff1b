"""Reinhard colour normalisation of RGB tiles in CIE L*a*b*, batched in torch.

Reinhard, Ashikhmin, Gooch & Shirley, "Color transfer between images", IEEE Computer Graphics
and Applications 21(5), 2001: shift and scale each L*a*b* channel of an image so its mean and
standard deviation match the reference's (here over all pixels; the paper used l-alpha-beta,
medseg the CIE L*a*b* of ``skimage.color.rgb2lab``). Same interface as
``medseg.transforms.stain.MacenkoNormalizer``: ``fit`` / ``__call__`` / ``to_dict`` /
``from_dict``; images ``(B, 3, *spatial)`` float RGB in ``[0, value_range]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from medseg.errors import ConfigError
from medseg.transforms.colour_space import check_rgb, lab_to_rgb, rgb_to_lab
from medseg.transforms.stain import Tiles, _as_batches, _check_keys, _finite_matrix


class ReinhardNormalizer:
    """Reinhard colour transfer: match each image's L*a*b* means and standard deviations to
    the reference's (Reinhard et al. 2001, in CIE L*a*b*; statistics over all pixels).

    Args:
        value_range: the images' colour scale (255 or 1).

    Example:
        >>> tile = torch.rand(1, 3, 8, 8) * 255
        >>> normalizer = ReinhardNormalizer().fit(tile)
        >>> bool((normalizer(tile) - tile).abs().max() < 0.01)
        True
    """

    def __init__(self, *, value_range: float = 255.0) -> None:
        if value_range <= 0:
            raise ValueError(f"value_range must be > 0, got {value_range}")
        self.value_range = float(value_range)
        self.means: Tensor | None = None
        self.stds: Tensor | None = None

    def fit(self, tiles: Tiles) -> ReinhardNormalizer:
        """Reference L*a*b* means and standard deviations of all pixels of ``tiles`` pooled."""
        total = torch.zeros(3, dtype=torch.float64)
        squares = torch.zeros(3, dtype=torch.float64)
        count = 0
        for batch in _as_batches(tiles):
            check_rgb(batch, self.value_range, what="fit tile")
            lab = rgb_to_lab(batch.double().cpu() / self.value_range).transpose(0, 1).flatten(1)
            total += lab.sum(1)
            squares += (lab**2).sum(1)
            count += lab.shape[1]
        self.means = total / count
        self.stds = (squares / count - self.means**2).clamp_min(0).sqrt()
        return self

    def __call__(self, image: Tensor) -> Tensor:
        """Normalise ``(B, 3, *spatial)`` RGB (same shape, dtype, device and scale); a
        channel with (near) zero spread is shifted, not scaled.

        Raises:
            ValueError: not fitted, or not RGB in ``[0, value_range]``.
        """
        if self.means is None or self.stds is None:
            raise ValueError("ReinhardNormalizer is not fitted: call fit(tiles) first")
        check_rgb(image, self.value_range)
        lab = rgb_to_lab(image.double() / self.value_range)
        dims = tuple(range(2, image.ndim))
        mean = lab.mean(dim=dims, keepdim=True)
        std = lab.std(dim=dims, keepdim=True, correction=0)
        shape = (1, 3, *[1] * len(dims))
        ref_mean = self.means.to(lab.device).view(shape)
        ref_std = self.stds.to(lab.device).view(shape)
        scale = torch.where(std > 1e-3, ref_std / std.clamp_min(1e-3), torch.ones_like(std))
        out = lab_to_rgb((lab - mean) * scale + ref_mean)
        return (out * self.value_range).to(image.dtype)

    def normalize_array(self, image: np.ndarray) -> np.ndarray:
        """Normalise one ``(3, *spatial)`` float array (a preprocessed case), float32."""
        return self(torch.from_numpy(np.asarray(image, dtype=np.float32))[None])[0].numpy()

    def to_dict(self) -> dict[str, Any]:
        """The fitted normaliser as JSON-serialisable plain values."""
        if self.means is None or self.stds is None:
            raise ValueError("ReinhardNormalizer is not fitted: call fit(tiles) first")
        return {
            "method": "reinhard",
            "means": self.means.tolist(),
            "stds": self.stds.tolist(),
            "value_range": self.value_range,
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ReinhardNormalizer:
        """Rebuild from :meth:`to_dict`'s output. Raises ConfigError naming a bad key."""
        _check_keys(config, "reinhard", {"means", "stds", "value_range"})
        try:
            normalizer = cls(value_range=config.get("value_range", 255.0))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"stain normaliser config: {err}") from err
        normalizer.means = _finite_matrix(config, "means", (3,))
        normalizer.stds = _finite_matrix(config, "stds", (3,))
        return normalizer
