"""k-means and Gaussian-mixture segmentation against scikit-learn's KMeans / GaussianMixture."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.classic.cluster import gmm, gmm_fit, kmeans, kmeans_fit
from medseg.classic.registry import CLASSIC
from medseg.errors import ConfigError
from medseg.io import Image

cluster = pytest.importorskip("sklearn.cluster")
mixture = pytest.importorskip("sklearn.mixture")
metrics = pytest.importorskip("sklearn.metrics")


def _three_regions(noise: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 2D image of three bands (means 20, 50, 0 from top to bottom) and its truth ordered by
    intensity (0 = darkest)."""
    truth = np.zeros((30, 24), np.uint8)
    truth[:10], truth[10:20], truth[20:] = 1, 2, 0
    means = np.array([0.0, 20.0, 50.0])
    rng = np.random.default_rng(seed)
    return means[truth] + rng.normal(0, noise, truth.shape), truth


def test_kmeans_finds_well_separated_regions_ordered_by_intensity() -> None:
    array, truth = _three_regions()
    out = kmeans(Image(array, spacing=(0.5, 0.5)), 3)
    np.testing.assert_array_equal(out.array, truth)  # exact labels: ordered by mean intensity
    assert out.array.dtype == np.uint8 and out.spacing == (0.5, 0.5)
    reference = cluster.KMeans(3, n_init=3, random_state=0).fit_predict(array.reshape(-1, 1))
    assert metrics.adjusted_rand_score(reference, out.array.ravel()) == 1.0


def test_kmeans_centres_equal_scikit_learn_from_the_same_start() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(m, 1.5, (200, 2)) for m in (0.0, 3.0, 7.0)])
    start = x[[0, 250, 599]]
    labels, centres = kmeans_fit(x, 3, init=start)
    reference = cluster.KMeans(3, init=start, n_init=1, tol=0.0, max_iter=300).fit(x)
    np.testing.assert_allclose(centres, reference.cluster_centers_, atol=1e-6)
    np.testing.assert_array_equal(labels, reference.labels_)


def test_kmeans_plus_plus_seeding_is_deterministic_per_seed() -> None:
    array, _ = _three_regions(noise=8.0)
    image = Image(array, spacing=(1.0, 1.0))
    first, again = kmeans(image, 3, seed=5), kmeans(image, 3, seed=5)
    np.testing.assert_array_equal(first.array, again.array)


def test_multichannel_clusters_use_every_channel() -> None:
    truth = np.zeros((20, 20), np.uint8)
    truth[:, 10:] = 1  # only channel 1 tells the halves apart
    rng = np.random.default_rng(2)
    channels = np.stack(
        [rng.normal(5, 0.5, truth.shape), truth * 30 + rng.normal(0, 0.5, truth.shape)]
    )
    image = Image(channels, spacing=(1.0, 1.0))
    np.testing.assert_array_equal(kmeans(image, 2).array, truth)
    np.testing.assert_array_equal(gmm(image, 2).array, truth)
    reference = cluster.KMeans(2, n_init=3, random_state=0).fit_predict(channels.reshape(2, -1).T)
    assert metrics.adjusted_rand_score(reference, truth.ravel()) == 1.0


def test_a_mask_limits_the_voxels_clustered_and_zeroes_the_rest() -> None:
    array, truth = _three_regions()
    mask = truth > 0  # the two brighter bands only
    out = kmeans(Image(array, spacing=(1.0, 1.0)), 2, mask=mask)
    np.testing.assert_array_equal(out.array[~mask], 0)
    np.testing.assert_array_equal(out.array[mask], truth[mask] - 1)
    gaussian = gmm(Image(array, spacing=(1.0, 1.0)), 2, mask=Image(mask, spacing=(1.0, 1.0)))
    np.testing.assert_array_equal(gaussian.array, out.array)


def test_position_features_split_a_constant_image_into_compact_halves() -> None:
    image = Image(np.ones((10, 40)), spacing=(1.0, 1.0))
    out = kmeans(image, 2, features="intensity+position").array
    assert len(np.unique(out[:, :20])) == 1 and len(np.unique(out[:, 20:])) == 1
    assert out[0, 0] != out[0, -1]


def test_gmm_separates_overlapping_populations_as_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1.0, (300, 1)), rng.normal(6, 2.0, (300, 1))])
    labels, weights, means, variances = gmm_fit(x, 2)
    reference = mixture.GaussianMixture(2, covariance_type="diag", random_state=0, tol=1e-10)
    assert metrics.adjusted_rand_score(reference.fit_predict(x), labels) == 1.0
    order = np.argsort(means[:, 0])
    np.testing.assert_allclose(means[order, 0], np.sort(reference.means_[:, 0]), atol=1e-4)


def test_gmm_parameters_equal_scikit_learn_from_the_same_start() -> None:
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal((0, 0), (1, 2), (250, 2)), rng.normal((4, 5), (2, 1), (250, 2))])
    init = (np.array([0.5, 0.5]), np.array([[1.0, 1.0], [3.0, 4.0]]), np.ones((2, 2)))
    labels, weights, means, variances = gmm_fit(x, 2, init=init, tol=1e-12, max_iter=500)
    reference = mixture.GaussianMixture(
        2, covariance_type="diag", weights_init=init[0], means_init=init[1],
        precisions_init=1 / init[2], tol=1e-12, max_iter=500,
    ).fit(x)  # fmt: skip
    np.testing.assert_allclose(means, reference.means_, atol=1e-6)
    np.testing.assert_allclose(variances, reference.covariances_, atol=1e-6)
    np.testing.assert_allclose(weights, reference.weights_, atol=1e-6)
    np.testing.assert_array_equal(labels, reference.predict(x))


def test_both_methods_are_registered_and_refuse_bad_k_or_masks() -> None:
    assert CLASSIC.get("kmeans") is kmeans and CLASSIC.get("gmm") is gmm
    image = Image(np.arange(12.0).reshape(3, 4), spacing=(1.0, 1.0))
    with pytest.raises(ConfigError, match="k must be between 1 and 12"):
        kmeans(image, 13)
    with pytest.raises(ConfigError, match="mask is empty"):
        gmm(image, 2, mask=np.zeros((3, 4), bool))
    with pytest.raises(ConfigError, match=r"mask of shape \(2, 2\)"):
        kmeans(image, 2, mask=np.ones((2, 2), bool))
    with pytest.raises(ConfigError, match="features must be"):
        kmeans(image, 2, features="texture")  # type: ignore[arg-type]
