"""Lazy whole-slide reading (``medseg.io.slide``): regions equal crops of the decoded levels
for both backends, mpp from every source, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from medseg.errors import ConfigError, ImageIOError
from medseg.io import slide_tifffile
from medseg.io.slide import open_slide, slide_backend_for
from medseg.io.slide_writer import write_pyramidal_tiff

pytest.importorskip("zarr", reason="slide reading needs zarr (pip install medseg[pathology])")

try:
    import openslide  # noqa: F401

    HAS_OPENSLIDE = True
except (ImportError, OSError):
    HAS_OPENSLIDE = False
needs_openslide = pytest.mark.skipif(not HAS_OPENSLIDE, reason="openslide not installed")

SIZE, TILE, MPP = 2048, 256, 0.25
# (level, y, x, h, w): inside, across tile borders, partly and wholly outside the slide
CROPS = [
    (0, 200, 250, 100, 130),
    (0, 0, 0, 256, 256),
    (0, -30, 2000, 100, 100),
    (0, 2040, -5, 20, 20),
    (0, 5000, 5000, 8, 8),
    (1, 500, 250, 60, 300),
    (1, 1000, 1000, 50, 50),
    (2, 120, 250, 20, 20),
    (2, -3, -3, 600, 600),
    (3, 0, 0, 256, 256),
    (3, 250, 100, 12, 30),
]


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (SIZE // 32, SIZE // 32, 3), dtype=np.uint8)
    noise = rng.integers(0, 40, (SIZE, SIZE, 3), dtype=np.uint8)
    return np.repeat(np.repeat(base, 32, axis=0), 32, axis=1) // 2 + noise


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("slides")
    image = _image()
    out = {"image": image}
    for layout, name in (("ome", "s.ome.tif"), ("pages", "s_pages.tif")):
        write_pyramidal_tiff(
            root / name,
            (SIZE, SIZE),
            np.uint8,
            lambda y, x, h, w: image[y : y + h, x : x + w],
            channels=3,
            tile=TILE,
            mpp=MPP,
            layout=layout,
        )
        out[layout] = root / name
    return out


def _expected(level_array: np.ndarray, y: int, x: int, h: int, w: int, fill: int) -> np.ndarray:
    """The crop of a fully decoded level, padded with ``fill`` outside it."""
    pad = max(h, w) + abs(y) + abs(x)
    padded = np.pad(level_array, ((pad, pad), (pad, pad), (0, 0)), constant_values=fill)
    return padded[y + pad : y + pad + h, x + pad : x + pad + w]


@pytest.mark.parametrize(
    ("backend", "layout"),
    [
        ("tifffile", "ome"),
        ("tifffile", "pages"),
        pytest.param("openslide", "pages", marks=needs_openslide),
    ],
)
def test_read_region_equals_crop_of_decoded_level(slides, backend, layout) -> None:
    path = slides[layout]
    with open_slide(path, backend=backend) as slide:
        assert slide.backend == backend
        assert [lv.shape for lv in slide.levels] == [
            (2048, 2048),
            (1024, 1024),
            (512, 512),
            (256, 256),
        ]
        assert [lv.downsample for lv in slide.levels] == [1.0, 2.0, 4.0, 8.0]
        assert slide.channels == 3 and slide.dtype == np.uint8
        decoded = [tifffile.imread(path, series=0, level=k) for k in range(4)]
        for level, y, x, h, w in CROPS:
            got = slide.read_region(level, y, x, h, w)
            assert got.shape == (h, w, 3)
            np.testing.assert_array_equal(
                got,
                _expected(decoded[level], y, x, h, w, 255),
                err_msg=f"level {level} crop {(y, x, h, w)}",
            )


def test_level0_equals_source_and_fill_is_configurable(slides) -> None:
    with open_slide(slides["ome"]) as slide:
        np.testing.assert_array_equal(
            slide.read_region(0, 300, 700, 90, 80), slides["image"][300:390, 700:780]
        )
        outside = slide.read_region(0, -4, -4, 8, 8, fill=0)
    assert (outside[:4] == 0).all() and (outside[4:, 4:] == slides["image"][:4, :4]).all()


def test_label_slide_keeps_channel_axis_and_fills_zero(tmp_path) -> None:
    labels = (np.arange(64 * 80).reshape(64, 80) % 4).astype(np.uint8)
    write_pyramidal_tiff(
        tmp_path / "l.tif",
        (64, 80),
        np.uint8,
        lambda y, x, h, w: labels[y : y + h, x : x + w],
        channels=1,
        tile=32,
    )
    with open_slide(tmp_path / "l.tif") as slide:
        assert slide.channels == 1 and slide.mpp is None
        region = slide.read_region(0, 60, 70, 8, 16)
    assert region.shape == (8, 16, 1)
    np.testing.assert_array_equal(region[:4, :10, 0], labels[60:64, 70:80])
    assert (region[4:] == 0).all() and (region[:, 10:] == 0).all()


def test_mpp_from_ome_and_resolution_and_override(slides) -> None:
    with open_slide(slides["ome"]) as ome, open_slide(slides["pages"]) as pages:
        assert ome.mpp == pytest.approx(MPP) and pages.mpp == pytest.approx(MPP)
    with open_slide(slides["pages"], mpp=0.5) as slide:
        assert slide.mpp == 0.5


@pytest.mark.parametrize(
    ("unit", "resolution", "mpp"), [("CENTIMETER", 4000.0, 2.5), ("INCH", 50800.0, 0.5)]
)
def test_mpp_from_tiff_resolution_units(tmp_path, unit, resolution, mpp) -> None:
    tifffile.imwrite(
        tmp_path / "r.tif",
        np.zeros((32, 32, 3), np.uint8),
        tile=(16, 16),
        photometric="rgb",
        resolution=(resolution, resolution),
        resolutionunit=unit,
        metadata=None,
    )
    with open_slide(tmp_path / "r.tif") as slide:
        assert slide.mpp == pytest.approx(mpp)


def _aperio(path, image: np.ndarray) -> None:
    """An SVS-like file: baseline, thumbnail, then reduced levels as top-level pages."""
    head = "Aperio Image Library v12.0.15 \n"
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            image,
            tile=(64, 64),
            photometric="rgb",
            metadata=None,
            description=head + "256x192 (64x64) RGB|AppMag = 20|MPP = 0.4990",
        )
        tw.write(image[::8, ::8], photometric="rgb", metadata=None, description=head + "thumb")
        for k in (2, 4):
            tw.write(
                image[::k, ::k],
                tile=(64, 64),
                photometric="rgb",
                metadata=None,
                description=head + f"-> level {k}",
            )


@pytest.mark.parametrize(
    ("name", "backend"),
    [("a.tif", "tifffile"), pytest.param("a.svs", "openslide", marks=needs_openslide)],
)
def test_svs_like_page_pyramid_and_aperio_mpp(tmp_path, name, backend) -> None:
    image = np.random.default_rng(1).integers(0, 256, (192, 256, 3), dtype=np.uint8)
    _aperio(tmp_path / name, image)
    with open_slide(tmp_path / name) as slide:
        assert slide.backend == backend
        assert slide.mpp == pytest.approx(0.499)
        assert [lv.shape for lv in slide.levels] == [(192, 256), (96, 128), (48, 64)]
        for k, level in ((1, 0), (2, 1), (4, 2)):
            np.testing.assert_array_equal(
                slide.read_region(level, 10, 20, 30, 40), image[::k, ::k][10:40, 20:60]
            )


def test_level_for_mpp_picks_nearest_level_not_coarser(slides) -> None:
    with open_slide(slides["ome"]) as slide:  # mpp per level: 0.25, 0.5, 1, 2
        assert [slide.level_for_mpp(m) for m in (0.1, 0.25, 0.4, 0.5, 0.99, 1.0, 100)] == [
            0,
            0,
            0,
            1,
            1,
            2,
            3,
        ]
        assert slide.level_mpp(2) == pytest.approx(1.0)


def test_level_for_mpp_without_mpp_asks_for_it(tmp_path) -> None:
    tifffile.imwrite(
        tmp_path / "n.tif",
        np.zeros((32, 32, 3), np.uint8),
        tile=(16, 16),
        photometric="rgb",
        metadata=None,
    )
    with open_slide(tmp_path / "n.tif") as slide:
        assert slide.mpp is None
        with pytest.raises(ConfigError, match=r"n\.tif.*mpp.*--mpp"):
            slide.level_for_mpp(0.5)


def test_level_out_of_range_names_valid_range(slides) -> None:
    with open_slide(slides["ome"]) as slide, pytest.raises(ConfigError, match=r"level 4 .*0\.\.3"):
        slide.read_region(4, 0, 0, 8, 8)


def test_missing_and_corrupt_files_name_the_file(tmp_path) -> None:
    with pytest.raises(ImageIOError, match=r"nope\.tif: no such slide file"):
        open_slide(tmp_path / "nope.tif")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + bytes(range(200)))
    with pytest.raises(ImageIOError, match=r"bad\.tif.*corrupt"):
        open_slide(tmp_path / "bad.tif")
    truncated = tmp_path / "cut.tif"
    tifffile.imwrite(
        truncated,
        np.ones((256, 256, 3), np.uint8),
        photometric="rgb",
        tile=(64, 64),
        compression="zlib",
    )
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(ImageIOError, match=r"cut\.tif"):  # at open or at decode
        with open_slide(truncated) as slide:
            slide.read_region(0, 0, 0, 256, 256)
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(ImageIOError, match=r"x\.png: not a whole-slide image"):
        open_slide(tmp_path / "x.png")


@needs_openslide
def test_corrupt_vendor_file_is_an_error_naming_it(tmp_path) -> None:
    (tmp_path / "bad.svs").write_bytes(b"not a slide" * 20)
    with pytest.raises(ImageIOError, match=r"bad\.svs"):
        open_slide(tmp_path / "bad.svs")


def test_missing_openslide_names_the_install_command(tmp_path, monkeypatch) -> None:
    (tmp_path / "a.svs").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "openslide", None)  # import openslide -> ImportError
    with pytest.raises(ImageIOError, match=r"pip install medseg\[pathology\]"):
        open_slide(tmp_path / "a.svs")


def test_stripped_giant_tiff_is_refused_but_tiled_is_read(tmp_path, monkeypatch) -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    tifffile.imwrite(tmp_path / "strips.tif", image, photometric="rgb", rowsperstrip=8)
    tifffile.imwrite(tmp_path / "tiles.tif", image, photometric="rgb", tile=(16, 16))
    monkeypatch.setattr(slide_tifffile, "MAX_STRIPPED_BYTES", 1000)
    with pytest.raises(ImageIOError, match=r"strips\.tif: a stripped .*tiled pyramid"):
        open_slide(tmp_path / "strips.tif")
    with open_slide(tmp_path / "tiles.tif") as slide:  # a tiled single level: read lazily
        assert slide.read_region(0, 0, 0, 64, 64).shape == (64, 64, 3)


def test_thumbnail_uses_the_matching_level(slides) -> None:
    with open_slide(slides["ome"]) as slide:
        thumb, downsample = slide.thumbnail(256)
        np.testing.assert_array_equal(thumb, tifffile.imread(slides["ome"], level=3))
    assert downsample == 8.0


def test_thumbnail_of_single_level_is_block_mean(tmp_path) -> None:
    from skimage.measure import block_reduce

    image = np.random.default_rng(2).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "one.tif", image, photometric="rgb", tile=(32, 32))
    with open_slide(tmp_path / "one.tif") as slide:
        thumb, downsample = slide.thumbnail(32)
    expected = np.rint(block_reduce(image.astype(float), (4, 4, 1), np.mean)).astype(np.uint8)
    assert downsample == 4.0
    np.testing.assert_array_equal(thumb, expected)


def test_backend_follows_the_extension() -> None:
    assert slide_backend_for("x/A.SVS") == "openslide"
    assert slide_backend_for("x/a.ndpi") == "openslide"
    assert slide_backend_for("a.ome.tiff") == "tifffile"
    with pytest.raises(ConfigError, match="backend must be one of"):
        open_slide(__file__, backend="pillow")


def test_openslide_transparent_pixels_become_fill() -> None:
    from PIL import Image

    from medseg.io.slide_openslide import OpenSlideSlide

    class Handle:  # OpenSlide's answer: RGBA, left half transparent (a region never scanned)
        level_dimensions, level_downsamples = ((64, 32),), (1.0,)

        def read_region(self, location, level, size):
            rgba = np.zeros((size[1], size[0], 4), np.uint8)
            rgba[:, size[0] // 2 :] = (200, 100, 50, 255)
            rgba[0, -1] = (200, 100, 50, 128)  # half transparent: composited on fill
            return Image.fromarray(rgba, "RGBA")

        def close(self) -> None:
            pass

    slide = OpenSlideSlide(Path("fake.svs"), Handle(), mpp=None)
    region = slide.read_region(0, 0, 0, 4, 8, fill=255)
    assert (region[:, :4] == 255).all() and (region[1:, 4:] == (200, 100, 50)).all()
    np.testing.assert_array_equal(
        region[0, -1],
        np.rint(np.array([200, 100, 50]) * 128 / 255 + 255 * 127 / 255).astype(np.uint8),
    )


@pytest.mark.realdata
def test_real_stripped_drive_tiff_reads_as_one_level(shared_data: Path, monkeypatch) -> None:
    path = shared_data / "drive" / "imagesTr" / "drive_35_0000.tif"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    decoded = tifffile.imread(path)  # a scanner's stripped LZW RGB TIFF, 584 x 565
    with open_slide(path) as slide:
        assert [lv.shape for lv in slide.levels] == [decoded.shape[:2]] and slide.mpp is None
        np.testing.assert_array_equal(
            slide.read_region(0, 500, 400, 100, 200), _expected(decoded, 500, 400, 100, 200, 255)
        )
    monkeypatch.setattr(slide_tifffile, "MAX_STRIPPED_BYTES", decoded.nbytes - 1)
    with pytest.raises(ImageIOError, match="stripped"):
        open_slide(path)


def test_region_over_the_memory_budget_is_refused(slides, monkeypatch) -> None:
    monkeypatch.setenv("MEDSEG_MAX_IMAGE_GB", "0.001")  # 1 MiB
    with open_slide(slides["ome"]) as slide:
        assert slide.read_region(0, 0, 0, 256, 256).shape == (256, 256, 3)  # 192 KiB
        with pytest.raises(ConfigError, match=r"1024 x 1024 region .*MEDSEG_MAX_IMAGE_GB"):
            slide.read_region(0, 0, 0, 1024, 1024)
