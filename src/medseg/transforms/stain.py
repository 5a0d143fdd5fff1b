"""Macenko stain normalisation of H&E RGB tiles (Macenko et al. 2009), batched in torch.

Images are ``(B, 3, *spatial)`` float RGB in ``[0, value_range]`` (default 255: 8-bit colour
stored as float; 1.0 for ``[0, 1]``). A normaliser is fitted once on reference tissue
(``fit``: one tile, or a batch / list of tiles = a dataset, pooled), saved as plain JSON
(``to_dict`` / ``from_dict``, e.g. in a plan) and applied alike in preprocessing and
prediction (``normalizer(batch)``), each image of a batch estimating its own stains.

Optical density (Beer-Lambert), natural log, on the 0..255 scale whatever ``value_range``:
``OD = -ln((I + 1) / 256)`` (0 for white, finite for black; the +1 avoids log 0), inverted
by ``I = 256 exp(-OD) - 1`` clipped to ``[0, 255]``.

Macenko et al., "A method for normalizing histology slides for quantitative analysis",
ISBI 2009: drop background pixels, whose OD is below ``beta`` = 0.15, take the
plane of the two largest eigenvectors of the tissue OD covariance, the angles of the tissue
pixels in that plane, and their ``alpha`` = 1st and 99th percentiles as the two stain
vectors (haematoxylin first: the one with the larger red OD); concentrations by least
squares, scaled so their 99th percentiles match the reference's. An image with fewer than
``min_tissue_pixels`` tissue pixels, or a degenerate estimate, falls back to the reference
stains (never NaN). Which pixels are tissue: ``tissue="norm"`` (default) keeps those whose
OD vector is at least ``beta`` long; ``"all"``, the reference implementations' rule, those
with every channel at least ``beta``, which also drops pale eosin (Ruifrok's eosin vector has a
red OD of only 0.07), leaving too few eosin pixels to find its direction.

Reinhard normalisation is in ``medseg.transforms.colour_reinhard``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from medseg.errors import ConfigError, DatasetError
from medseg.transforms.colour_space import check_rgb

Tiles = Tensor | Sequence[Tensor]

#: Reference H&E stain vectors (rows H, E; columns R, G, B OD) and 99th percentile
#: concentrations of the Macenko reference implementation (github.com/mitkovetta/
#: staining-normalization), used before ``fit`` and as the fallback.
DEFAULT_STAINS = ((0.5626, 0.7201, 0.4062), (0.2159, 0.8012, 0.5581))
DEFAULT_MAX_CONCENTRATIONS = (1.9705, 1.0308)


def rgb_to_od(image: Tensor, value_range: float = 255.0) -> Tensor:
    """Optical density ``-ln((I + 1) / 256)`` of RGB ``(B, 3, *spatial)`` in
    ``[0, value_range]`` (``I`` on the 0..255 scale); 0 for white."""
    return -torch.log((image * (255.0 / value_range) + 1.0) / 256.0)


def od_to_rgb(od: Tensor, value_range: float = 255.0) -> Tensor:
    """RGB in ``[0, value_range]`` of optical density: ``256 exp(-OD) - 1`` clipped."""
    return (256.0 * torch.exp(-od) - 1.0).clamp(0.0, 255.0) * (value_range / 255.0)


def masked_quantile(values: Tensor, mask: Tensor, q: float) -> Tensor:
    """Quantile ``q`` in [0, 1] of each row of ``values`` ``(B, N)`` over its ``mask``ed
    entries, linear interpolation (``numpy.percentile``'s default); ``inf`` for an empty row."""
    ordered = values.masked_fill(~mask, math.inf).sort(dim=-1).values
    count = mask.sum(dim=-1)
    position = q * (count - 1).clamp_min(0).to(values.dtype)
    low = position.floor().long()
    high = torch.minimum(low + 1, (count - 1).clamp_min(0))
    frac = position - low.to(values.dtype)
    a = ordered.gather(-1, low[:, None])[:, 0]
    b = ordered.gather(-1, high[:, None])[:, 0]
    return torch.where(count > 0, a + frac * (b - a), torch.full_like(a, math.inf))


def _pixels(od: Tensor, max_pixels: int) -> Tensor:
    """``(B, 3, N)`` OD pixels, an even stride of at most ``max_pixels`` per image."""
    flat = od.flatten(2)
    step = max(1, math.ceil(flat.shape[-1] / max_pixels))
    return flat[..., ::step].double()


def estimate_macenko(
    od: Tensor, mask: Tensor, *, alpha: float = 1.0, min_pixels: int = 100
) -> tuple[Tensor, Tensor, Tensor]:
    """Macenko stain vectors and 99th percentile concentrations of each row of a batch.

    Args:
        od: ``(B, 3, N)`` optical densities (float64).
        mask: ``(B, N)`` bool, the tissue pixels (every OD channel >= beta).
        alpha: percentile (in %) of the angles that gives the extreme stain vectors.
        min_pixels: fewer tissue pixels than this make the row invalid.

    Returns:
        ``(stains, max_concentrations, valid)``: ``(B, 2, 3)`` unit stain vectors (H, E),
        ``(B, 2)`` and ``(B,)`` bool; rows that are not valid hold finite placeholders.
    """
    weight = mask.to(od.dtype)[:, None]
    count = mask.sum(-1)
    mean = (od * weight).sum(-1, keepdim=True) / count.clamp_min(1)[:, None, None]
    centred = (od - mean) * weight
    cov = centred @ centred.transpose(1, 2) / (count - 1).clamp_min(1)[:, None, None]
    cov = cov + 1e-12 * torch.eye(3, dtype=od.dtype, device=od.device)
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    first, second = vectors[..., 2], vectors[..., 1]
    first = first * torch.where(first.sum(-1, keepdim=True) < 0, -1.0, 1.0)  # into +OD
    x = torch.einsum("bc,bcn->bn", first, od)
    y = torch.einsum("bc,bcn->bn", second, od)
    phi = torch.atan2(y, x)
    lo = masked_quantile(phi, mask, alpha / 100.0).nan_to_num(0.0, 0.0, 0.0)
    hi = masked_quantile(phi, mask, 1.0 - alpha / 100.0).nan_to_num(0.0, 0.0, 0.0)
    v_lo = first * lo.cos()[:, None] + second * lo.sin()[:, None]
    v_hi = first * hi.cos()[:, None] + second * hi.sin()[:, None]
    h_first = (v_lo[:, 0] >= v_hi[:, 0])[:, None]
    stains = torch.stack(
        [torch.where(h_first, v_lo, v_hi), torch.where(h_first, v_hi, v_lo)], dim=1
    )
    stains = stains * torch.where(stains.sum(-1, keepdim=True) < 0, -1.0, 1.0)
    stains = stains / stains.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cosine = (stains[:, 0] * stains[:, 1]).sum(-1)
    concentrations = torch.linalg.pinv(stains.transpose(1, 2)) @ od  # (B, 2, N)
    max_c = torch.stack(
        [masked_quantile(concentrations[:, k], mask, 0.99) for k in range(2)], dim=1
    )
    valid = (
        (count >= min_pixels)
        & (cosine < 0.9999)  # two distinct stains
        & torch.isfinite(max_c).all(-1)
        & (max_c > 1e-6).all(-1)
        & torch.isfinite(stains).all(-1).all(-1)
    )
    return stains, max_c.nan_to_num(1.0, 1.0, 1.0), valid


def _as_batches(tiles: Tiles) -> list[Tensor]:
    """``tiles`` (one ``(3, *spatial)`` tile, a batch, or a list of either) as batches."""
    items = [tiles] if isinstance(tiles, Tensor) else list(tiles)
    if not items:
        raise DatasetError("fit needs at least one tile; got an empty list")
    return [t[None] if isinstance(t, Tensor) and t.ndim == 3 else t for t in items]


def _finite_matrix(config: dict[str, Any], key: str, shape: tuple[int, ...]) -> Tensor:
    try:
        value = torch.tensor(config[key], dtype=torch.float64)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"stain normaliser config: '{key}' missing or not numeric") from err
    if tuple(value.shape) != shape or not bool(torch.isfinite(value).all()):
        raise ConfigError(
            f"stain normaliser config: '{key}' must be finite numbers of shape {shape}, "
            f"got {config[key]!r}"
        )
    return value


