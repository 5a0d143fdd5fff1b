"""Phantom whole-slide images: H&E-like tissue with exact labels, written tile by tile.

``phantom_slide`` writes a pyramidal TIFF (``medseg.io.slide_writer``) of pink eosin stroma
blobs on white glass, dense purple haematoxylin nuclei and glands (a pale lumen in a rim
lined by nuclei), and a label slide of the same geometry::

    0 background (glass), 1 tissue (stroma), 2 gland (rim and lumen), 3 nucleus

Colours follow a stain model (``phantoms_slide_stain``: Beer-Lambert, Ruifrok H&E vectors;
presets ``"default"``, ``"shifted"``, a seed or a dict) with stroma fibre texture and
per-pixel noise. Everything is drawn region by region from seeded object lists
(``phantoms_slide_model``), so a 50,000 x 50,000 slide needs a few tiles of memory. The same
``seed`` gives the same slide; the object geometry depends on (size, mpp, seed), not on the
stain, so two stains of one seed share their labels.

Ground truth for tests: ``tissue_mask_truth`` (the exact tissue mask at any downsample) and
``gland_polygons`` / ``write_geojson`` (QuPath-style GeoJSON of the glands).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from medseg.data.phantoms_slide_model import SlideModel, blob_mask, make_model, render
from medseg.data.phantoms_slide_stain import StainModel, stain_model
from medseg.errors import ConfigError
from medseg.fileutil import check_writable, write_text_atomic
from medseg.io.slide_writer import write_pyramidal_tiff

__all__ = [
    "SLIDE_LABELS",
    "SlideInfo",
    "gland_polygons",
    "label_path_for",
    "phantom_slide",
    "tissue_mask_truth",
    "write_geojson",
]

SLIDE_LABELS = {"background": 0, "tissue": 1, "gland": 2, "nucleus": 3}
_NOISE = 0.035  # std of the per-pixel concentration noise


@dataclass(frozen=True)
class SlideInfo:
    """What ``phantom_slide`` wrote (``to_dict`` gives readable JSON)."""

    path: Path
    label_path: Path
    shape: tuple[int, int]
    mpp: float
    seed: int
    tile: int
    levels: list[tuple[int, int]]
    stain: dict
    labels: dict[str, int] = field(default_factory=lambda: dict(SLIDE_LABELS))
    n_blobs: int = 0
    n_glands: int = 0
    n_nuclei: int = 0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["path"], out["label_path"] = str(self.path), str(self.label_path)
        return out


@functools.lru_cache(maxsize=4)
def _model(shape: tuple[int, int], mpp: float, seed: int) -> SlideModel:
    return make_model(shape, mpp, seed)


def label_path_for(path: str | os.PathLike[str]) -> Path:
    """``slide.ome.tif`` -> ``slide_labels.ome.tif`` (the label slide beside a slide).

    Example:
        >>> label_path_for("a/b.ome.tif").as_posix()
        'a/b_labels.ome.tif'
    """
    path = Path(path)
    stem, _, suffix = path.name.partition(".")
    return path.with_name(f"{stem}_labels.{suffix}" if suffix else f"{stem}_labels")


def _check(size: tuple[int, int], mpp: float, tile: int) -> tuple[int, int]:
    if len(size) != 2 or min(int(s) for s in size) < 16:
        raise ConfigError(f"slide size must be (height, width), each >= 16 pixels, got {size}")
    if not (np.isfinite(mpp) and 0.05 <= mpp <= 50):
        raise ConfigError(f"mpp must be in [0.05, 50] microns per pixel, got {mpp}")
    if tile < 16 or tile % 16:
        raise ConfigError(f"tile must be a multiple of 16, got {tile}")
    return int(size[0]), int(size[1])


class _RgbTiles:
    """``read(y, x, h, w)`` of the colour slide: labels -> concentrations -> texture -> RGB."""

    def __init__(self, model: SlideModel, stain: StainModel, mpp: float, seed: int) -> None:
        self.model, self.stain, self.seed = model, stain, seed
        rng = np.random.default_rng([seed, 0xF1B])
        self.waves = [
            (rng.uniform(0, np.pi), rng.uniform(12, 40) / mpp, rng.uniform(0, 6.3))
            for _ in range(3)
        ]

    def __call__(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        labels, conc_h, conc_e = render(self.model, y, x, h, w)
        tissue = labels > 0
        if not tissue.any():
            return self.stain.rgb(conc_h, conc_e)
        stroma = labels == 1
        conc_e[stroma] *= 1 + 0.25 * self._fibres(y, x, h, w)[stroma]
        rng = np.random.default_rng([self.seed, y, x, 0x7015E])
        noise = rng.standard_normal((2, h, w), dtype=np.float32) * np.float32(_NOISE)
        conc_h = np.where(tissue, np.maximum(conc_h + noise[0], 0), 0)
        conc_e = np.where(tissue, np.maximum(conc_e + noise[1], 0), 0)
        return self.stain.rgb(conc_h, conc_e)

    def _fibres(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Wavy stroma texture in [-1, 1]: plane waves, separable as sin(a+b) products."""
        yy = np.arange(y, y + h, dtype=np.float64)[:, None]
        xx = np.arange(x, x + w, dtype=np.float64)[None, :]
        out = np.zeros((h, w), dtype=np.float32)
        for theta, wavelength, phase in self.waves:
            k = 2 * np.pi / wavelength
            ax, by = k * np.cos(theta) * xx, k * np.sin(theta) * yy + phase
            out += (np.sin(by) * np.cos(ax) + np.cos(by) * np.sin(ax)).astype(np.float32)
        return out / len(self.waves)


