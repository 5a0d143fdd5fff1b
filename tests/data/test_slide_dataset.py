"""Slide datasets: dataset.json with ``slides``, checked paths and sizes, and tile extraction
into a regular 2D dataset that ``load_dataset`` / ``check_dataset`` accept."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from medseg.data import check_dataset, load_dataset, read_case
from medseg.data.phantoms_slide import gland_polygons, phantom_slide, write_geojson
from medseg.data.slide_dataset import (
    is_slide_dataset,
    label_downsample,
    load_slide_dataset,
    open_slide_case,
)
from medseg.data.slide_extract import extract_tiles, slide_groups
from medseg.data.slide_read import read_tile
from medseg.errors import DatasetError, OverwriteError
from medseg.io.slide import open_slide

LABELS = {"background": 0, "tissue": 1, "gland": 2, "nucleus": 3}


def _meta(slides: list, **extra: object) -> dict:
    return {
        "name": "phantom",
        "modality": "H&E",
        "labels": LABELS,
        "file_ending": ".tif",
        "slides": slides,
        **extra,
    }


def _write_meta(root: Path, meta: object) -> Path:
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def slide_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 1024^2 phantoms at 1 µm/px: ``a`` with a label slide, ``b`` with GeoJSON glands."""
    root = tmp_path_factory.mktemp("slides")
    for folder in ("slides", "labels", "annotations"):
        (root / folder).mkdir()
    phantom_slide(
        root / "slides/a.tif", size=(1024, 1024), mpp=1.0, seed=0, label_path=root / "labels/a.tif"
    )
    info = phantom_slide(
        root / "slides/b.tif",
        size=(1024, 1024),
        mpp=1.0,
        seed=1,
        label_path=root / "labels/b_unused.tif",
    )
    write_geojson(root / "annotations/b.geojson", gland_polygons(info))
    slides = [
        {"image": "slides/a.tif", "label": "labels/a.tif"},
        {"image": "slides/b.tif", "annotations": "annotations/b.geojson"},
    ]
    return _write_meta(root, _meta(slides))


def test_a_slide_dataset_loads_with_its_cases(slide_root: Path) -> None:
    ds = load_slide_dataset(slide_root)
    assert is_slide_dataset(slide_root)
    assert [c.case_id for c in ds.cases] == ["a", "b"]
    assert ds.cases[0].label == slide_root / "labels/a.tif" and ds.cases[0].annotations is None
    assert ds.cases[1].annotations == slide_root / "annotations/b.geojson"
    assert ds.labels == LABELS and ds.modality == "H&E" and ds.mpp is None


def test_an_nnunet_dataset_is_not_a_slide_dataset(tiny_dataset: Path, tmp_path: Path) -> None:
    assert not is_slide_dataset(tiny_dataset)
    assert not is_slide_dataset(tmp_path)  # no dataset.json at all


def _entry_problem(tmp_path: Path, entries: list, **extra: object) -> str:
    """The one-line error that loading a dataset with these slide entries raises."""
    (tmp_path / "s.tif").write_bytes(b"x")
    (tmp_path / "l.tif").write_bytes(b"x")
    _write_meta(tmp_path, _meta(entries, **extra))
    with pytest.raises(DatasetError) as error:
        load_slide_dataset(tmp_path)
    return str(error.value)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"image": "../outside.tif"}, "is not a relative path inside the dataset folder"),
        ({"image": "/etc/passwd"}, "is not a relative path inside the dataset folder"),
        ({"image": "missing.tif"}, r"missing\.tif \('slides' entry 0 'image'\) does not exist"),
        ({"image": "s.tif", "label": "l.tif", "annotations": "l.tif"}, "both 'label' and"),
        ({"image": "s.tif", "labels": "l.tif"}, r"unknown key\(s\) \['labels'\]"),
        ({"image": "s.tif", "mpp": -1}, "'mpp' must be a positive number"),
        ({"label": "l.tif"}, "needs an 'image' path"),
    ],
)
def test_bad_slide_entries_are_refused(tmp_path: Path, entry: dict, match: str) -> None:
    assert re.search(match, _entry_problem(tmp_path, [entry]))


def test_duplicate_case_ids_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x/s.tif").write_bytes(b"x")
    problem = _entry_problem(tmp_path, [{"image": "s.tif"}, {"image": "x/s.tif"}])
    assert "same case id 's'" in problem


def test_invalid_dataset_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text("{", encoding="utf-8")
    with pytest.raises(DatasetError, match="dataset.json: not valid JSON"):
        load_slide_dataset(tmp_path)
    _write_meta(tmp_path, _meta([]))
    with pytest.raises(DatasetError, match="needs a non-empty 'slides' list"):
        load_slide_dataset(tmp_path)


