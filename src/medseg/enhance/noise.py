"""Noise models of the denoising task (``gaussian``, ``rician``, ``poisson_gaussian``,
``speckle``) and the ``"<model>:<level>"`` spec parser.

They live in :mod:`medseg.data.noise_models` (the data layer, so the phantom generator can
use them); this module is the enhancement package's name for them.
"""

from medseg.data.noise_models import (
    NOISE_MODELS,
    NoiseModel,
    NoiseSpec,
    gaussian,
    parse_noise,
    poisson_gaussian,
    rician,
    speckle,
)

__all__ = [
    "NOISE_MODELS",
    "NoiseModel",
    "NoiseSpec",
    "gaussian",
    "parse_noise",
    "poisson_gaussian",
    "rician",
    "speckle",
]