def phantom_slide(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] = (8192, 8192),
    mpp: float = 0.5,
    stain: str | int | dict = "default",
    seed: int = 0,
    tile: int = 512,
    label_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    layout: str = "ome",
    write_labels: bool = True,
) -> SlideInfo:
    """Write a phantom H&E slide and its label slide (see the module docstring).

    Args:
        path: output ``.tif``/``.ome.tif`` (RGB uint8 pyramid).
        size: level-0 ``(height, width)`` in pixels.
        mpp: microns per pixel at level 0 (recorded in the files; sets object sizes).
        stain: ``"default"``, ``"shifted"``, an int seed or a dict (``stain_model``).
        seed: geometry and noise seed.
        tile: tile edge in pixels (multiple of 16).
        label_path: the label slide (uint8, same levels); None: ``label_path_for(path)``.
        overwrite: replace existing files.
        layout: ``"ome"`` (SubIFD pyramid) or ``"pages"`` (OpenSlide reads every level).
        write_labels: False: skip the label slide (``label_path`` is then not written).

    Returns:
        SlideInfo: paths, geometry, levels, label scheme, stain and object counts.

    Raises:
        ConfigError: bad size, mpp, tile or stain. OverwriteError: a file exists.
    """
    shape = _check(size, mpp, tile)
    stain_params = stain_model(stain)
    label_path = label_path_for(path) if label_path is None else Path(label_path)
    check_writable(path, overwrite=overwrite)
    if write_labels:
        check_writable(label_path, overwrite=overwrite)
    model = _model(shape, float(mpp), int(seed))
    common = {"tile": tile, "mpp": mpp, "overwrite": overwrite, "layout": layout}
    levels = write_pyramidal_tiff(
        path, shape, np.uint8, _RgbTiles(model, stain_params, mpp, seed), channels=3, **common
    )
    if write_labels:
        write_pyramidal_tiff(
            label_path,
            shape,
            np.uint8,
            lambda y, x, h, w: render(model, y, x, h, w)[0],
            channels=1,
            resample="mode",
            **common,
        )
    return SlideInfo(
        path=Path(path),
        label_path=label_path,
        shape=shape,
        mpp=float(mpp),
        seed=int(seed),
        tile=tile,
        levels=levels,
        stain=stain_params.to_dict(),
        n_blobs=len(model.blobs),
        n_glands=len(model.glands),
        n_nuclei=len(model.nuclei),
    )


def tissue_mask_truth(info: SlideInfo, downsample: float = 1.0) -> np.ndarray:
    """The exact tissue mask (labels > 0) sampled at pixel centres of a downsampled grid.

    Pixel ``(i, j)`` of the result covers level-0 pixels around
    ``((i + 0.5) d - 0.5, (j + 0.5) d - 0.5)``, its shape ``ceil(shape / d)`` (the pyramid's
    level shapes for ``d = 2^k``). ``d = 1`` equals ``labels > 0`` of the label slide.

    Returns:
        ``(ceil(h / d), ceil(w / d))`` bool.
    """
    if not (np.isfinite(downsample) and downsample >= 1):
        raise ConfigError(f"downsample must be >= 1, got {downsample}")
    h, w = info.shape
    model = _model(tuple(info.shape), info.mpp, info.seed)
    rows, cols = int(np.ceil(h / downsample)), int(np.ceil(w / downsample))
    yy = (np.arange(rows) + 0.5) * downsample - 0.5
    xx = (np.arange(cols) + 0.5) * downsample - 0.5
    out = np.zeros((rows, cols), dtype=bool)
    band = max(1, 2**22 // max(cols, 1))
    for r in range(0, rows, band):
        out[r : r + band] = blob_mask(model.blobs, yy[r : r + band, None], xx[None, :])
    return out


def gland_polygons(info: SlideInfo, *, vertices: int = 32) -> list[np.ndarray]:
    """Outlines of the glands: ``(vertices, 2)`` arrays of ``(x, y)`` level-0 pixels each."""
    model = _model(tuple(info.shape), info.mpp, info.seed)
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    out = []
    for cy, cx, a, b, angle, _ in model.glands:
        u, v = a * np.cos(t), b * np.sin(t)
        c, s = np.cos(angle), np.sin(angle)
        out.append(np.column_stack([cx + u * c - v * s, cy + u * s + v * c]))
    return out


def write_geojson(
    path: str | os.PathLike[str],
    polygons: list[np.ndarray],
    *,
    name: str = "gland",
    overwrite: bool = False,
) -> Path:
    """Write polygons as a QuPath-style GeoJSON FeatureCollection (atomically).

    Each polygon ``(n, 2)`` of ``(x, y)`` level-0 pixels becomes a closed ring in a Feature
    with ``properties = {"objectType": "annotation", "classification": {"name": name}}``.
    """
    path = check_writable(path, overwrite=overwrite)
    features = []
    for polygon in polygons:
        ring = [[round(float(px), 2), round(float(py), 2)] for px, py in np.asarray(polygon)]
        ring.append(ring[0])
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"objectType": "annotation", "classification": {"name": name}},
            }
        )
    write_text_atomic(path, json.dumps({"type": "FeatureCollection", "features": features}))
    return path
