"""QuPath GeoJSON annotations: reading, rasterising per tile against hand-made masks, and the
one-line errors on bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import DatasetError
from medseg.io.geojson import Annotations, Polygon, rasterise, read_geojson

LABELS = {"background": 0, "tissue": 1, "gland": 2, "nucleus": 3}


def _feature(coordinates: list, name: str | None = "gland", kind: str = "Polygon") -> dict:
    properties = {"objectType": "annotation"}
    if name is not None:
        properties["classification"] = {"name": name, "color": [255, 0, 0]}
    return {
        "type": "Feature",
        "geometry": {"type": kind, "coordinates": coordinates},
        "properties": properties,
    }


def _square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _write(tmp_path: Path, data: object, name: str = "a.geojson") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _collection(*features: dict) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


def test_square_rasterises_to_the_pixels_whose_centres_it_covers(tmp_path: Path) -> None:
    path = _write(tmp_path, _collection(_feature([_square(2, 1, 5, 4)], "nucleus")))
    mask = rasterise(read_geojson(path, LABELS), 0, 0, 6, 7)
    expected = np.zeros((6, 7), np.uint8)
    expected[1:4, 2:5] = 3  # rows y in [1, 4), columns x in [2, 5)
    np.testing.assert_array_equal(mask, expected)


def test_triangle_matches_its_half_plane_by_hand(tmp_path: Path) -> None:
    # vertices (x, y) = (0, 0), (8, 0), (0, 7): inside iff x / 8 + y / 7 < 1 at pixel centres
    path = _write(tmp_path, [_feature([[[0, 0], [8, 0], [0, 7], [0, 0]]], "tissue")])
    mask = rasterise(read_geojson(path, LABELS), 0, 0, 9, 9)
    i, j = np.mgrid[0:9, 0:9]
    expected = (7 * (j + 0.5) + 8 * (i + 0.5) < 56).astype(np.uint8)
    np.testing.assert_array_equal(mask, expected)


def test_random_polygon_matches_scikit_image(tmp_path: Path) -> None:
    draw = pytest.importorskip("skimage.draw")
    rng = np.random.default_rng(3)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
    radii = rng.uniform(6, 14, 9)
    xs, ys = 16 + radii * np.cos(angles) + 0.31, 16 + radii * np.sin(angles) + 0.17
    ring = np.column_stack([xs, ys]).tolist()
    path = _write(tmp_path, _collection(_feature([ring + ring[:1]], "gland")))
    mask = rasterise(read_geojson(path, LABELS), 0, 0, 32, 32)
    expected = np.zeros((32, 32), np.uint8)
    # scikit-image puts pixel centres on integers: shift the polygon by half a pixel
    rr, cc = draw.polygon(ys - 0.5, xs - 0.5, shape=(32, 32))
    expected[rr, cc] = 2
    np.testing.assert_array_equal(mask, expected)  # no centre lies on an edge here
    assert np.count_nonzero(expected) > 200


def test_polygon_with_a_hole_leaves_the_hole_out(tmp_path: Path) -> None:
    ring, hole = _square(1, 1, 9, 9), _square(4, 4, 6, 7)
    path = _write(tmp_path, _collection(_feature([ring, hole], "gland")))
    mask = rasterise(read_geojson(path, LABELS), 0, 0, 10, 10)
    expected = np.zeros((10, 10), np.uint8)
    expected[1:9, 1:9] = 2
    expected[4:7, 4:6] = 0
    np.testing.assert_array_equal(mask, expected)


def test_a_hole_shows_the_larger_polygon_beneath_it(tmp_path: Path) -> None:
    gland = _feature([_square(2, 2, 8, 8), _square(4, 4, 6, 6)], "gland")
    tissue = _feature([_square(0, 0, 10, 10)], "tissue")
    path = _write(tmp_path, _collection(gland, tissue))  # larger one listed last
    mask = rasterise(read_geojson(path, LABELS), 0, 0, 10, 10)
    assert mask[5, 5] == 1 and mask[3, 3] == 2 and mask[0, 0] == 1


def test_multipolygon_paints_every_part(tmp_path: Path) -> None:
    parts = [[_square(0, 0, 2, 2)], [_square(5, 3, 8, 6), _square(6, 4, 7, 5)]]
    path = _write(tmp_path, _collection(_feature(parts, "nucleus", "MultiPolygon")))
    annotations = read_geojson(path, LABELS)
    mask = rasterise(annotations, 0, 0, 8, 8)
    expected = np.zeros((8, 8), np.uint8)
    expected[0:2, 0:2] = 3
    expected[3:6, 5:8] = 3
    expected[4, 6] = 0
    np.testing.assert_array_equal(mask, expected)
    assert len(annotations.polygons) == 2


def test_tile_cutting_through_a_polygon_is_the_crop_of_the_whole(tmp_path: Path) -> None:
    ring = [[3.2, 2.0], [17.5, 4.1], [14.0, 18.3], [2.5, 12.0], [3.2, 2.0]]
    annotations = read_geojson(_write(tmp_path, [_feature([ring], "gland")]), LABELS)
    whole = rasterise(annotations, 0, 0, 24, 24)
    tile = rasterise(annotations, 9, 11, 10, 10)
    np.testing.assert_array_equal(tile, whole[9:19, 11:21])
    assert 0 < np.count_nonzero(tile) < tile.size  # the edge crosses the tile


def test_downsampled_tile_samples_the_centres_of_larger_pixels() -> None:
    square = Polygon(2, np.array(_square(0, 0, 8, 6), float))
    annotations = Annotations(Path("a.geojson"), (square,), LABELS)
    mask = rasterise(annotations, 0, 0, 6, 6, downsample=2.0)
    expected = np.zeros((6, 6), np.uint8)
    expected[0:3, 0:4] = 2  # centres y = 1, 3, 5 < 6 and x = 1, 3, 5, 7 < 8
    np.testing.assert_array_equal(mask, expected)


def test_only_polygons_near_the_tile_are_drawn(tmp_path: Path) -> None:
    features = [_feature([_square(x, 0, x + 4, 4)], "nucleus") for x in range(0, 4000, 10)]
    annotations = read_geojson(_write(tmp_path, _collection(*features)), LABELS)
    near = annotations.touching(0, 1000, 8, 8)
    assert len(near) == 1 and near[0].bbox[0] == 1000


def test_small_polygon_stays_on_top_whatever_the_file_order(tmp_path: Path) -> None:
    small, large = _feature([_square(3, 3, 5, 5)], "nucleus"), _feature([_square(0, 0, 8, 8)])
    for order in ((small, large), (large, small)):
        mask = rasterise(read_geojson(_write(tmp_path, list(order)), LABELS), 0, 0, 8, 8)
        assert mask[4, 4] == 3 and mask[1, 1] == 2


def test_class_names_match_ignoring_case(tmp_path: Path) -> None:
    path = _write(tmp_path, [_feature([_square(0, 0, 2, 2)], "Gland")])
    assert read_geojson(path, LABELS).polygons[0].label == 2


def test_points_are_skipped_with_a_warning(tmp_path: Path) -> None:
    point = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [1, 1]},
        "properties": {"classification": {"name": "nucleus"}},
    }
    path = _write(tmp_path, [point, _feature([_square(0, 0, 2, 2)])])
    with pytest.warns(UserWarning, match="skipped 1 feature.*Point"):
        annotations = read_geojson(path, LABELS)
    assert len(annotations.polygons) == 1


def test_invalid_json_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.geojson: not a readable JSON"):
        read_geojson(path, LABELS)


def test_not_geojson_features_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="expected a FeatureCollection"):
        read_geojson(_write(tmp_path, {"type": "Topology"}), LABELS)


def test_ring_with_two_points_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, [_feature([_square(0, 0, 2, 2)]), _feature([[[0, 0], [3, 3], [0, 0]]])])
    with pytest.raises(DatasetError, match=r"feature 1: a polygon ring has 2 distinct point"):
        read_geojson(path, LABELS)


def test_unknown_class_lists_the_dataset_labels(tmp_path: Path) -> None:
    path = _write(tmp_path, [_feature([_square(0, 0, 2, 2)], "tumour")])
    with pytest.raises(DatasetError, match=r"class 'tumour' is not in .*gland, nucleus, tissue"):
        read_geojson(path, LABELS)


def test_missing_classification_is_refused_unless_a_default_is_given(tmp_path: Path) -> None:
    path = _write(tmp_path, [_feature([_square(0, 0, 2, 2)], None)])
    with pytest.raises(DatasetError, match="feature 0: no properties.classification.name"):
        read_geojson(path, LABELS)
    assert read_geojson(path, LABELS, default_label="tissue").polygons[0].label == 1


def test_coordinates_beyond_the_slide_are_refused_saying_how_far(tmp_path: Path) -> None:
    path = _write(tmp_path, [_feature([_square(100, 100, 1500, 300)])])
    with pytest.raises(DatasetError, match=r"x reaches 1500, 500 px beyond the slide's 1000"):
        read_geojson(path, LABELS, slide_shape=(800, 1000))
    negative = _write(tmp_path, [_feature([_square(-400, -10, 50, 50)])], "neg.geojson")
    with pytest.raises(DatasetError, match=r"x goes down to -400, 400 px before 0"):
        read_geojson(negative, LABELS, slide_shape=(800, 1000))
    edge = _write(tmp_path, [_feature([_square(990, 0, 1020, 50)])], "edge.geojson")
    assert len(read_geojson(edge, LABELS, slide_shape=(800, 1000)).polygons) == 1  # 2 %: fine


def test_polygons_inside_a_geometry_collection_are_read(tmp_path: Path) -> None:
    collection = {
        "type": "GeometryCollection",
        "geometries": [
            {"type": "Polygon", "coordinates": [_square(0, 0, 2, 2)]},
            {"type": "LineString", "coordinates": [[0, 0], [5, 5]]},
            {"type": "MultiPolygon", "coordinates": [[_square(4, 4, 6, 6)]]},
        ],
    }
    feature = {
        "type": "Feature",
        "geometry": collection,
        "properties": {"classification": {"name": "nucleus"}},
    }
    with pytest.warns(UserWarning, match="LineString"):
        annotations = read_geojson(_write(tmp_path, feature), LABELS)
    mask = rasterise(annotations, 0, 0, 6, 6)
    assert mask[1, 1] == 3 and mask[5, 5] == 3 and np.count_nonzero(mask) == 8
