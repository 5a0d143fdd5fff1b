"""Phantom whole-slide images: labels, colours (checked with scikit-image's H&E
deconvolution), exact tissue truth, GeoJSON glands, tile-wise consistency, stains."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from skimage.color import rgb2hed
from skimage.draw import polygon as fill_polygon

from medseg.data.phantoms_slide import (
    SLIDE_LABELS,
    gland_polygons,
    label_path_for,
    phantom_slide,
    tissue_mask_truth,
    write_geojson,
)
from medseg.data.phantoms_slide_model import make_model, render
from medseg.data.phantoms_slide_stain import stain_model
from medseg.errors import ConfigError, OverwriteError
from medseg.io.slide import open_slide

pytest.importorskip("zarr", reason="slide reading needs zarr (pip install medseg[pathology])")

SIZE, MPP, TILE = (1024, 1280), 1.0, 256


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("phantom")
    info = phantom_slide(root / "p.ome.tif", size=SIZE, mpp=MPP, seed=3, tile=TILE)
    rgb = tifffile.imread(info.path)
    labels = tifffile.imread(info.label_path)
    return info, rgb, labels


def test_slide_and_label_slide_share_the_geometry(slide) -> None:
    info, rgb, labels = slide
    assert info.label_path == label_path_for(info.path)
    with open_slide(info.path) as image, open_slide(info.label_path) as mask:
        assert [lv.shape for lv in image.levels] == [lv.shape for lv in mask.levels]
        assert [lv.shape for lv in image.levels] == info.levels
        assert image.mpp == pytest.approx(MPP) and mask.mpp == pytest.approx(MPP)
        assert image.channels == 3 and mask.channels == 1
    assert rgb.shape == (*SIZE, 3) and labels.shape == SIZE
    assert info.labels == SLIDE_LABELS == {"background": 0, "tissue": 1, "gland": 2, "nucleus": 3}
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert info.n_glands >= 1 and info.n_nuclei > 100


def test_colours_follow_the_stains(slide) -> None:
    _, rgb, labels = slide
    hed = rgb2hed(rgb)  # Ruifrok-Johnston colour deconvolution, an independent reference
    haem, eosin = hed[..., 0], hed[..., 1]
    glass, stroma, nuclei = labels == 0, labels == 1, labels == 3
    assert rgb[glass].mean() > 240  # white glass
    assert haem[nuclei].mean() > haem[stroma].mean() + 0.05  # nuclei are haematoxylin
    assert eosin[stroma].mean() > eosin[glass].mean() + 0.02  # stroma is eosin
    stroma_rgb = rgb[stroma].mean(axis=0)
    assert stroma_rgb[1] < stroma_rgb[0] and stroma_rgb[1] < stroma_rgb[2]  # pink
    nuclei_rgb = rgb[nuclei].mean(axis=0)
    assert nuclei_rgb[2] > nuclei_rgb[0] and nuclei_rgb.mean() < stroma_rgb.mean()  # blue-dark


def test_tissue_truth_is_exact_at_level0_and_matches_lower_levels(slide) -> None:
    info, _, labels = slide
    np.testing.assert_array_equal(tissue_mask_truth(info), labels > 0)
    truth = tissue_mask_truth(info, downsample=4)
    level2 = tifffile.imread(info.label_path, level=2) > 0
    assert truth.shape == level2.shape == (256, 320)
    dice = 2 * (truth & level2).sum() / (truth.sum() + level2.sum())
    assert dice > 0.97


def test_regions_render_the_same_whatever_the_tiling(slide) -> None:
    info, _, labels = slide
    model = make_model(info.shape, info.mpp, info.seed)
    region, _, _ = render(model, 200, 300, 500, 700)  # one call across several tiles
    np.testing.assert_array_equal(region, labels[200:700, 300:1000])


def test_glands_geojson_outlines_the_gland_labels(slide, tmp_path) -> None:
    info, _, labels = slide
    polygons = gland_polygons(info)
    path = write_geojson(tmp_path / "g.geojson", polygons)
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == info.n_glands
    feature = data["features"][0]
    assert feature["properties"]["classification"] == {"name": "gland"}
    ring = np.asarray(feature["geometry"]["coordinates"][0])
    assert (ring[0] == ring[-1]).all() and len(ring) == 33
    drawn = np.zeros(labels.shape, bool)
    for outline in polygons:  # (x, y) pixels -> rows, columns
        rr, cc = fill_polygon(outline[:, 1], outline[:, 0], labels.shape)
        drawn[rr, cc] = True
    assert drawn[labels == 2].mean() > 0.98  # every gland pixel lies in an outline
    assert np.isin(labels[drawn], [2, 3]).mean() > 0.97  # outlines hold gland (+ rim nuclei)
    with pytest.raises(OverwriteError):
        write_geojson(path, polygons)


def test_same_seed_same_slide_other_stain_same_labels(slide, tmp_path) -> None:
    info, rgb, labels = slide
    again = phantom_slide(
        tmp_path / "a.tif", size=SIZE, mpp=MPP, seed=3, tile=TILE, stain="shifted"
    )
    np.testing.assert_array_equal(tifffile.imread(again.label_path), labels)
    shifted = tifffile.imread(again.path)
    stroma = labels == 1
    assert np.abs(shifted[stroma].mean(axis=0) - rgb[stroma].mean(axis=0)).max() > 10
    other = make_model(info.shape, info.mpp, seed=4)
    assert not np.array_equal(render(other, 0, 0, 512, 512)[0], labels[:512, :512])


def test_stain_models() -> None:
    default = stain_model("default")
    assert np.allclose(np.linalg.norm(default.h), 1) and np.allclose(np.linalg.norm(default.e), 1)
    assert np.allclose(default.e, np.array([0.07, 0.99, 0.11]) / np.linalg.norm([0.07, 0.99, 0.11]))
    assert stain_model(7) == stain_model(7) != stain_model(8)
    custom = stain_model({"h": [1, 0, 0], "h_scale": 2.0})
    assert custom.h == (1.0, 0.0, 0.0) and custom.h_scale == 2.0
    # Beer-Lambert: 1 unit of a pure-red-absorbing stain leaves red at 255 exp(-(1 + bg))
    pixel = custom.rgb(np.array([0.5]), np.array([0.0]))[0]
    assert pixel[0] == round(255 * np.exp(-(1.0 + custom.background)))
    with pytest.raises(ConfigError, match="stain must be"):
        stain_model("purple")
    with pytest.raises(ConfigError, match=r"unknown stain keys \['x'\]"):
        stain_model({"x": 1})


def test_bad_sizes_and_existing_files_are_refused(slide, tmp_path) -> None:
    info, _, _ = slide
    with pytest.raises(ConfigError, match="slide size"):
        phantom_slide(tmp_path / "s.tif", size=(8, 8))
    with pytest.raises(ConfigError, match="mpp"):
        phantom_slide(tmp_path / "s.tif", size=(64, 64), mpp=0)
    with pytest.raises(OverwriteError, match="already exists"):
        phantom_slide(info.path, size=(64, 64))


def test_object_lists_of_a_huge_slide_are_small() -> None:
    model = make_model((12_000, 12_000), 0.5, seed=0)
    nbytes = model.nuclei.nbytes + model.glands.nbytes + model.blobs.nbytes
    assert nbytes < 0.02 * 12_000 * 12_000 * 3  # < 2 % of the RGB level 0
    labels, _, _ = render(model, 6000, 6000, 256, 256)
    assert labels.shape == (256, 256)
