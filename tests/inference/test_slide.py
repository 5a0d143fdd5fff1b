"""Whole-slide inference: the banded stream equals a whole-image sliding window, memory stays
flat as the slide grows, the outputs are pyramidal TIFFs ``open_slide`` reads."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medseg.data.slide_array import ArraySlide
from medseg.errors import ConfigError, OverwriteError
from medseg.inference.slide import predict_slide
from medseg.inference.slide_stream import TileGrid, blend_in_bands
from medseg.inference.sliding_window import gaussian_importance, sliding_window_inference
from medseg.io.slide import open_slide

from .conftest import make_plan, write_checkpoint


def tiny_net(seed: int = 0, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, classes, 3, padding=1)
    ).eval()


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth blobs plus noise, uint8 RGB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = 120 + 80 * np.sin(yy / 9.0) * np.cos(xx / 13.0)
    return np.clip(base[..., None] + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def reference(image: np.ndarray, net: nn.Module, tile: int, overlap: float) -> np.ndarray:
    """``(K, H, W)`` probabilities of the whole image at once."""
    x = torch.from_numpy(np.moveaxis(image, -1, 0).astype(np.float32))[None]
    probs = sliding_window_inference(x, net, (tile, tile), overlap=overlap, sw_batch_size=3)
    return probs[0].numpy()


def read_level0(path: Path) -> np.ndarray:
    with open_slide(path) as slide:
        h, w = slide.levels[0].shape
        return slide.read_region(0, 0, 0, h, w)[..., 0]


@pytest.mark.parametrize("shape", [(150, 200), (40, 70)])
def test_bands_equal_whole_image_sliding_window(shape):
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, *shape)).astype(np.float32)
    net = nn.Conv2d(2, 3, 3, padding=1).eval()
    tile, overlap = 64, 0.3
    grid = TileGrid.build(shape, tile, overlap)
    padded = np.zeros((2, *grid.padded), np.float32)
    padded[:, grid.pad[0] : grid.pad[0] + shape[0], grid.pad[1] : grid.pad[1] + shape[1]] = image

    def predict(corners):
        batch = np.stack([padded[:, y : y + tile, x : x + tile] for y, x in corners])
        with torch.inference_mode():
            return torch.softmax(net(torch.from_numpy(batch)), 1).numpy()

    weight = gaussian_importance((tile, tile)).numpy()
    parts = list(blend_in_bands(grid, predict, weight, num_classes=3, batch_size=2))
    streamed = np.concatenate([p for _, p in parts], axis=1)
    assert [y for y, _ in parts] == list(np.cumsum([0] + [p.shape[1] for _, p in parts])[:-1])
    whole = sliding_window_inference(
        torch.from_numpy(image)[None], net, (tile, tile), overlap=overlap
    )[0].numpy()
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


def test_slide_mask_and_heatmap_equal_whole_image_prediction(tmp_path):
    image = rgb(256, 320)
    net = tiny_net()
    summary = predict_slide(
        net,
        ArraySlide(image, mpp=0.5),
        tmp_path / "mask.ome.tif",
        tile_size=64,
        overlap=0.25,
        batch_size=4,
        tissue=False,
        heatmap_path=tmp_path / "heat.tif",
        heatmap_downsample=8,
        device="cpu",
        progress=False,
    )
    probs = reference(image, net, 64, 0.25)
    np.testing.assert_array_equal(read_level0(tmp_path / "mask.ome.tif"), probs.argmax(0))
    foreground = (1 - probs[0]).reshape(32, 8, 40, 8).mean(axis=(1, 3))
    heat = read_level0(tmp_path / "heat.tif").astype(float)
    assert heat.shape == (32, 40)
    assert np.abs(heat - foreground * 255).max() <= 0.51
    assert (
        summary.tiles_processed == summary.tiles_total == 5 * 7
    )  # ceil(192 / 48) + 1 rows, ceil(256 / 48) + 1 cols
    assert summary.shape == (256, 320) and summary.tissue_fraction == 1.0


def test_tissue_masking_equal_inside_tissue_and_glass_outside(tmp_path):
    image = rgb(256, 256, seed=2)
    net = tiny_net(seed=3, classes=2)
    mask = np.zeros((16, 16), bool)  # one mask pixel = 16 x 16 slide pixels
    mask[2:6, 3:7] = True
    summary = predict_slide(
        net,
        ArraySlide(image, mpp=0.5),
        tmp_path / "m.tif",
        tile_size=64,
        overlap=0.25,
        tissue=(mask, 16.0),
        heatmap_path=tmp_path / "h.tif",
        heatmap_downsample=16,
        device="cpu",
        progress=False,
    )
    tissue = np.kron(mask, np.ones((16, 16), bool))
    probs = reference(image, net, 64, 0.25)
    got = read_level0(tmp_path / "m.tif")
    np.testing.assert_array_equal(got[tissue], probs.argmax(0)[tissue])
    assert not got[~tissue].any()
    assert not read_level0(tmp_path / "h.tif")[~mask].any()
    assert 0 < summary.tiles_processed < summary.tiles_total


def test_mask_is_pyramidal_with_the_processing_mpp(tmp_path):
    image = rgb(2048, 1024, seed=4)
    slide = ArraySlide(image, mpp=0.25, downsamples=(1, 2))
    summary = predict_slide(
        tiny_net(),
        slide,
        tmp_path / "m.ome.tif",
        mpp=0.5,
        tile_size=128,
        overlap=0.0,
        batch_size=16,
        tissue=False,
        device="cpu",
        progress=False,
    )
    assert summary.level == 1 and summary.shape == (1024, 512)
    with open_slide(tmp_path / "m.ome.tif") as mask:
        assert mask.levels[0].shape == (1024, 512)
        assert len(mask.levels) >= 2 and mask.levels[1].shape == (512, 256)
        assert mask.mpp == pytest.approx(0.5)
        assert mask.channels == 1 and mask.dtype == np.uint8


def _peak(height: int, width: int, path: Path) -> int:
    """tracemalloc's peak (NumPy and Python allocations) while predicting a slide."""
    slide = ArraySlide(rgb(height, width, seed=5), mpp=0.5)
    tracemalloc.start()
    try:
        predict_slide(tiny_net(), slide, path, tile_size=128, overlap=0.25, batch_size=4,
                      tissue=False, device="cpu", progress=False)  # fmt: skip
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_the_slide_grows(tmp_path):
    _peak(256, 256, tmp_path / "warm.tif")  # one-time allocations (imports, caches)
    small = _peak(1536, 768, tmp_path / "small.tif")
    large = _peak(4608, 768, tmp_path / "large.tif")  # 3x the pixels
    assert large / small < 1.5, (small, large)