def test_label_slide_sizes_must_match_or_be_an_integer_fraction() -> None:
    assert label_downsample((1024, 768), (1024, 768), Path("l.tif")) == 1
    assert label_downsample((1001, 768), (250, 192), Path("l.tif")) == 4  # floor(1001 / 4)
    assert label_downsample((1001, 768), (251, 192), Path("l.tif")) == 4  # ceil
    with pytest.raises(
        DatasetError,
        match=r"l\.tif: label slide is 500 x 768 px but its image "
        r"is 1024 x 768 px",
    ):
        label_downsample((1024, 768), (500, 768), Path("l.tif"))
    with pytest.raises(DatasetError, match="label slide is 341 x 255"):
        label_downsample((1024, 768), (341, 255), Path("l.tif"))  # 768 / 3 is 256, not 255


def test_a_label_slide_of_another_size_is_refused_when_opened(tmp_path: Path) -> None:
    (tmp_path / "slides").mkdir()
    phantom_slide(
        tmp_path / "slides/a.tif", size=(256, 256), mpp=1.0, label_path=tmp_path / "l256.tif"
    )
    phantom_slide(tmp_path / "other.tif", size=(128, 128), mpp=2.0, label_path=tmp_path / "l.tif")
    phantom_slide(tmp_path / "bad.tif", size=(200, 256), mpp=1.0, label_path=tmp_path / "b.tif")
    for label, ratio in (("l.tif", 2), ("b.tif", None)):
        _write_meta(tmp_path, _meta([{"image": "slides/a.tif", "label": label}]))
        ds = load_slide_dataset(tmp_path)
        if ratio is None:
            with pytest.raises(DatasetError, match="200 x 256 px but its image is 256 x 256"):
                open_slide_case(ds, ds.cases[0])
            continue
        with open_slide_case(ds, ds.cases[0]) as opened:
            assert opened.label_downsample == ratio


def test_the_dataset_mpp_overrides_the_files(slide_root: Path, tmp_path: Path) -> None:
    meta = json.loads((slide_root / "dataset.json").read_text(encoding="utf-8"))
    meta["mpp"] = 0.25
    meta["slides"][1]["mpp"] = 0.3
    root = tmp_path / "ds"
    root.mkdir()
    for folder in ("slides", "labels", "annotations"):  # links inside the folder are fine
        (root / folder).symlink_to(slide_root / folder)
    ds = load_slide_dataset(_write_meta(root, meta))
    mpps = []
    for case in ds.cases:
        with open_slide_case(ds, case) as opened:
            mpps.append(opened.slide.mpp)
    assert mpps == [0.25, 0.3]


def test_extracted_tiles_form_a_dataset_medseg_loads(slide_root: Path, tmp_path: Path) -> None:
    ds = load_slide_dataset(slide_root)
    out = extract_tiles(ds, tmp_path / "tiles", mpp=2.0, tile_size=64, tiles_per_slide=5, seed=1)
    tiles = load_dataset(out)
    assert tiles.layout == "nnunet_v2" and len(tiles.cases) == 10
    assert tiles.num_channels == 3 and tiles.labels == LABELS
    assert check_dataset(tiles, jobs=1, progress=False) == []
    assert slide_groups(out) == {
        "a": [f"a_t{k:04d}" for k in range(5)],
        "b": [f"b_t{k:04d}" for k in range(5)],
    }
    image, label = read_case(tiles.case("a_t0002"), num_channels=3)
    assert image.array.shape == (3, 64, 64) and image.spacing == pytest.approx((0.002, 0.002))
    with (out / "tiles.csv").open(encoding="utf-8") as handle:
        row = {r["case"]: r for r in csv.DictReader(handle)}["a_t0002"]
    y, x = float(row["y"]), float(row["x"])
    with open_slide(slide_root / "slides/a.tif") as slide, open_slide(ds.cases[0].label) as lab:
        expected = read_tile(slide, y, x, mpp=2.0, tile_size=64)
        expected_label = read_tile(lab, y, x, mpp=2.0, tile_size=64, base_mpp=1.0)
    np.testing.assert_array_equal(np.moveaxis(image.array, 0, -1), expected)
    np.testing.assert_array_equal(label.array, expected_label)
    _, gland_label = read_case(tiles.case("b_t0000"), num_channels=3)
    assert set(np.unique(gland_label.array)) <= {0, 2}  # annotations hold only glands


def test_png_tiles_are_one_rgb_picture_each(slide_root: Path, tmp_path: Path) -> None:
    ds = load_slide_dataset(slide_root)
    out = extract_tiles(
        ds, tmp_path / "png", mpp=2.0, tile_size=32, tiles_per_slide=2, file_ending=".png"
    )
    tiles = load_dataset(out)
    assert len(tiles.cases) == 4 and tiles.cases[0].image_paths[0].name.endswith("_0000.png")
    assert read_case(tiles.cases[0], num_channels=3)[0].array.shape == (3, 32, 32)


