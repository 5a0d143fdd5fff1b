"""The forest's ``class_prior="data"``: Bayes' rule with the training data's class shares
reweights the balanced forest's probabilities, which raises voxel accuracy on a small class."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from medseg.classic.forest import RandomForestSegmenter  # noqa: E402
from medseg.errors import ConfigError  # noqa: E402
from medseg.io import Image  # noqa: E402

SMALL = {"n_estimators": 10, "sigmas_mm": (1.0,), "max_voxels": 2000}


def _thin_lines(seed: int) -> tuple[Image, Image]:
    """Thin faint lines (about 6 % of the pixels) in strong noise: an imbalanced, ambiguous
    task where the balanced forest over-calls the small class."""
    rng = np.random.default_rng(seed)
    label = np.zeros((64, 64), np.uint8)
    for row in rng.choice(np.arange(2, 62), size=4, replace=False):
        label[row, :] = 1
    image = label * 0.8 + rng.normal(0, 1.0, label.shape)
    return Image(image, (1.0, 1.0)), Image(label, (1.0, 1.0))


def test_data_prior_is_the_balanced_probability_reweighted_by_hand() -> None:
    image, label = _thin_lines(0)
    balanced = RandomForestSegmenter(**SMALL).fit([image], [label])
    data = RandomForestSegmenter(**SMALL, class_prior="data").fit([image], [label])
    p = balanced.predict_proba(image).reshape(2, -1).T.astype(np.float64)
    share = np.array([(label.array == 0).mean(), (label.array == 1).mean()])
    sampled = np.array([data.spec["training_voxels"][k] for k in ("0", "1")], np.float64)
    expected = p * (share / (sampled / sampled.sum()))
    expected /= expected.sum(axis=1, keepdims=True)
    got = data.predict_proba(image).reshape(2, -1).T
    np.testing.assert_allclose(got, expected, atol=1e-5)  # same seed: the same trees
    assert data.spec["class_prior"] == "data"
    assert data.spec["class_voxels"] == {"0": int((label.array == 0).sum()), "1": 256}


def test_data_prior_raises_accuracy_on_unseen_images_and_survives_save_load(tmp_path) -> None:
    images, labels = zip(*(_thin_lines(s) for s in range(3)), strict=True)
    test_image, test_label = _thin_lines(9)
    truth = test_label.array > 0
    scores = {}
    for prior in ("balanced", "data"):
        model = RandomForestSegmenter(**SMALL, class_prior=prior).fit(images, labels)
        scores[prior] = float(((model.predict(test_image).array > 0) == truth).mean())
    assert scores["data"] > scores["balanced"] + 0.02
    path = model.save(tmp_path / "prior.npz")
    loaded = RandomForestSegmenter.load(path)
    assert loaded.class_prior == "data"
    np.testing.assert_array_equal(loaded.predict(test_image).array, model.predict(test_image).array)


def test_unknown_class_prior_is_refused() -> None:
    with pytest.raises(ConfigError, match="class_prior"):
        RandomForestSegmenter(class_prior="uniform")  # type: ignore[arg-type]
