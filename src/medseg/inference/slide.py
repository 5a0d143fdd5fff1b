"""Whole-slide inference in bounded memory: a label mask and a heatmap as pyramidal TIFFs.

``predict_slide`` predicts a slide of any size with a trained 2D model (or a bare network):

1. the tissue mask is computed on the thumbnail (``medseg.data.slide_tissue.tissue_mask``);
2. the processing grid is the slide at ``mpp`` microns per pixel, read lazily from the
   pyramid level ``level_for_mpp`` chooses (resampled by ``medseg.data.slide_read.read_tile``,
   as training tiles are, when that level's resolution differs);
3. the sliding-window tiles of the *whole* grid (``sliding_window_inference``'s layout,
   Gaussian blending) are predicted in horizontal bands (``slide_stream.blend_in_bands``),
   skipping every tile that touches no tissue, ``batch_size`` tiles per forward pass;
4. finished rows become label tiles (argmax -> the plan's label values, glass = 0) streamed
   to ``write_pyramidal_tiff``; the foreground probability (``1 - p(background)``, glass = 0)
   is averaged over ``heatmap_downsample`` blocks into a uint8 0..255 heatmap TIFF.

Only one band (``tile_size`` rows of ``(K + 1)`` float32 planes of the grid's width) and one
row of output tiles are in memory, whatever the slide's height; the result equals a
whole-image ``sliding_window_inference`` on slides small enough to hold (tests check it).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medseg.device import resolve_device
from medseg.errors import ConfigError
from medseg.fileutil import check_writable
from medseg.inference.slide_grid import (
    ProcessingGrid,
    batch_predictor,
    processing_grid,
    slide_tissue,
    tissue_lookup,
)
from medseg.inference.slide_model import SlideModel, StainNormalizer, load_slide_model
from medseg.inference.slide_outputs import Heatmap, label_tiles
from medseg.inference.slide_stream import TileGrid, blend_in_bands
from medseg.inference.sliding_window import gaussian_importance
from medseg.io.slide import Slide, open_slide
from medseg.io.slide_writer import write_pyramidal_tiff
from medseg.planning.slide import read_slide_record

#: Tile side of the written TIFFs.
WRITER_TILE = 512


@dataclass(frozen=True)
class SlideSummary:
    """What ``predict_slide`` did.

    Attributes:
        mask_path, heatmap_path: the written files (heatmap None when not asked).
        shape: the mask ``(H, W)`` (the slide at ``mpp``); mpp: its microns per pixel.
        level: the pyramid level read; tile_size, overlap: the sliding window.
        tiles_total, tiles_processed: tiles of the whole grid / touching tissue.
        tissue_fraction: share of the thumbnail that is tissue.
        seconds, tiles_per_second: wall time of the whole call, processed tiles per second.
        peak_rss_mb: the process's peak resident memory (``getrusage``; Python, NumPy and
            torch together) at the end, MiB.
    """

    mask_path: str
    heatmap_path: str | None
    shape: tuple[int, int]
    mpp: float | None
    level: int
    tile_size: int
    overlap: float
    tiles_total: int
    tiles_processed: int
    tissue_fraction: float
    seconds: float
    tiles_per_second: float
    peak_rss_mb: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MiB (``ru_maxrss``: KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _check_options(model: SlideModel, slide: Slide, tile: int, overlap: float, batch: int) -> None:
    if model.plan is not None and model.plan.image_channels != slide.channels:
        raise ConfigError(
            f"{slide.path}: the slide has {slide.channels} channel(s), the model expects "
            f"{model.plan.image_channels}"
        )
    if tile < 1 or tile % model.divisor:
        raise ConfigError(
            f"tile size {tile} must be a positive multiple of the network's divisor {model.divisor}"
        )
    if not 0 <= overlap < 1:
        raise ConfigError(f"overlap must lie in [0, 1), got {overlap}")
    if batch < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch}")


def predict_slide(
    model_or_checkpoint_folder: nn.Module | str | os.PathLike[str],
    slide_path: str | os.PathLike[str] | Slide,
    out_mask_path: str | os.PathLike[str],
    *,
    mpp: float | None = None,
    slide_mpp: float | None = None,
    tile_size: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    heatmap_path: str | os.PathLike[str] | None = None,
    heatmap_downsample: int = 8,
    stain_normalizer: StainNormalizer | None = None,
    tissue: bool | tuple[np.ndarray, float] = True,
    configuration: str = "2d",
    folds: list[int | str] | None = None,
    mirror: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> SlideSummary:
    """Predict a whole slide tile by tile in bounded memory (module docstring).

    Args:
        model_or_checkpoint_folder: a results folder (every trained fold of
            ``configuration``, or ``folds``, ensembled; ``mirror``: test-time mirroring) or a
            network mapping ``(B, C, h, w)`` float32 pixels to ``(B, K, h, w)`` logits (no
            normalisation, labels ``0..K-1``).
        slide_path: an RGB slide file (``open_slide``; ``slide_mpp`` supplies a missing mpp)
            or an open ``Slide``.
        out_mask_path: the label mask: a pyramidal (OME-)TIFF, uint8, at ``mpp``.
        mpp: processing resolution in microns per pixel (None: the training tiles'
            resolution of a results folder planned from slides, ``RESULTS/slide.json``;
            else the slide's level 0).
        tile_size, overlap, batch_size: tile side (default: the plan's patch; 512 for a
            bare network), overlap in ``[0, 1)``, tiles per forward pass.
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available).
        heatmap_path, heatmap_downsample: also write the foreground probability (uint8,
            0..255), one pixel per ``heatmap_downsample``^2 mask pixels.
        stain_normalizer: applied to every tile's ``(h, w, C)`` pixels before normalisation.
        tissue: True: detect tissue on the thumbnail; False: the whole slide; or
            ``(mask, downsample)`` (a mask pixel covers ``downsample`` level-0 pixels).
        overwrite: replace existing outputs. progress: a progress bar over tiles.

    Returns:
        A :class:`SlideSummary`.

    Raises:
        ConfigError: bad options, ``mpp`` on a slide without mpp, channels that differ from
            the model's, or no trained model. OverwriteError: an output exists.
        ImageIOError: the slide cannot be read.
    """
    start = time.perf_counter()
    if mpp is None and isinstance(model_or_checkpoint_folder, (str, os.PathLike)):
        record = read_slide_record(model_or_checkpoint_folder)
        mpp = float(record["mpp"]) if record else None  # the resolution the model learnt at
    _check_outputs(out_mask_path, heatmap_path, heatmap_downsample, overwrite=overwrite)
    model = load_slide_model(model_or_checkpoint_folder, device=resolve_device(device),
                             configuration=configuration, folds=folds, mirror=mirror)  # fmt: skip
    own = not isinstance(slide_path, Slide)
    slide = open_slide(slide_path, mpp=slide_mpp) if own else slide_path
    try:
        tile = int(tile_size if tile_size is not None else (model.tile_size or 512))
        _check_options(model, slide, tile, overlap, batch_size)
        run = _Run(model, slide, Path(out_mask_path), heatmap_path, heatmap_downsample,
                   stain_normalizer, batch_size, overwrite, progress)  # fmt: skip
        counts = _stream(run, processing_grid(slide, mpp), tile, overlap, tissue)
    finally:
        if own:
            slide.close()
    seconds = time.perf_counter() - start
    return SlideSummary(
        mask_path=str(out_mask_path),
        heatmap_path=None if heatmap_path is None else str(heatmap_path),
        seconds=seconds,
        tiles_per_second=counts["tiles_processed"] / seconds if seconds > 0 else 0.0,
        peak_rss_mb=peak_rss_mb(), tile_size=tile, overlap=overlap, **counts,
    )  # fmt: skip


def _check_outputs(
    mask: str | os.PathLike[str],
    heatmap: str | os.PathLike[str] | None,
    downsample: int,
    *,
    overwrite: bool,
) -> None:
    for path in (mask, heatmap):
        if path is not None:
            check_writable(path, overwrite=overwrite)
    if downsample < 1:
        raise ConfigError(f"heatmap_downsample must be at least 1, got {downsample}")


@dataclass(frozen=True)
class _Run:
    """What one ``predict_slide`` call predicts with and writes to."""

    model: SlideModel
    slide: Slide
    mask_path: Path
    heatmap_path: str | os.PathLike[str] | None
    heatmap_downsample: int
    stain: StainNormalizer | None
    batch_size: int
    overwrite: bool
    progress: bool


def _stream(
    run: _Run,
    grid: ProcessingGrid,
    tile: int,
    overlap: float,
    tissue: bool | tuple[np.ndarray, float],
) -> dict[str, Any]:
    """Predict and write; return the summary's counts."""
    mask, downsample = slide_tissue(run.slide, tissue)
    touches, tissue_rows = tissue_lookup(grid, mask, downsample)
    tg = TileGrid.build(grid.shape, tile, overlap)
    py, px = tg.pad
    keep = {(y, x) for y in tg.rows for x in tg.cols if touches(y - py, x - px, tile)}
    predict = batch_predictor(grid, tg, run.model, run.stain)
    num_classes = (
        run.model.plan.num_classes
        if run.model.plan is not None
        else int(predict([min(keep, default=(0, 0))]).shape[1])  # a bare network: probe once
    )
    values = np.asarray(run.model.label_values(num_classes), dtype=np.uint8)
    heatmap = (
        Heatmap(grid.shape, run.heatmap_downsample, run.mask_path.resolve().parent)
        if run.heatmap_path is not None
        else None
    )
    bar = tqdm(total=len(keep), desc="slide tiles", unit="tile", disable=not run.progress)
    try:
        rows = blend_in_bands(
            tg,
            predict,
            gaussian_importance((tile, tile)).numpy(),
            num_classes=num_classes,
            batch_size=run.batch_size,
            keep_tile=lambda y, x: (y, x) in keep,
            on_batch=bar.update,
        )
        tiles = label_tiles(
            rows,
            width=grid.shape[1],
            tile=WRITER_TILE,
            values=values,
            tissue_rows=tissue_rows,
            heatmap=heatmap,
        )
        write_pyramidal_tiff(
            run.mask_path,
            grid.shape,
            np.uint8,
            tiles,
            channels=1,
            tile=WRITER_TILE,
            mpp=grid.mpp,
            overwrite=run.overwrite,
        )
        if heatmap is not None and run.heatmap_path is not None:
            hmpp = None if grid.mpp is None else grid.mpp * run.heatmap_downsample
            write_pyramidal_tiff(
                run.heatmap_path,
                heatmap.out_shape,
                np.uint8,
                heatmap.tiles(WRITER_TILE),
                channels=1,
                tile=WRITER_TILE,
                mpp=hmpp,
                resample="mean",
                overwrite=run.overwrite,
            )
    finally:
        bar.close()
        if heatmap is not None:
            heatmap.close()
    return {
        "shape": grid.shape,
        "mpp": grid.mpp,
        "level": grid.level,
        "tiles_total": len(tg),
        "tiles_processed": len(keep),
        "tissue_fraction": float(mask.mean()),
    }