def test_extraction_refuses_unlabelled_slides_and_foreign_folders(
    slide_root: Path, tmp_path: Path
) -> None:
    meta = json.loads((slide_root / "dataset.json").read_text(encoding="utf-8"))
    meta["slides"][0].pop("label")
    with pytest.raises(DatasetError, match="without 'label' or 'annotations'.*a.tif"):
        unlabelled = tmp_path / "u"
        unlabelled.mkdir()
        (unlabelled / "slides").symlink_to(slide_root / "slides")
        (unlabelled / "annotations").symlink_to(slide_root / "annotations")
        extract_tiles(
            load_slide_dataset(_write_meta(unlabelled, meta)),
            tmp_path / "t",
            mpp=2.0,
            tile_size=32,
            tiles_per_slide=1,
        )
    ds = load_slide_dataset(slide_root)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OverwriteError, match="already holds files"):
        extract_tiles(ds, foreign, mpp=2.0, tile_size=32, tiles_per_slide=1)
    with pytest.raises(OverwriteError, match="no tile dataset written by medseg"):
        extract_tiles(ds, foreign, mpp=2.0, tile_size=32, tiles_per_slide=1, overwrite=True)
    assert (foreign / "notes.txt").exists()
    out = extract_tiles(ds, tmp_path / "again", mpp=2.0, tile_size=32, tiles_per_slide=2)
    extract_tiles(ds, out, mpp=2.0, tile_size=32, tiles_per_slide=1, overwrite=True)
    assert len(load_dataset(out).cases) == 2  # the older, larger set is gone


def test_stain_normalizers_are_applied_and_recorded(slide_root: Path, tmp_path: Path) -> None:
    ds = load_slide_dataset(slide_root)
    common = {"mpp": 2.0, "tile_size": 32, "tiles_per_slide": 2, "seed": 4}
    plain = load_dataset(extract_tiles(ds, tmp_path / "plain", **common))
    inverted = load_dataset(
        extract_tiles(ds, tmp_path / "inv", stain_normalizer=lambda t: 255 - t, **common)
    )
    a = read_case(plain.cases[0], num_channels=3)[0].array.astype(int)
    b = read_case(inverted.cases[0], num_channels=3)[0].array.astype(int)
    np.testing.assert_array_equal(a + b, np.full_like(a, 255))
    transforms = pytest.importorskip("medseg.transforms")
    out = extract_tiles(
        ds, tmp_path / "mac", stain_normalizer=transforms.MacenkoNormalizer(), **common
    )
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["slide_tiles"]["stain_normalizer"]["method"] == "macenko"
    c = read_case(load_dataset(out).cases[0], num_channels=3)[0].array
    assert c.dtype == np.uint8 and not np.array_equal(c, a)


def test_a_slide_without_mpp_asks_for_it_in_dataset_json(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    (tmp_path / "s").mkdir()
    tifffile.imwrite(tmp_path / "s/a.tif", np.full((64, 64, 3), 200, np.uint8))
    tifffile.imwrite(tmp_path / "s/l.tif", np.zeros((64, 64), np.uint8))
    _write_meta(tmp_path, _meta([{"image": "s/a.tif", "label": "s/l.tif"}]))
    ds = load_slide_dataset(tmp_path)
    with pytest.raises(DatasetError, match=r"microns per pixel; set \"mpp\" in its 'slides'"):
        open_slide_case(ds, ds.cases[0])
    meta = json.loads((tmp_path / "dataset.json").read_text(encoding="utf-8"))
    meta["mpp"] = 0.5
    ds = load_slide_dataset(_write_meta(tmp_path, meta))
    with open_slide_case(ds, ds.cases[0]) as opened:
        assert opened.slide.mpp == 0.5 and opened.label_downsample == 1


def test_unannotated_pixels_can_be_ignored(slide_root: Path, tmp_path: Path) -> None:
    meta = json.loads((slide_root / "dataset.json").read_text(encoding="utf-8"))
    meta["slides"] = meta["slides"][1:]  # the GeoJSON slide
    meta["unannotated"] = "ignore"
    root = tmp_path / "sparse"
    root.mkdir()
    (root / "slides").symlink_to(slide_root / "slides")
    (root / "annotations").symlink_to(slide_root / "annotations")
    with pytest.raises(DatasetError, match="'unannotated' must be .*with an 'ignore' label"):
        load_slide_dataset(_write_meta(root, meta))
    meta["labels"] = {**LABELS, "ignore": 4}
    ds = load_slide_dataset(_write_meta(root, meta))
    assert ds.foreground_labels == [1, 2, 3]
    out = extract_tiles(ds, tmp_path / "t", mpp=2.0, tile_size=32, tiles_per_slide=3, seed=2)
    values = set()
    for case in load_dataset(out).cases:
        values |= set(np.unique(read_case(case, num_channels=3)[1].array).tolist())
    assert 4 in values and values <= {2, 4}  # glands and ignored pixels, no background
