"""Morphological level sets: they shrink onto a disc and a ball, match scikit-image, and
refuse bad input with one clear line."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")

from medseg.classic.level_set import edge_stopping, level_set  # noqa: E402
from medseg.classic.registry import CLASSIC  # noqa: E402
from medseg.errors import ConfigError, DatasetError, GeometryError  # noqa: E402
from medseg.io import Image  # noqa: E402


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _sphere_phantom(spatial_dims: int, *, size: int, radius: int, margin: int, noise: float):
    """A bright disc/ball in Gaussian noise and a box ``margin`` voxels larger around it."""
    rng = np.random.default_rng(spatial_dims)
    grid = np.indices((size,) * spatial_dims)
    centre = (size - 1) / 2
    truth = ((grid - centre) ** 2).sum(axis=0) <= radius**2
    image = truth + rng.normal(0.0, noise, truth.shape)
    box = np.zeros(truth.shape, dtype=bool)
    low, high = int(centre - radius - margin), int(centre + radius + margin) + 1
    box[(slice(low, high),) * spatial_dims] = True
    return Image(image, (1.0,) * spatial_dims), truth, box


@pytest.mark.parametrize("method", ["chan_vese", "geodesic"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_level_set_shrinks_from_a_box_onto_the_disc_or_ball(spatial_dims, method) -> None:
    size, radius = (64, 14) if spatial_dims == 2 else (28, 7)
    image, truth, box = _sphere_phantom(spatial_dims, size=size, radius=radius, margin=5, noise=0.2)
    result = level_set(image, box, method=method, iterations=25)
    assert result.array.dtype == np.uint8 and result.spacing == image.spacing
    assert set(np.unique(result.array)) <= {0, 1}
    assert _dice(result.array == 1, truth) > 0.9
    assert _dice(box, truth) < 0.7  # the start was far from the answer


def test_chan_vese_equals_scikit_image_called_directly() -> None:
    from skimage.segmentation import morphological_chan_vese

    image, _, box = _sphere_phantom(2, size=48, radius=10, margin=4, noise=0.3)
    ours = level_set(image, box, iterations=15, smoothing=2)
    theirs = morphological_chan_vese(image.array, 15, init_level_set=box, smoothing=2)
    np.testing.assert_array_equal(ours.array, theirs)


def test_edge_map_sigma_is_in_mm() -> None:
    """Doubling the spacing and halving the voxels per mm gives the same edge map."""
    step = np.zeros((40, 40))
    step[:, 20:] = 1.0
    fine = edge_stopping(step, (1.0, 1.0), sigma_mm=2.0)
    coarse = edge_stopping(step, (1.0, 2.0), sigma_mm=4.0)
    np.testing.assert_allclose(fine, coarse)
    assert fine[:, 19].max() < 0.5 < fine[:, 2].min()  # small on the edge, ~1 away from it


def test_init_of_the_wrong_shape_is_refused() -> None:
    image = Image(np.zeros((20, 30)), (1.0, 1.0))
    with pytest.raises(GeometryError, match=r"init has shape \(30, 20\).*\(20, 30\)"):
        level_set(image, np.ones((30, 20), dtype=bool))


def test_init_image_on_another_grid_is_refused() -> None:
    image = Image(np.zeros((20, 30)), (1.0, 1.0))
    init = Image(np.ones((20, 30), dtype=np.uint8), (2.0, 1.0))
    with pytest.raises(GeometryError, match="spacing"):
        level_set(image, init)


def test_empty_init_unknown_method_and_negative_iterations_are_refused() -> None:
    image = Image(np.zeros((10, 10)), (1.0, 1.0))
    box = np.zeros((10, 10), dtype=bool)
    with pytest.raises(ConfigError, match="init is empty"):
        level_set(image, box)
    box[2:5, 2:5] = True
    with pytest.raises(ConfigError, match="unknown method 'snake'"):
        level_set(image, box, method="snake")
    with pytest.raises(ConfigError, match="iterations"):
        level_set(image, box, iterations=-1)


def test_nan_and_multichannel_images_are_refused() -> None:
    box = np.zeros((10, 10), dtype=bool)
    box[2:5, 2:5] = True
    array = np.zeros((10, 10))
    array[0, :3] = np.nan
    with pytest.raises(DatasetError, match="3 NaN voxel"):
        level_set(Image(array, (1.0, 1.0)), box)
    with pytest.raises(DatasetError, match="2 channels"):
        level_set(Image(np.zeros((2, 10, 10)), (1.0, 1.0)), box)


def test_level_set_is_registered() -> None:
    assert CLASSIC.get("level_set") is level_set
    assert "method" in CLASSIC.options("level_set")
