"""Slide tiles at a requested resolution: resampling against scikit-image, foreground
oversampling, determinism, label slides and GeoJSON labels, the inference grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.data.phantoms_slide import gland_polygons, phantom_slide, write_geojson
from medseg.data.slide_array import ArraySlide
from medseg.data.slide_read import read_tile
from medseg.data.slide_tiles import TileSampler, grid_tiles
from medseg.data.slide_tissue import tissue_mask
from medseg.errors import ConfigError, DatasetError
from medseg.io.geojson import rasterise, read_geojson
from medseg.io.slide import open_slide

LABELS = {"background": 0, "tissue": 1, "gland": 2, "nucleus": 3}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory):
    """A 2048^2 phantom at 0.5 µm/px (levels 1, 2, 4) with glands and nuclei, its GeoJSON."""
    folder = tmp_path_factory.mktemp("tiles")
    info = phantom_slide(folder / "a.tif", size=(2048, 2048), mpp=0.5, seed=0)
    assert info.n_glands >= 2 and info.n_nuclei > 100
    geojson = write_geojson(folder / "a.geojson", gland_polygons(info))
    with open_slide(info.path) as slide:
        tissue = tissue_mask(slide, max_size=512)
    return info, geojson, tissue


def _downscale(crop: np.ndarray, factor: int) -> np.ndarray:
    transform = pytest.importorskip("skimage.transform")
    return np.rint(transform.downscale_local_mean(crop.astype(np.float64), (factor, factor, 1)))


def test_tile_at_mpp_1_is_a_2x_downsample_of_the_level0_crop(phantom) -> None:
    info = phantom[0]
    with open_slide(info.path) as slide:  # read from level 1 (the pyramid's own downsample)
        tile = read_tile(slide, 600, 400, mpp=1.0, tile_size=128)
        crop = slide.read_region(0, 600, 400, 256, 256)
    assert tile.shape == (128, 128, 3) and tile.dtype == np.uint8
    np.testing.assert_array_equal(tile, _downscale(crop, 2))
    flat = ArraySlide(crop, mpp=0.5)  # level 0 only: block means computed from level 0
    np.testing.assert_array_equal(read_tile(flat, 0, 0, mpp=1.0, tile_size=128), tile)


def test_fractional_resolution_is_area_averaged(phantom) -> None:
    transform = pytest.importorskip("skimage.transform")
    with open_slide(phantom[0].path) as slide:
        tile = read_tile(slide, 700, 500, mpp=0.75, tile_size=96)  # 144 level-0 px
        crop = slide.read_region(0, 700, 500, 144, 144)
    reference = transform.resize(crop, (96, 96), anti_aliasing=True, preserve_range=True)
    assert tile.shape == (96, 96, 3)
    assert np.abs(tile - reference).mean() < 4.0  # area vs Gaussian pre-filter: close


def test_label_tiles_take_the_nearest_label() -> None:
    labels = np.random.default_rng(0).integers(0, 4, (64, 64)).astype(np.uint8)
    slide = ArraySlide(labels, mpp=0.5, is_label=True)
    same = read_tile(slide, 8, 4, mpp=0.5, tile_size=16)
    np.testing.assert_array_equal(same, labels[8:24, 4:20])
    half = read_tile(slide, 8, 4, mpp=1.0, tile_size=16)  # the pixel under each centre
    np.testing.assert_array_equal(half, labels[9:40:2, 5:36:2])
    odd = read_tile(slide, 8, 4, mpp=1.5, tile_size=8)  # fractional factor: still labels
    assert set(np.unique(odd)) <= set(np.unique(labels))


def test_same_seed_gives_the_same_tiles_and_another_seed_others(phantom) -> None:
    info, _, tissue = phantom

    def positions(seed: int) -> list[tuple[float, float]]:
        with open_slide(info.path) as slide, open_slide(info.label_path) as labels:
            sampler = TileSampler(
                slide, mpp=1.0, tile_size=64, tissue=tissue, labels=labels, seed=seed
            )
            tiles = sampler.take(6)
        return [(t.y, t.x, int(t.image.sum()), int(t.label.sum())) for t in tiles]

    assert positions(3) == positions(3)
    assert positions(3) != positions(4)


def _fraction(tiles, values: tuple[int, ...]) -> float:
    return float(np.mean([np.isin(t.label, values).mean() for t in tiles]))


def test_foreground_oversampling_raises_the_foreground_share(phantom) -> None:
    info, _, tissue = phantom
    with open_slide(info.path) as slide, open_slide(info.label_path) as labels:
        common = {
            "mpp": 1.0,
            "tile_size": 64,
            "tissue": tissue,
            "labels": labels,
            "foreground_labels": (2, 3),
            "seed": 0,
        }
        plain = TileSampler(slide, foreground_fraction=0.0, **common).take(40)
        oversampled = TileSampler(slide, foreground_fraction=1.0, **common).take(40)
    assert all(t.centred_on == 0 for t in plain)
    assert {t.centred_on for t in oversampled} == {2, 3}  # both classes drawn
    assert _fraction(oversampled, (2, 3)) > 1.5 * _fraction(plain, (2, 3))
    centre_hits = [t.label[32, 32] == t.centred_on for t in oversampled]
    assert np.mean(centre_hits) > 0.8  # centred on a pixel of the chosen class


def test_random_tiles_are_centred_in_tissue(phantom) -> None:
    info, _, tissue = phantom
    with open_slide(info.path) as slide, open_slide(info.label_path) as labels:
        tiles = TileSampler(
            slide,
            mpp=1.0,
            tile_size=32,
            tissue=tissue,
            labels=labels,
            foreground_fraction=0.0,
            seed=1,
        ).take(30)
    assert np.mean([t.label[16, 16] > 0 for t in tiles]) > 0.9


def test_geojson_labels_rasterise_and_oversample_glands(phantom) -> None:
    info, geojson, tissue = phantom
    annotations = read_geojson(geojson, LABELS, slide_shape=info.shape)
    with open_slide(info.path) as slide:
        common = {"mpp": 1.0, "tile_size": 64, "tissue": tissue, "labels": annotations}
        plain = TileSampler(slide, foreground_fraction=0.0, seed=0, **common).take(30)
        glands = TileSampler(slide, foreground_fraction=1.0, seed=0, **common).take(30)
    assert {t.centred_on for t in glands} == {2}
    assert all(t.label[32, 32] == 2 for t in glands)
    assert _fraction(glands, (2,)) > 2 * _fraction(plain, (2,)) + 0.05
    tile = glands[0]
    np.testing.assert_array_equal(tile.label, rasterise(annotations, tile.y, tile.x, 64, 64, 2.0))


def test_a_label_slide_at_half_size_gives_the_same_labels() -> None:
    rng = np.random.default_rng(5)
    full = np.zeros((128, 128), np.uint8)
    full[:, :] = np.kron(rng.integers(0, 3, (16, 16)), np.ones((8, 8), int))
    image = np.full((128, 128, 3), 200, np.uint8)
    image[..., 1] = 100
    slide = ArraySlide(image, mpp=0.5)
    common = {
        "mpp": 1.0,
        "tile_size": 16,
        "tissue": (np.ones((16, 16), bool), 8.0),
        "foreground_fraction": 0.0,
        "seed": 2,
    }  # the same tissue-centred positions
    big = TileSampler(slide, labels=ArraySlide(full, mpp=0.5, is_label=True), **common).take(5)
    small = TileSampler(
        slide,
        label_downsample=2,
        **common,
        labels=ArraySlide(full[1::2, 1::2], mpp=1.0, is_label=True),
    ).take(5)
    for a, b in zip(big, small, strict=True):
        assert (a.y, a.x) == (b.y, b.x)
        np.testing.assert_array_equal(a.label, b.label)


def test_grid_tiles_touch_tissue_and_cover_all_of_it() -> None:
    slide = ArraySlide(np.zeros((100, 90, 3), np.uint8), mpp=0.5)
    mask = np.zeros((25, 23), bool)  # downsample 4: mask pixel (i, j) covers 4x4 level-0 px
    mask[3:6, 2:4] = True
    mask[20, 20] = True
    every = list(grid_tiles(slide, 1.0, 10, overlap=2))
    kept = list(grid_tiles(slide, 1.0, 10, overlap=2, tissue_mask=(mask, 4.0)))
    # 50 x 45 px at mpp 1: rows start 0, 8, ..., 40; columns 0, 8, ..., 32 and 35 (flush)
    assert len(every) == 6 * 6 and every[5].x == 35
    assert 0 < len(kept) < len(every)
    covered = np.zeros((100, 90), bool)
    for t in kept:
        assert t.y0 == 2 * t.y and t.x0 == 2 * t.x
        covered[int(t.y0) : int(t.y0) + 20, int(t.x0) : int(t.x0) + 20] = True
        assert mask[
            int(t.y0) // 4 : (int(t.y0) + 20 + 3) // 4, int(t.x0) // 4 : (int(t.x0) + 20 + 3) // 4
        ].any()
    tissue = np.kron(mask, np.ones((4, 4), bool))[:100, :90]
    assert covered[tissue].all()


def test_bad_sampler_inputs_are_refused(tmp_path: Path) -> None:
    image = np.full((64, 64, 3), 200, np.uint8)
    tissue = (np.ones((8, 8), bool), 8.0)
    with pytest.raises(ConfigError, match="microns per pixel"):
        TileSampler(ArraySlide(image, mpp=None), mpp=1.0, tile_size=16, tissue=tissue)
    with pytest.raises(ConfigError, match="foreground_fraction must be in 0..1"):
        TileSampler(
            ArraySlide(image), mpp=1.0, tile_size=16, tissue=tissue, foreground_fraction=1.5
        )
    with pytest.raises(DatasetError, match="no tissue found"):
        TileSampler(ArraySlide(image), mpp=1.0, tile_size=16, tissue=(np.zeros((8, 8), bool), 8.0))
    with pytest.raises(ConfigError, match="overlap must be in 0..15"):
        list(grid_tiles(ArraySlide(image), 1.0, 16, overlap=16))