def test_results_folder_model_normalises_each_tile_like_preprocessing(tmp_path):
    plan = make_plan(
        configuration="2d", spatial_dims=2, spacing=(1.0, 1.0), patch_size=(32, 32), in_channels=3
    )
    write_checkpoint(tmp_path / "results", plan, 0, seed=7)
    image = rgb(32, 32, seed=6)
    predict_slide(
        tmp_path / "results",
        ArraySlide(image, mpp=0.5),
        tmp_path / "m.tif",
        overlap=0.0,
        tissue=False,
        device="cpu",
        progress=False,
    )
    from medseg.data.preprocess import normalize
    from medseg.inference.ensemble import predict_preprocessed

    from .conftest import make_model

    array = normalize(np.moveaxis(image, -1, 0), ("zscore",) * 3, {})
    probs = predict_preprocessed(
        make_model(plan, 7), plan, array, overlap=0.0, mirror=False, device="cpu"
    )
    values = np.array(sorted(plan.labels.values()))
    np.testing.assert_array_equal(read_level0(tmp_path / "m.tif"), values[probs.argmax(0)])


def test_channel_mismatch_is_one_clear_line(tmp_path):
    plan = make_plan(
        configuration="2d", spatial_dims=2, spacing=(1.0, 1.0), patch_size=(32, 32), in_channels=1
    )
    write_checkpoint(tmp_path / "results", plan, 0, seed=0)
    with pytest.raises(ConfigError, match=r"3 channel\(s\), the model expects 1") as err:
        predict_slide(
            tmp_path / "results",
            ArraySlide(rgb(32, 32)),
            tmp_path / "m.tif",
            tissue=False,
            device="cpu",
            progress=False,
        )
    assert "\n" not in str(err.value)


def test_existing_output_is_not_overwritten(tmp_path):
    (tmp_path / "m.tif").write_bytes(b"x")
    with pytest.raises(OverwriteError, match="--overwrite"):
        predict_slide(
            tiny_net(),
            ArraySlide(rgb(32, 32)),
            tmp_path / "m.tif",
            tissue=False,
            device="cpu",
            progress=False,
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tile_size": 0}, "tile size 0"),
        ({"overlap": 1.0}, "overlap"),
        ({"batch_size": 0}, "batch size"),
        ({"heatmap_downsample": 0}, "heatmap_downsample"),
        ({"mpp": 1.0, "tile_size": 32}, "does not record its microns per pixel"),
    ],
)
def test_bad_options_are_refused(tmp_path, options, message):
    slide = ArraySlide(rgb(32, 32), mpp=None)
    with pytest.raises(ConfigError, match=message):
        predict_slide(
            tiny_net(),
            slide,
            tmp_path / "m.tif",
            tissue=False,
            device="cpu",
            progress=False,
            **options,
        )
