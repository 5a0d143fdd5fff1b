"""Colour choices of a slide dataset's plans: RGB kept as colour (``rgb`` normalisation,
values in [0, 1]), the ``pathology`` augmentation preset, and an optional stain normaliser
fitted on the training tiles and stored in the plan (``Plan.stain_normalizer``), so that
preprocessing and prediction apply the same one."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Literal

import numpy as np
import torch

from medseg.data.dataset import load_dataset, read_case
from medseg.planning.plan import Plans
from medseg.transforms import MacenkoNormalizer, ReinhardNormalizer

StainMethod = Literal["macenko", "reinhard"]
#: tiles pooled to fit the reference stain (evenly spread over the tile list)
FIT_TILES = 24


def fit_stain_normalizer(
    tiles: str | os.PathLike[str], method: StainMethod, *, max_tiles: int = FIT_TILES
) -> dict:
    """Fit a Macenko or Reinhard normaliser on up to ``max_tiles`` RGB tiles of a tile dataset
    (``RESULTS/tiles``); returns its ``to_dict()``.

    Raises:
        DatasetError: the tiles hold too little tissue to estimate stains.
    """
    dataset = load_dataset(tiles)
    cases = dataset.cases
    picks = np.unique(np.linspace(0, len(cases) - 1, min(max_tiles, len(cases))).astype(int))
    arrays = [
        torch.from_numpy(read_case(cases[i], num_channels=3)[0].channels_first())
        .float()
        .clamp(0, 255)[None]
        for i in picks
    ]
    normalizer = MacenkoNormalizer() if method == "macenko" else ReinhardNormalizer()
    return normalizer.fit(arrays).to_dict()


def colour_plans(
    plans: Plans,
    tiles: str | os.PathLike[str],
    *,
    stain: StainMethod | None = None,
    augmentation: str | None = None,
) -> Plans:
    """``plans`` with colour kept as colour: normalisation ``rgb`` on the three channels, the
    ``pathology`` augmentation (unless ``augmentation`` was chosen), and the stain normaliser
    fitted on ``tiles`` when ``stain`` is given."""
    fitted = fit_stain_normalizer(tiles, stain) if stain else {}
    configurations = {}
    for name, plan in plans.configurations.items():
        reasons = {
            **plan.reasons,
            "normalization": "RGB slide tiles: 8-bit colour divided by 255, so colour "
            "augmentation and stain normalisation see colour",
        }
        if fitted:
            reasons["stain_normalizer"] = f"{stain} fitted on the training tiles"
        configurations[name] = replace(
            plan,
            normalization=("rgb",) * 3,
            augmentation=augmentation or "pathology",
            stain_normalizer=fitted,
            reasons=reasons,
        )
    return replace(plans, configurations=configurations)
