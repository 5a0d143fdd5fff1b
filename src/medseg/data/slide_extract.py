"""Slide dataset -> a regular 2D medseg dataset of tiles, which plan/preprocess/train read as is.

``extract_tiles(dataset, out_dir, mpp=1.0, tile_size=512, tiles_per_slide=64)`` draws tiles
with ``TileSampler`` from every labelled slide and writes the nnU-Net v2 layout
(``medseg.data.dataset``)::

    OUT/imagesTr/<slide>_t0000_0000.nii.gz   R   (NIfTI: spacing mpp / 1000 mm on both axes)
    OUT/imagesTr/<slide>_t0000_0001.nii.gz   G
    OUT/imagesTr/<slide>_t0000_0002.nii.gz   B
    OUT/labelsTr/<slide>_t0000.nii.gz
    OUT/tiles.csv       case, slide, y, x (level-0 top-left corner), centred_on
    OUT/dataset.json    channel_names R, G, B; the slide dataset's labels; and a
                        "slide_tiles" record (source, mpp, tile_size, ..., slide -> tile ids)

With ``file_ending=".png"`` each tile is one RGB picture ``<slide>_t0000_0000.png`` (pictures
carry no spacing: 1 mm per pixel). Each slide draws from its own seed (``seed`` and its
index), so adding slides does not change the tiles of the others.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medseg.data.slide_dataset import SlideDataset, open_slide_case
from medseg.data.slide_tiles import Tile, TileSampler
from medseg.data.slide_tissue import tissue_mask
from medseg.errors import ConfigError, DatasetError, OverwriteError
from medseg.fileutil import write_json_atomic, write_text_atomic
from medseg.io import Image, write_image

__all__ = ["TILES_KEY", "extract_tiles", "slide_groups"]

TILES_KEY = "slide_tiles"  # the dataset.json record of where the tiles came from
StainNormalizer = Callable[[np.ndarray], np.ndarray]


def extract_tiles(
    dataset: SlideDataset,
    out_dir: str | os.PathLike[str],
    *,
    mpp: float,
    tile_size: int = 512,
    tiles_per_slide: int = 64,
    foreground_fraction: float = 0.33,
    seed: int = 0,
    stain_normalizer: StainNormalizer | None = None,
    file_ending: str = ".nii.gz",
    overwrite: bool = False,
) -> Path:
    """Write ``tiles_per_slide`` tiles of every slide as a 2D dataset in ``out_dir``.

    Args:
        dataset: from ``load_slide_dataset``; every slide must be labelled.
        out_dir: the tile dataset folder (created).
        mpp: the tiles' µm per pixel.
        tile_size: tile side in pixels.
        tiles_per_slide: tiles drawn per slide.
        foreground_fraction: share of tiles centred on labelled foreground.
        seed: the random seed.
        stain_normalizer: applied to every tile: a fitted ``medseg.transforms``
            normaliser (``MacenkoNormalizer``, ``ReinhardNormalizer``) or any function of an
            ``(H, W, 3)`` uint8 tile (None: none); recorded in ``dataset.json``.
        file_ending: ``".nii.gz"`` (spacing kept) or ``".png"``.
        overwrite: replace a tile dataset written before (only one with a ``slide_tiles``
            record; any other folder is never emptied).

    Returns:
        ``out_dir``.

    Raises:
        ConfigError: bad numbers or ``file_ending``.
        DatasetError: an unlabelled slide, a slide without tissue, bad labels.
        OverwriteError: ``out_dir`` holds files and ``overwrite`` is False.
    """
    out = Path(out_dir)
    _check_options(mpp, tile_size, tiles_per_slide, file_ending)
    unlabelled = [str(c.image) for c in dataset.cases if not c.is_labelled]
    if unlabelled:
        raise DatasetError(
            f"{dataset.root / 'dataset.json'}: slide(s) without 'label' or 'annotations' cannot "
            f"give training tiles: {', '.join(unlabelled[:5])}"
        )
    _prepare(out, overwrite)
    rows: list[list[object]] = []
    for index, case in enumerate(dataset.cases):
        slide_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        with open_slide_case(dataset, case) as opened:
            sampler = TileSampler(
                opened.slide,
                mpp=mpp,
                tile_size=tile_size,
                tissue=tissue_mask(opened.slide),
                labels=opened.labels,
                label_downsample=opened.label_downsample,
                foreground_fraction=foreground_fraction,
                foreground_labels=dataset.foreground_labels,
                seed=slide_seed,
            )
            for k in range(tiles_per_slide):
                tile = sampler.sample()
                tile_id = f"{case.case_id}_t{k:04d}"
                _write_tile(out, tile_id, tile, mpp, file_ending, stain_normalizer)
                rows.append([tile_id, case.case_id, tile.y, tile.x, tile.centred_on])
    options = {
        "mpp": mpp,
        "tile_size": tile_size,
        "tiles_per_slide": tiles_per_slide,
        "foreground_fraction": foreground_fraction,
        "seed": seed,
        "stain_normalizer": None if stain_normalizer is None else _describe(stain_normalizer),
    }
    _write_index(out, dataset, rows, file_ending, options)
    return out


def slide_groups(tile_dataset: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Slide id -> its tile case ids, from a tile dataset's ``dataset.json`` (cross-validation
    must keep the tiles of one slide in one fold)."""
    import json

    path = Path(tile_dataset) / "dataset.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    record = meta.get(TILES_KEY) if isinstance(meta, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("slides"), dict):
        raise DatasetError(f"{path}: not a tile dataset written by extract_tiles")
    return {str(k): [str(t) for t in v] for k, v in record["slides"].items()}


