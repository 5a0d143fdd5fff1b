"""Pyramidal TIFF writer: exact levels against scikit-image block means, label modes,
tile-order checks, atomic writes and bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile
from skimage.measure import block_reduce

from medseg.errors import ConfigError, OverwriteError
from medseg.io.slide_writer import level_shapes, write_pyramidal_tiff


def _reader(image: np.ndarray):
    return lambda y, x, h, w: image[y : y + h, x : x + w]


def test_levels_are_rounded_block_means(tmp_path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (512, 768, 3), dtype=np.uint8)
    shapes = write_pyramidal_tiff(
        tmp_path / "a.ome.tif", (512, 768), np.uint8, _reader(image), channels=3, tile=128, mpp=0.5
    )
    assert shapes == [(512, 768), (256, 384), (128, 192), (64, 96)]
    with tifffile.TiffFile(tmp_path / "a.ome.tif") as tif:
        assert tif.is_ome and len(tif.series[0].levels) == 4
        assert tif.series[0].keyframe.is_tiled
    expected = image.astype(np.float64)
    for level, shape in enumerate(shapes):
        got = tifffile.imread(tmp_path / "a.ome.tif", level=level)
        np.testing.assert_array_equal(got, np.rint(expected).astype(np.uint8))
        assert got.shape[:2] == shape
        expected = block_reduce(np.rint(expected), (2, 2, 1), np.mean)


def test_odd_edges_average_only_their_own_pixels(tmp_path) -> None:
    image = np.zeros((33, 18, 1), np.uint8)
    image[32] = 100  # a last row alone in its 2 x 2 blocks
    write_pyramidal_tiff(
        tmp_path / "o.tif", (33, 18), np.uint8, _reader(image), channels=1, tile=16, resample="mean"
    )
    level1 = tifffile.imread(tmp_path / "o.tif", level=1)
    assert level1.shape == (17, 9)
    assert (level1[16] == 100).all() and (level1[:16] == 0).all()


def test_label_levels_take_the_most_frequent_label(tmp_path) -> None:
    labels = np.zeros((32, 32), np.uint8)
    labels[0:2, 0:2] = [[1, 1], [2, 3]]  # mode 1
    labels[0:2, 2:4] = [[2, 3], [3, 0]]  # mode 3
    labels[2:4, 0:2] = [[4, 5], [6, 7]]  # all differ: the first (top-left)
    write_pyramidal_tiff(
        tmp_path / "l.tif", (32, 32), np.uint8, _reader(labels), channels=1, tile=16
    )
    level1 = tifffile.imread(tmp_path / "l.tif", level=1)
    assert level1[0, 0] == 1 and level1[0, 1] == 3 and level1[1, 0] == 4
    assert set(np.unique(level1)) <= set(np.unique(labels))


def test_tile_iterator_equals_callable(tmp_path) -> None:
    image = np.random.default_rng(1).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    tiles = (
        ((y, x), image[y : y + 32, x : x + 32]) for y in range(0, 80, 32) for x in range(0, 100, 32)
    )
    write_pyramidal_tiff(tmp_path / "i.tif", (80, 100), np.uint8, tiles, channels=3, tile=32)
    write_pyramidal_tiff(
        tmp_path / "c.tif", (80, 100), np.uint8, _reader(image), channels=3, tile=32
    )
    for level in range(3):
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "i.tif", level=level),
            tifffile.imread(tmp_path / "c.tif", level=level),
        )


@pytest.mark.parametrize(
    ("tiles", "match"),
    [
        ([((0, 32), np.zeros((32, 32, 3), np.uint8))], r"at \(0, 32\), expected \(0, 0\)"),
        ([((0, 0), np.zeros((16, 32, 3), np.uint8))], r"shape \(16, 32, 3\), expected"),
        ([((0, 0), np.zeros((32, 32, 3), np.uint8))], r"stopped after 1.*\(0, 32\)"),
    ],
)
def test_wrong_tiles_are_refused_and_nothing_is_left(tmp_path, tiles, match) -> None:
    with pytest.raises(ConfigError, match=match):
        write_pyramidal_tiff(
            tmp_path / "w.tif", (64, 64), np.uint8, iter(tiles), channels=3, tile=32
        )
    assert list(tmp_path.iterdir()) == []  # no partial file, temporary or scratch folder


def test_refuses_to_overwrite_without_flag(tmp_path) -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    write_pyramidal_tiff(
        tmp_path / "a.tif", (32, 32), np.uint8, _reader(image), channels=3, tile=16
    )
    with pytest.raises(OverwriteError, match=r"a\.tif: already exists"):
        write_pyramidal_tiff(
            tmp_path / "a.tif", (32, 32), np.uint8, _reader(image), channels=3, tile=16
        )
    write_pyramidal_tiff(
        tmp_path / "a.tif",
        (32, 32),
        np.uint8,
        _reader(image + 1),
        channels=3,
        tile=16,
        overwrite=True,
    )
    assert (tifffile.imread(tmp_path / "a.tif") == 1).all()


def test_bad_arguments_are_config_errors(tmp_path) -> None:
    image = _reader(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ConfigError, match="multiple of 16"):
        write_pyramidal_tiff(tmp_path / "a.tif", (32, 32), np.uint8, image, channels=3, tile=20)
    with pytest.raises(ConfigError, match="mpp must be a positive"):
        write_pyramidal_tiff(tmp_path / "a.tif", (32, 32), np.uint8, image, channels=3, mpp=0)


def test_level_shapes_stop_when_a_level_fits_a_tile() -> None:
    assert level_shapes((50000, 30000), 512)[-1] == (391, 235)
    assert len(level_shapes((50000, 30000), 512)) == 8
    assert level_shapes((100, 100), 512) == [(100, 100)]
    assert level_shapes((5000, 5000), 512, levels=2) == [(5000, 5000), (2500, 2500)]


def _peak_bytes(tmp_path, size: int) -> int:
    def read(y: int, x: int, h: int, w: int) -> np.ndarray:
        yy, xx = np.ogrid[y : y + h, x : x + w]
        value = ((yy // 7 + xx // 5) % 256).astype(np.uint8)
        return np.repeat(value[..., None], 3, axis=2)

    tracemalloc.start()
    try:
        write_pyramidal_tiff(
            tmp_path / f"m{size}.tif", (size, size), np.uint8, read, channels=3, tile=256
        )
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_bounded_as_the_slide_grows(tmp_path) -> None:
    small, large = _peak_bytes(tmp_path, 1024), _peak_bytes(tmp_path, 4096)
    assert large < 1.5 * small
    assert large < 4096 * 4096 * 3 / 4  # far less than a level 0 (48 MiB) or level 1
    assert tifffile.imread(tmp_path / "m4096.tif", level=4).shape == (256, 256, 3)