def _check_keys(config: dict[str, Any], method: str, keys: set[str]) -> None:
    if not isinstance(config, dict) or config.get("method") != method:
        got = config.get("method") if isinstance(config, dict) else type(config).__name__
        raise ConfigError(f"stain normaliser config: method must be '{method}', got {got!r}")
    unknown = sorted(set(config) - keys - {"method"})
    if unknown:
        raise ConfigError(
            f"stain normaliser config: unknown key(s) {unknown}; valid: {sorted(keys)}"
        )


class MacenkoNormalizer:
    """Macenko stain normalisation to a reference (the defaults until :meth:`fit`).

    Args:
        beta: OD threshold of tissue (0.15, Macenko 2009).
        tissue: "norm" (OD vector length >= beta) or "all" (every channel >= beta).
        alpha: angle percentile in % (1, Macenko 2009).
        value_range: the images' colour scale (255 or 1).
        min_tissue_pixels: an image (or the fit tiles) with fewer tissue pixels falls back to
            the reference stains (fit: raises).
        max_pixels: estimation uses an even subsample of at most this many pixels per image.

    Example:
        >>> tiles = torch.full((2, 3, 16, 16), 255.0)
        >>> MacenkoNormalizer()(tiles).equal(tiles)  # background stays white
        True
    """

    def __init__(
        self,
        *,
        beta: float = 0.15,
        tissue: Literal["norm", "all"] = "norm",
        alpha: float = 1.0,
        value_range: float = 255.0,
        min_tissue_pixels: int = 100,
        max_pixels: int = 65536,
    ) -> None:
        if not (beta >= 0 and 0 <= alpha < 50 and value_range > 0 and max_pixels >= 1):
            raise ValueError(
                f"need beta >= 0, 0 <= alpha < 50, value_range > 0, max_pixels >= 1; got "
                f"beta={beta}, alpha={alpha}, value_range={value_range}, max_pixels={max_pixels}"
            )
        if tissue not in ("norm", "all"):
            raise ValueError(f"tissue must be 'norm' or 'all', got {tissue!r}")
        self.beta, self.alpha, self.tissue = float(beta), float(alpha), tissue
        self.value_range = float(value_range)
        self.min_tissue_pixels, self.max_pixels = int(min_tissue_pixels), int(max_pixels)
        self.stains = torch.tensor(DEFAULT_STAINS, dtype=torch.float64)  # (2, 3): H, E
        self.max_concentrations = torch.tensor(DEFAULT_MAX_CONCENTRATIONS, dtype=torch.float64)
        self.fitted = False

    def _tissue(self, image: Tensor) -> tuple[Tensor, Tensor]:
        od = _pixels(rgb_to_od(image, self.value_range), self.max_pixels)
        if self.tissue == "all":
            return od, (od >= self.beta).all(dim=1)
        return od, od.norm(dim=1) >= self.beta

    def fit(self, tiles: Tiles) -> MacenkoNormalizer:
        """Estimate the reference stains from the pooled tissue pixels of ``tiles`` (one
        ``(3, *spatial)`` tile, a ``(B, 3, *spatial)`` batch, or a list of them).

        Raises:
            ValueError: a tile is not RGB in ``[0, value_range]``.
            DatasetError: the tiles hold too little tissue or only one stain.
        """
        ods, masks = [], []
        for batch in _as_batches(tiles):
            check_rgb(batch, self.value_range, what="fit tile")
            od, mask = self._tissue(batch)
            ods.append(od.transpose(0, 1).reshape(3, -1))
            masks.append(mask.reshape(-1))
        stains, max_c, valid = estimate_macenko(
            torch.cat(ods, 1)[None], torch.cat(masks)[None], alpha=self.alpha,
            min_pixels=self.min_tissue_pixels,
        )  # fmt: skip
        if not bool(valid[0]):
            raise DatasetError(
                f"cannot fit a Macenko normaliser: the tiles hold {int(torch.cat(masks).sum())} "
                f"tissue pixels (OD >= {self.beta}, rule '{self.tissue}'; need "
                f"{self.min_tissue_pixels}) or only one stain"
            )
        self.stains, self.max_concentrations, self.fitted = stains[0], max_c[0], True
        return self

    def __call__(self, image: Tensor) -> Tensor:
        """Normalise ``(B, 3, *spatial)`` RGB to the reference stains (same shape, dtype,
        device and scale); each image estimates its own stains, with the fallback above."""
        check_rgb(image, self.value_range)
        od_sample, mask = self._tissue(image)
        stains, max_c, valid = estimate_macenko(
            od_sample, mask, alpha=self.alpha, min_pixels=self.min_tissue_pixels
        )
        ref_stains = self.stains.to(stains.device)
        ref_max = self.max_concentrations.to(max_c.device)
        stains = torch.where(valid[:, None, None], stains, ref_stains)
        max_c = torch.where(valid[:, None], max_c, ref_max)
        od = rgb_to_od(image, self.value_range).flatten(2)
        to_conc = torch.linalg.pinv(stains.transpose(1, 2)) * (ref_max / max_c)[..., None]
        mix = ref_stains.T @ to_conc  # (B, 3, 3): OD -> concentrations -> reference OD
        out = mix.to(od.dtype) @ od
        return od_to_rgb(out, self.value_range).reshape(image.shape).to(image.dtype)

    def normalize_array(self, image: np.ndarray) -> np.ndarray:
        """Normalise one ``(3, *spatial)`` float array (a preprocessed case), float32."""
        return self(torch.from_numpy(np.asarray(image, dtype=np.float32))[None])[0].numpy()

    def to_dict(self) -> dict[str, Any]:
        """The fitted normaliser as JSON-serialisable plain values."""
        return {
            "method": "macenko",
            "stains": self.stains.tolist(),
            "max_concentrations": self.max_concentrations.tolist(),
            "beta": self.beta,
            "tissue": self.tissue,
            "alpha": self.alpha,
            "value_range": self.value_range,
            "min_tissue_pixels": self.min_tissue_pixels,
            "max_pixels": self.max_pixels,
            "fitted": self.fitted,
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> MacenkoNormalizer:
        """Rebuild from :meth:`to_dict`'s output. Raises ConfigError naming a bad key."""
        keys = {"stains", "max_concentrations", "beta", "tissue", "alpha", "value_range"}
        _check_keys(config, "macenko", keys | {"min_tissue_pixels", "max_pixels", "fitted"})
        options = {k: config[k] for k in ("beta", "tissue", "alpha", "value_range") if k in config}
        options |= {k: config[k] for k in ("min_tissue_pixels", "max_pixels") if k in config}
        try:
            normalizer = cls(**options)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"stain normaliser config: {err}") from err
        normalizer.stains = _finite_matrix(config, "stains", (2, 3))
        normalizer.max_concentrations = _finite_matrix(config, "max_concentrations", (2,))
        normalizer.fitted = bool(config.get("fitted", True))
        return normalizer