def _check_options(mpp: float, tile_size: int, tiles_per_slide: int, ending: str) -> None:
    if not (isinstance(mpp, int | float) and np.isfinite(mpp) and mpp > 0):
        raise ConfigError(f"mpp must be a positive number of microns per pixel, got {mpp!r}")
    if int(tile_size) < 8:
        raise ConfigError(f"tile_size must be >= 8 pixels, got {tile_size}")
    if int(tiles_per_slide) < 1:
        raise ConfigError(f"tiles_per_slide must be >= 1, got {tiles_per_slide}")
    if ending not in (".nii.gz", ".png"):
        raise ConfigError(f"file_ending must be .nii.gz or .png, got {ending!r}")


def _prepare(out: Path, overwrite: bool) -> None:
    """An empty ``out`` (created); a previous tile dataset is removed with ``overwrite``."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OverwriteError(
                f"{out}: already holds files; pass --overwrite to replace the tiles"
            )
        try:
            slide_groups(out)
        except (DatasetError, OSError, ValueError) as err:
            raise OverwriteError(
                f"{out}: holds files but no tile dataset written by medseg; it is not emptied, "
                "choose another folder"
            ) from err
        for name in ("imagesTr", "labelsTr"):
            shutil.rmtree(out / name, ignore_errors=True)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)


def _write_tile(
    out: Path,
    tile_id: str,
    tile: Tile,
    mpp: float,
    ending: str,
    normalizer: StainNormalizer | None,
) -> None:
    image = tile.image[..., :3]
    if normalizer is not None:
        image = _normalised(normalizer, image)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    label = tile.label.astype(np.uint8)  # type: ignore[union-attr]
    if ending == ".png":
        spacing = (1.0, 1.0)
        write_image(
            Image(np.moveaxis(image, -1, 0), spacing),
            out / "imagesTr" / f"{tile_id}_0000.png",
            overwrite=True,
        )
    else:
        spacing = (mpp / 1000.0, mpp / 1000.0)  # µm per pixel -> mm
        for c in range(3):
            write_image(
                Image(np.ascontiguousarray(image[..., c]), spacing),
                out / "imagesTr" / f"{tile_id}_{c:04d}{ending}",
                overwrite=True,
            )
    write_image(Image(label, spacing), out / "labelsTr" / f"{tile_id}{ending}", overwrite=True)


def _write_index(
    out: Path,
    dataset: SlideDataset,
    rows: list[list[object]],
    ending: str,
    options: dict[str, object],
) -> None:
    per_slide: dict[str, list[str]] = {}
    for tile_id, slide_id, *_ in rows:
        per_slide.setdefault(str(slide_id), []).append(str(tile_id))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case", "slide", "y", "x", "centred_on"])
    writer.writerows(rows)
    write_text_atomic(out / "tiles.csv", buffer.getvalue())
    channels = {"0": "R", "1": "G", "2": "B"}
    write_json_atomic(
        out / "dataset.json",
        {
            "name": f"{dataset.name}_tiles",
            "channel_names": channels,
            "labels": dataset.labels,
            "numTraining": len(rows),
            "file_ending": ending,
            TILES_KEY: {"source": str(dataset.root.resolve()), "slides": per_slide, **options},
        },
    )


def _normalised(normalizer: StainNormalizer, image: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) uint8 stain-normalised: a ``medseg.transforms`` normaliser (Macenko,
    Reinhard: ``normalize_array`` on ``(3, H, W)`` floats in 0..255), else ``normalizer(image)``."""
    if hasattr(normalizer, "normalize_array"):
        channels_first = np.moveaxis(image, -1, 0).astype(np.float32)
        return np.moveaxis(normalizer.normalize_array(channels_first), 0, -1)
    return np.asarray(normalizer(image))


def _describe(normalizer: StainNormalizer) -> object:
    """The normaliser for the dataset.json record: its ``to_dict()`` if it has one, else its
    name."""
    if hasattr(normalizer, "to_dict"):
        return normalizer.to_dict()
    return getattr(normalizer, "__qualname__", None) or type(normalizer).__name__
