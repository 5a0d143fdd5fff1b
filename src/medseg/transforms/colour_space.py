"""Colour-space conversions of batched RGB tensors, in torch (any device, differentiable).

Images are ``(B, 3, *spatial)`` floating-point RGB with values in ``[0, value_range]``
(``value_range=255`` for 8-bit colour stored as float, the default; ``1.0`` for ``[0, 1]``).
:func:`check_rgb` enforces this with an error that names the problem. Conversions work on
``[0, 1]`` RGB (divide by ``value_range`` first), like scikit-image's ``skimage.color``:

* :func:`rgb_to_lab` / :func:`lab_to_rgb`: CIE L*a*b* (D65 white, sRGB primaries and
  gamma), equal to ``skimage.color.rgb2lab`` / ``lab2rgb``.
* :func:`rgb_to_hed` / :func:`hed_to_rgb`: Ruifrok-Johnston colour deconvolution into
  haematoxylin, eosin and DAB (Ruifrok & Johnston 2001), equal to ``skimage.color.rgb2hed``
  / ``hed2rgb`` (optical density ``log(rgb) / log(1e-6)``, the stains clipped at 0).
* :func:`rgb_to_hsv` / :func:`hsv_to_rgb`: HSV with hue in ``[0, 1)`` (torchvision's and
  ``colorsys``'s convention).
* :func:`luma`: ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Ruifrok-Johnston stain vectors (rows: haematoxylin, eosin, DAB; columns: R, G, B optical
#: density), ``skimage.color.rgb_from_hed``.
RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64
)
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)
_LOG_ADJUST = float(torch.log(torch.tensor(1e-6, dtype=torch.float64)))

#: sRGB (linear) -> CIE XYZ, and the D65 reference white (skimage's ``xyz_from_rgb``).
XYZ_FROM_RGB = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)
RGB_FROM_XYZ = torch.linalg.inv(XYZ_FROM_RGB)
D65 = (0.95047, 1.0, 1.08883)
LUMA_601 = (0.299, 0.587, 0.114)


def check_rgb(image: Tensor, value_range: float, *, what: str = "image") -> None:
    """Raise ``ValueError`` unless ``image`` is a ``(B, 3, *spatial)`` float RGB batch in
    ``[0, value_range]`` (a tolerance of 0.1 % of the range allows interpolation overshoot).

    Args:
        image: the batch.
        value_range: the largest value of the colour scale (255 or 1).
        what: the name used in the message.
    """
    if value_range <= 0:
        raise ValueError(
            f"value_range must be > 0 (255 for 8-bit, 1 for [0, 1]), got {value_range}"
        )
    if not isinstance(image, Tensor) or image.ndim < 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"{what} must be a (B, 3, *spatial) RGB tensor, got {shape}")
    if image.shape[1] != 3:
        raise ValueError(
            f"{what} must have 3 (RGB) channels on axis 1, got {image.shape[1]} channel(s) "
            f"in shape {tuple(image.shape)}"
        )
    if not image.is_floating_point():
        raise ValueError(f"{what} must be floating point, got {image.dtype}; use .float()")
    if image.numel() == 0:
        return
    low, high = float(image.min()), float(image.max())
    tolerance = 1e-3 * value_range
    if not (low >= -tolerance and high <= value_range + tolerance):  # also catches NaN
        hint = " (pass value_range=255 for 0..255 colour)" if high > value_range else ""
        raise ValueError(
            f"{what} values must lie in [0, {value_range:g}] (value_range={value_range:g}), "
            f"got [{low:.4g}, {high:.4g}]{hint}"
        )


def _matmul_channels(image: Tensor, matrix: Tensor) -> Tensor:
    """``out[:, j] = sum_i image[:, i] * matrix[i, j]`` (row vectors times ``matrix``)."""
    return torch.einsum("bi...,ij->bj...", image, matrix.to(image.device, image.dtype))


def rgb_to_hed(rgb: Tensor, *, clip: bool = True) -> Tensor:
    """Haematoxylin-eosin-DAB stain densities of ``[0, 1]`` RGB ``(B, 3, *spatial)``
    (``skimage.color.rgb2hed``: ``max(log(max(rgb, 1e-6)) / log(1e-6) @ HED_FROM_RGB, 0)``;
    ``clip=False`` keeps negative densities, so that :func:`hed_to_rgb` inverts it exactly)."""
    density = torch.log(rgb.clamp_min(1e-6)) / _LOG_ADJUST
    hed = _matmul_channels(density, HED_FROM_RGB)
    return hed.clamp_min(0.0) if clip else hed


def hed_to_rgb(hed: Tensor) -> Tensor:
    """``[0, 1]`` RGB of stain densities ``(B, 3, *spatial)`` (``skimage.color.hed2rgb``)."""
    log_rgb = _matmul_channels(hed * _LOG_ADJUST, RGB_FROM_HED)
    return torch.exp(log_rgb).clamp(0.0, 1.0)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """CIE L*a*b* (D65, 2 degree observer) of ``[0, 1]`` sRGB ``(B, 3, *spatial)``; L in
    ``[0, 100]`` (``skimage.color.rgb2lab``)."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).pow(2.4), rgb / 12.92)
    xyz = _matmul_channels(linear, XYZ_FROM_RGB.T)
    white = torch.tensor(D65, device=rgb.device, dtype=rgb.dtype).view(1, 3, *[1] * (rgb.ndim - 2))
    xyz = xyz / white
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12).pow(1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """``[0, 1]`` sRGB of CIE L*a*b* ``(B, 3, *spatial)``, clipped to the gamut
    (``skimage.color.lab2rgb``)."""
    fy = (lab[:, 0] + 16.0) / 116.0
    fx = fy + lab[:, 1] / 500.0
    fz = (fy - lab[:, 2] / 200.0).clamp_min(0.0)
    f = torch.stack([fx, fy, fz], dim=1)
    xyz = torch.where(f > 0.2068966, f.pow(3), (f - 16.0 / 116.0) / 7.787)
    white = torch.tensor(D65, device=lab.device, dtype=lab.dtype).view(1, 3, *[1] * (lab.ndim - 2))
    linear = _matmul_channels(xyz * white, RGB_FROM_XYZ.T)
    rgb = torch.where(
        linear > 0.0031308, 1.055 * linear.clamp_min(1e-12).pow(1.0 / 2.4) - 0.055, 12.92 * linear
    )
    return rgb.clamp(0.0, 1.0)


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """HSV of ``[0, 1]`` RGB ``(B, 3, *spatial)``: hue in ``[0, 1)``, saturation and value in
    ``[0, 1]`` (grey pixels get hue 0)."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    value, _ = rgb.max(dim=1)
    chroma = value - rgb.min(dim=1).values
    saturation = torch.where(value > 0, chroma / value.clamp_min(1e-12), torch.zeros_like(value))
    safe = chroma.clamp_min(1e-12)
    hue = torch.where(
        value == r,
        ((g - b) / safe) % 6.0,
        torch.where(value == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = torch.where(chroma > 0, hue / 6.0, torch.zeros_like(hue)) % 1.0
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """``[0, 1]`` RGB of HSV ``(B, 3, *spatial)`` (hue taken modulo 1)."""
    hue, saturation, value = hsv[:, 0] % 1.0, hsv[:, 1], hsv[:, 2]
    sector = hue * 6.0

    def channel(n: float) -> Tensor:
        k = (n + sector) % 6.0
        ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
        return value - value * saturation * ramp

    return torch.stack([channel(5.0), channel(3.0), channel(1.0)], dim=1)


def luma(rgb: Tensor) -> Tensor:
    """ITU-R BT.601 luma ``(B, 1, *spatial)`` of RGB ``(B, 3, *spatial)`` (any scale)."""
    weights = torch.tensor(LUMA_601, device=rgb.device, dtype=rgb.dtype)
    return torch.einsum("bi...,i->b...", rgb, weights).unsqueeze(1)
