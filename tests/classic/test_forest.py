"""The random-forest segmenter: ilastik features checked by hand and against numpy, it learns
2D and 3D phantoms, its model files are arrays (no pickle) that round-trip exactly, and it
refuses images it was not trained for."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from medseg.classic.features import (  # noqa: E402
    _symmetric_eigenvalues,
    feature_names,
    voxel_features,
)
from medseg.classic.forest import RandomForestSegmenter  # noqa: E402
from medseg.classic.registry import CLASSIC  # noqa: E402
from medseg.errors import (  # noqa: E402
    ConfigError,
    DatasetError,
    GeometryError,
    ImageIOError,
    OverwriteError,
)
from medseg.io import Image  # noqa: E402

SMALL = {"sigmas_mm": (1.0, 2.5), "max_voxels": 3000}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _phantom(seed: int, spatial_dims: int, size: int) -> tuple[Image, Image]:
    """A bright blob (label 1) in noise, and a striped region (label 0) whose bright stripes
    are as bright as the blob: intensity alone cannot tell them apart, texture can."""
    rng = np.random.default_rng(seed)
    grid = np.indices((size,) * spatial_dims) / size
    centre = rng.uniform(0.3, 0.5, spatial_dims).reshape(-1, *([1] * spatial_dims))
    radius = rng.uniform(0.15, 0.2)
    blob = ((grid - centre) ** 2).sum(axis=0) < radius**2
    striped = grid[0] > 0.75
    stripes = (np.arange(size) // 2 % 2 == 0)[(None,) * (spatial_dims - 1)]
    image = 1.0 * blob + 1.0 * (striped & stripes) + rng.normal(0.0, 0.25, blob.shape)
    label = (blob & ~striped).astype(np.uint8)
    spacing = (1.0,) * spatial_dims
    return Image(image, spacing), Image(label, spacing)


def _reference_proba(model: RandomForestSegmenter, x: np.ndarray) -> np.ndarray:
    """Mean leaf class fractions by walking the saved node arrays in plain numpy."""
    arrays = model._arrays
    total = np.zeros((len(x), len(model.spec["classes"])))
    start = 0
    for count in arrays["node_count"]:
        left = arrays["children_left"][start : start + count]
        right = arrays["children_right"][start : start + count]
        feature = arrays["feature"][start : start + count]
        threshold = arrays["threshold"][start : start + count]
        node = np.zeros(len(x), dtype=np.int64)
        while True:
            inner = left[node] != -1
            if not inner.any():
                break
            rows = np.flatnonzero(inner)
            go_left = x[rows, feature[node[rows]]] <= threshold[node[rows]]
            node[rows] = np.where(go_left, left[node[rows]], right[node[rows]])
        total += arrays["value"][start : start + count][node]
        start += count
    return total / len(arrays["node_count"])


@pytest.fixture(scope="module")
def model_2d() -> RandomForestSegmenter:
    pairs = [_phantom(seed, 2, 64) for seed in (1, 2)]
    return RandomForestSegmenter(20, **SMALL).fit(*zip(*pairs, strict=True))


# ---------------------------------------------------------------- features


def test_feature_columns_match_their_names() -> None:
    image = np.random.default_rng(0).normal(size=(1, 6, 7, 8))
    x = voxel_features(image, (1.0, 1.0, 1.0), sigmas_mm=(1.0, 2.0))
    names = feature_names(
        ("intensity", "gaussian", "log", "gradient", "hessian", "structure_tensor", "coordinates"),
        (1.0, 2.0),
        3,
        1,
    )
    assert x.shape == (6 * 7 * 8, len(names)) == (336, 1 + 2 * (3 + 3 + 3) + 3)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], image.ravel().astype(np.float32))
    assert names[-3:] == ["coordinate_0", "coordinate_1", "coordinate_2"]
    assert x[:, -3:].min() == 0.0 and x[:, -3:].max() == 1.0


def test_hessian_and_gradient_are_in_mm() -> None:
    """f = x_mm ** 2 along the last axis: d2f/dx2 = 2 and |grad f| = 2 x_mm at any spacing."""
    for spacing in (1.0, 0.5):
        x_mm = (np.arange(60) - 25) * spacing
        image = np.broadcast_to(x_mm**2, (20, 60))[None].copy()
        x = voxel_features(
            image, (1.0, spacing), features=("gradient", "hessian"), sigmas_mm=(1.0,)
        )
        centre = x.reshape(20, 60, 3)[10, 30]
        assert centre[0] == pytest.approx(2 * x_mm[30], rel=1e-2)  # gradient magnitude
        np.testing.assert_allclose(centre[1:], [0.0, 2.0], atol=2e-2)  # Hessian eigenvalues


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_closed_form_eigenvalues_equal_numpy_eigvalsh(dims) -> None:
    rng = np.random.default_rng(dims)
    entries = {(i, j): rng.normal(size=500) for i in range(dims) for j in range(i, dims)}
    entries[(0, 0)][:5] = entries[(1, 1)][:5] = 3.0  # repeated eigenvalues
    for (i, j), value in entries.items():
        if i != j:
            value[:5] = 0.0
    if dims > 2:
        entries[(2, 2)][:5] = 3.0
    matrix = np.zeros((500, dims, dims))
    for (i, j), value in entries.items():
        matrix[:, i, j] = matrix[:, j, i] = value
    np.testing.assert_allclose(
        _symmetric_eigenvalues(entries, dims), np.linalg.eigvalsh(matrix), atol=1e-5
    )


def test_slab_features_equal_whole_image_features() -> None:
    image = np.random.default_rng(3).normal(size=(1, 30, 12, 10))
    spacing = (1.5, 1.0, 0.8)
    whole = voxel_features(image, spacing, sigmas_mm=(0.7, 2.0))
    slab = voxel_features(image, spacing, sigmas_mm=(0.7, 2.0), rows=slice(11, 17))
    np.testing.assert_allclose(slab, whole[11 * 120 : 17 * 120], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- learning


def test_forest_learns_an_unseen_2d_phantom(model_2d) -> None:
    image, label = _phantom(7, 2, 64)
    predicted = model_2d.predict(image)
    assert predicted.array.dtype == np.uint8 and predicted.spacing == image.spacing
    assert _dice(predicted.array == 1, label.array == 1) > 0.9
    # the stripes are as bright as the blob: a threshold alone labels them too
    assert _dice(image.array > 0.5, label.array == 1) < 0.8


def test_forest_learns_an_unseen_3d_phantom() -> None:
    pairs = [_phantom(seed, 3, 24) for seed in (1, 2)]
    model = RandomForestSegmenter(10, **SMALL).fit(*zip(*pairs, strict=True))
    image, label = _phantom(7, 3, 24)
    assert _dice(model.predict(image).array == 1, label.array == 1) > 0.9


def test_rebuilt_trees_agree_with_a_numpy_walk_of_the_node_arrays(model_2d) -> None:
    image, _ = _phantom(7, 2, 64)
    x = voxel_features(
        (image.array[None] - image.array.mean()) / image.array.std(),
        image.spacing,
        sigmas_mm=model_2d.sigmas_mm,
    )
    ours = np.moveaxis(model_2d.predict_proba(image), 0, -1).reshape(-1, 2)
    np.testing.assert_allclose(ours, _reference_proba(model_2d, x), atol=1e-6)


def test_training_sample_is_class_balanced(model_2d) -> None:
    """3000 voxels: 1500 per class, or all of a class that has fewer."""
    blob_voxels = sum(int(_phantom(seed, 2, 64)[1].array.sum()) for seed in (1, 2))
    assert blob_voxels < 1500
    assert model_2d.spec["training_voxels"] == {"0": 1500, "1": blob_voxels}
    pairs = [_phantom(seed, 2, 64) for seed in (1, 2)]
    small = RandomForestSegmenter(2, sigmas_mm=(1.0,), max_voxels=400)
    small.fit(*zip(*pairs, strict=True))
    assert small.spec["training_voxels"] == {"0": 200, "1": 200}


def test_save_and_load_give_identical_predictions(model_2d, tmp_path) -> None:
    image, _ = _phantom(8, 2, 64)
    path = model_2d.save(tmp_path / "forest.npz")
    loaded = RandomForestSegmenter.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(image), model_2d.predict_proba(image))
    assert loaded.spec == model_2d.spec
    with np.load(path, allow_pickle=False) as data:  # plain arrays only
        assert all(data[key].dtype != object for key in data.files)
    with pytest.raises(OverwriteError):
        model_2d.save(path)


# ---------------------------------------------------------------- bad input


def test_spacing_channel_and_dimension_mismatches_are_refused(model_2d) -> None:
    image, _ = _phantom(7, 2, 64)
    with pytest.raises(DatasetError, match=r"spacing \(1.0, 1.03\) mm.*\(1.0, 1.0\) mm"):
        model_2d.predict(Image(image.array, (1.0, 1.03)))
    model_2d.predict(Image(image.array, (1.0, 1.005)))  # within 1 %: accepted
    with pytest.raises(DatasetError, match="1 channel.*2D with 2"):
        model_2d.predict(Image(np.stack([image.array] * 2), (1.0, 1.0)))
    with pytest.raises(DatasetError, match="trained on 2D"):
        model_2d.predict(Image(np.zeros((4, 4, 4)), (1.0, 1.0, 1.0)))


def test_fit_refuses_bad_training_data() -> None:
    image, label = _phantom(1, 2, 16)
    forest = RandomForestSegmenter(2, **SMALL)
    with pytest.raises(DatasetError, match="only class"):
        forest.fit([image], [label.with_array(np.zeros((16, 16), np.uint8))])
    with pytest.raises(GeometryError, match="label map 0 has shape"):
        forest.fit([image], [Image(np.zeros((16, 15), np.uint8), (1.0, 1.0))])
    with pytest.raises(DatasetError, match="spacing"):
        forest.fit([image, Image(image.array, (2.0, 1.0))], [label, label])
    with pytest.raises(ConfigError, match="as many label maps"):
        forest.fit([image], [])
    nan = image.array.copy()
    nan[0, 0] = np.nan
    with pytest.raises(DatasetError, match="1 NaN voxel"):
        forest.fit([image.with_array(nan)], [label])
    with pytest.raises(ConfigError, match="before predicting"):
        forest.predict(image)
    with pytest.raises(ConfigError, match="unknown or no features"):
        RandomForestSegmenter(features=("intensity", "gabor"))


def test_load_refuses_corrupt_and_pickled_files(model_2d, tmp_path) -> None:
    path = model_2d.save(tmp_path / "forest.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["children_left"] = arrays["children_left"].copy()
    arrays["children_left"][0] = 0  # a cycle: the root is its own child
    np.savez(tmp_path / "cycle.npz", **arrays)
    with pytest.raises(ImageIOError, match="corrupt model file: a child index"):
        RandomForestSegmenter.load(tmp_path / "cycle.npz")
    np.savez(tmp_path / "pickled.npz", spec=np.asarray([{"format": "x"}], dtype=object))
    with pytest.raises(ImageIOError, match="not a medseg random-forest model"):
        RandomForestSegmenter.load(tmp_path / "pickled.npz")
    with pytest.raises(ImageIOError, match="no such model file"):
        RandomForestSegmenter.load(tmp_path / "missing.npz")


def test_forest_is_registered() -> None:
    assert CLASSIC.get("forest") is RandomForestSegmenter
    assert {"sigmas_mm", "features", "max_voxels", "seed"} <= set(CLASSIC.options("forest"))
