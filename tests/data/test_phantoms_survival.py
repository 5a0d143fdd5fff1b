"""Survival phantoms: the lesion drawn has the radius recorded, the times follow the Cox model
with the true log-risk (exponential, hazard exp(eta)), censoring takes the share asked, cases
are reproducible, and the folder written reads back as the same arrays."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medseg.data.phantoms_survival import make_survival_phantoms, survival_phantom_arrays
from medseg.data.survival_table import read_survival_csv
from medseg.errors import ConfigError, OverwriteError
from medseg.io import read_image
from medseg.metrics.survival import concordance_index


def test_the_lesion_has_the_recorded_radius() -> None:
    data = survival_phantom_arrays(40, size=32, censoring=0.0, seed=1)
    # background 0.2, lesion >= +0.35, noise sd 0.05: halfway is 3.5 sd from both
    area = (data.images[:, 0] > 0.2 + 0.175).sum(axis=(1, 2))
    np.testing.assert_allclose(area, math.pi * data.radius**2, rtol=0.2, atol=4)
    assert 0.08 * 32 <= data.radius.min() and data.radius.max() <= 0.22 * 32


def test_times_follow_the_cox_model_of_the_true_log_risk() -> None:
    beta = 2.0
    data = survival_phantom_arrays(1500, size=16, beta=beta, censoring=0.0, seed=2)
    z = (data.radius / 16 - 0.15) / (0.14 / math.sqrt(12))
    np.testing.assert_allclose(data.log_risk, beta * z, rtol=1e-9)
    assert data.event.all()  # no censoring asked
    unit = data.time * np.exp(data.log_risk)  # exp(eta) * T ~ Exp(1) under the model
    assert abs(unit.mean() - 1) < 0.1 and abs(np.median(unit) - math.log(2)) < 0.07
    assert abs(np.corrcoef(unit, data.log_risk)[0, 1]) < 0.08  # the risk is all in eta
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.05


@pytest.mark.parametrize("share", [0.2, 0.5])
def test_censoring_takes_the_share_asked(share: float) -> None:
    data = survival_phantom_arrays(1500, size=16, censoring=share, seed=3)
    assert abs((1 - data.event.mean()) - share) < 0.04


def test_the_true_risk_orders_the_times_and_beta_zero_does_not() -> None:
    strong = survival_phantom_arrays(300, size=16, beta=3.0, seed=4)
    none = survival_phantom_arrays(300, size=16, beta=0.0, seed=4)
    assert concordance_index(strong.time, strong.log_risk, strong.event) > 0.8
    assert concordance_index(none.time, none.radius, none.event) == pytest.approx(0.5, abs=0.06)


def test_cases_are_reproducible_and_independent_of_the_count() -> None:
    small = survival_phantom_arrays(3, size=16, seed=5)
    large = survival_phantom_arrays(6, size=16, seed=5)
    test = survival_phantom_arrays(3, size=16, seed=5, split="test")
    np.testing.assert_array_equal(small.images, large.images[:3])
    np.testing.assert_array_equal(small.time, large.time[:3])
    assert small.cases == ["train_0000", "train_0001", "train_0002"]
    assert not np.array_equal(small.images, test.images)


def test_3d_phantoms() -> None:
    data = survival_phantom_arrays(2, spatial_dims=3, size=16, seed=6)
    assert data.images.shape == (2, 1, 16, 16, 16) and data.images.dtype == np.float32
    volume = (data.images[:, 0] > 0.375).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(volume, 4 / 3 * math.pi * data.radius**3, rtol=0.3, atol=8)


def test_the_folder_reads_back_as_the_arrays(tmp_path: Path) -> None:
    out = make_survival_phantoms(tmp_path / "ph", n_train=6, n_test=4, size=16, seed=7)
    train = read_survival_csv(out / "train.csv")
    arrays = survival_phantom_arrays(6, size=16, seed=7)
    np.testing.assert_array_equal(train.images, arrays.images)  # PNG quantisation matches
    np.testing.assert_allclose(train.time, arrays.time, rtol=1e-5)
    np.testing.assert_array_equal(train.event, arrays.event)
    assert train.cases == arrays.cases
    assert len(read_survival_csv(out / "test.csv").cases) == 4
    truth = (out / "truth.csv").read_text().splitlines()
    assert truth[0] == "case,split,log_risk,radius" and len(truth) == 11
    with pytest.raises(OverwriteError):
        make_survival_phantoms(out, n_train=6, n_test=4, size=16, seed=7)
    make_survival_phantoms(out, n_train=2, n_test=2, size=16, seed=7, overwrite=True)
    assert len(list((out / "images").iterdir())) == 4


def test_3d_files_are_nifti(tmp_path: Path) -> None:
    out = make_survival_phantoms(tmp_path / "ph", n_train=2, n_test=1, spatial_dims=3, size=16)
    image = read_image(out / "images" / "train_0000.nii.gz")
    assert image.spatial_dims == 3 and image.array.shape == (16, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "positive integer"),
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"size": 8}, ">= 16"),
        ({"beta": math.nan}, "finite"),
        ({"censoring": 0.95}, r"\[0, 0.9\]"),
        ({"seed": -1}, "non-negative"),
        ({"split": "val"}, "split"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        survival_phantom_arrays(**{"n": 2, **kwargs})
