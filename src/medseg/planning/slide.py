"""Planning a whole-slide dataset: extract tiles, then plan them like any 2D dataset.

``plan_slides(DATASET, RESULTS, mpp=1.0, tile_size=512)``:

1. extracts ``tiles_per_slide`` tiles per slide into ``RESULTS/tiles``
   (``medseg.data.slide_extract.extract_tiles``: a regular nnU-Net v2 2D dataset);
2. plans ``RESULTS/tiles`` with the usual planner (``medseg.planning.steps.plan``), so
   ``medseg preprocess`` and ``medseg train`` run unchanged on the tiles;
3. writes ``RESULTS/splits.json`` with **whole slides** per fold (tiles of one slide never sit
   in both the training and the validation cases: neighbouring tiles share tissue, so a
   tile-level split would overstate validation scores), drawn like ``make_splits`` (sorted
   slide ids, seed 12345, up to 5 folds);
4. writes ``RESULTS/slide.json``: ``{"slide": {"mpp", "tile_size", "tiles_per_slide",
   "foreground_fraction", "seed", "source", "tiles"}}``, what slide inference needs to read
   new slides at the training resolution.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.slide_dataset import load_slide_dataset
from medseg.data.slide_extract import extract_tiles, slide_groups
from medseg.errors import ConfigError
from medseg.fileutil import check_writable, write_json_atomic
from medseg.planning.plan import Plans
from medseg.planning.slide_colour import StainMethod, colour_plans
from medseg.planning.steps import plan

__all__ = ["SLIDE_FILE", "plan_slides", "read_slide_record", "slide_splits"]

SLIDE_FILE = "slide.json"
NUM_FOLDS, SPLIT_SEED = 5, 12345  # as medseg.training.splits.make_splits (nnU-Net's)


def plan_slides(
    dataset: str | os.PathLike[str],
    results: str | os.PathLike[str],
    *,
    mpp: float = 1.0,
    tile_size: int = 512,
    tiles_per_slide: int = 64,
    foreground_fraction: float = 0.33,
    seed: int = 0,
    stain: StainMethod | None = None,
    overwrite: bool = False,
    **plan_options: Any,
) -> Plans:
    """Extract tiles of a slide dataset into ``RESULTS/tiles`` and plan them (see the module
    docstring).

    Args:
        dataset: the slide dataset folder (``medseg.data.slide_dataset``).
        results: the results folder.
        mpp: training resolution in µm per pixel (1.0: a 10x objective; 0.5: 20x).
        tile_size, tiles_per_slide, foreground_fraction, seed: see ``extract_tiles``. The
            tiles are stored as scanned: stain normalisation belongs to the plan (``stain``),
            so that preprocessing and prediction apply the same one.
        stain: ``"macenko"`` or ``"reinhard"``: a stain normaliser fitted on the training
            tiles, stored in the plans and applied by preprocessing and prediction alike
            (``medseg.planning.slide_colour``). Either way the plans keep colour as colour
            (``rgb`` normalisation) and use the ``pathology`` augmentation unless the choices
            name another.
        overwrite: replace the tiles, plans and splits written before.
        **plan_options: passed to ``medseg.planning.steps.plan`` (``device``,
            ``memory_gb``, ``time_budget_s``, ``choices``, ``jobs``, ``progress``, ...).
            With ``variant`` and tiles already in ``RESULTS/tiles``, the tiles are kept and
            only the variant is planned.

    Raises:
        DatasetError: a bad slide dataset or slide.
        OverwriteError: ``RESULTS/plans.json`` exists and ``overwrite`` is False (checked
            before any tile is written).
    """
    results = Path(results)
    tiles = results / "tiles"
    if plan_options.get("variant") is not None and (tiles / "dataset.json").exists():
        # a variant of plans made before: the same tiles, planned again with other choices
        return plan(tiles, results, overwrite=overwrite, **plan_options)
    check_writable(results / "plans.json", overwrite=overwrite)
    ds = load_slide_dataset(dataset)
    extract_tiles(
        ds,
        tiles,
        mpp=mpp,
        tile_size=tile_size,
        tiles_per_slide=tiles_per_slide,
        foreground_fraction=foreground_fraction,
        seed=seed,
        overwrite=overwrite,
    )
    plans = plan(tiles, results, overwrite=overwrite, **plan_options)
    choices = plan_options.get("choices")
    plans = colour_plans(
        plans, tiles, stain=stain, augmentation=getattr(choices, "augmentation", None)
    )
    plans.to_json(results / "plans.json")
    write_json_atomic(results / "splits.json", slide_splits(slide_groups(tiles)))
    write_json_atomic(
        results / SLIDE_FILE,
        {
            "slide": {
                "mpp": float(mpp),
                "tile_size": int(tile_size),
                "tiles_per_slide": int(tiles_per_slide),
                "foreground_fraction": float(foreground_fraction),
                "seed": int(seed),
                "source": str(Path(dataset).resolve()),
                "tiles": str(tiles.resolve()),
            }
        },
    )
    return plans


def slide_splits(groups: dict[str, list[str]]) -> list[dict[str, list[str]]]:
    """Cross-validation folds of whole slides: ``[{"train": tile ids, "val": tile ids}]``.

    Slides are shuffled and split like ``medseg.training.splits.make_splits`` splits cases.

    Example:
        >>> folds = slide_splits({"a": ["a_t0"], "b": ["b_t0", "b_t1"]})
        >>> len(folds), sorted(len(f["val"]) for f in folds)
        (2, [1, 2])

    Raises:
        ConfigError: fewer than 2 slides.
    """
    slides = sorted(groups)
    if len(slides) < 2:
        raise ConfigError(f"cross-validation needs at least 2 slides, got {len(slides)}")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(slides))
    everything = sorted(t for s in slides for t in groups[s])
    folds = []
    for part in np.array_split(order, min(NUM_FOLDS, len(slides))):
        val = sorted(t for i in part for t in groups[slides[i]])
        folds.append({"train": sorted(set(everything) - set(val)), "val": val})
    return folds


def read_slide_record(results: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``slide`` record of ``RESULTS/slide.json`` (None: the results are not of slides)."""
    import json

    path = Path(results) / SLIDE_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("slide"), dict):
        raise ConfigError(f'{path}: expected {{"slide": {{...}}}}')
    return data["slide"]
