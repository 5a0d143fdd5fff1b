"""Image enhancement: residual U-Net denoisers (supervised or noise2noise) and through-plane
super-resolution.

* noise models and the ``"rician:0.05"`` spec: :mod:`medseg.enhance.noise`;
* training on the shared engine: :func:`fit_denoiser` with a :class:`DenoiseConfig`
  (``mode="supervised"`` or ``"n2n"``; losses L1, L2, SSIM, mix);
* applying a run: :func:`denoise` (``Image`` in, ``Image`` out, 2D or 3D);
* super-resolution (``mode="super_resolution"``): thick slices simulated from thin ones and
  upsampled back (:mod:`medseg.enhance.super_resolution`, :func:`super_resolve`);
* data: a pairs folder (``noisy1/``, ``noisy2/``, optional ``clean/``; see
  ``medseg.data.phantoms_denoise``) or a dataset folder whose images are taken as clean.

Quality metrics (:func:`medseg.metrics.image_quality.psnr`, ``ssim``) need a stated data range.
See ``docs/enhancement.md``.
"""

from medseg.enhance.apply import denoise, denoise_array, denoise_image, load_denoiser
from medseg.enhance.config import DenoiseConfig
from medseg.enhance.data import PairsFolder, SimulatedPairs, open_denoise_data
from medseg.enhance.noise import NOISE_MODELS, NoiseSpec, parse_noise
from medseg.enhance.super_resolution import (
    cubic_upsample,
    simulate_thick_slices,
    super_resolve,
    super_resolve_array,
    super_resolve_image,
    thick_slices,
    upsample_slices,
)
from medseg.enhance.train import fit_denoiser

__all__ = [
    "NOISE_MODELS",
    "DenoiseConfig",
    "NoiseSpec",
    "PairsFolder",
    "SimulatedPairs",
    "cubic_upsample",
    "denoise",
    "denoise_array",
    "denoise_image",
    "fit_denoiser",
    "load_denoiser",
    "open_denoise_data",
    "parse_noise",
    "simulate_thick_slices",
    "super_resolve",
    "super_resolve_array",
    "super_resolve_image",
    "thick_slices",
    "upsample_slices",
]
