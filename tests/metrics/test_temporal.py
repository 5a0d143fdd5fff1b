"""Volume curves, smoothness, ED/ES and ejection fraction against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import ConfigError, GeometryError
from medseg.metrics.temporal import (
    cycle_metrics,
    ed_es,
    ejection_fraction,
    volume_curve,
    volume_curve_smoothness,
)


def test_volume_curve_counts_voxels_times_voxel_volume_in_ml() -> None:
    labels = np.zeros((3, 4, 10, 10), np.uint8)
    labels[0, :, :5, :] = 1  # 4 * 5 * 10 = 200 voxels
    labels[1, :2, :, :] = 1  # 2 * 10 * 10 = 200 voxels
    labels[1, 2:, :, :] = 2  # another label, 200 voxels
    # frame 2: empty
    curve = volume_curve(labels, (5.0, 1.5, 1.5), 1)  # 11.25 mm^3 per voxel
    assert curve.tolist() == pytest.approx([2.25, 2.25, 0.0])
    assert volume_curve(labels, (5.0, 1.5, 1.5), [1, 2]).tolist() == pytest.approx([2.25, 4.5, 0])


def test_volume_curve_2d_is_area_over_1000() -> None:
    labels = np.zeros((2, 4, 4), int)
    labels[1, 1:3, 1:3] = 1  # 4 pixels of 2 x 0.5 mm^2
    assert volume_curve(labels, (2.0, 0.5)).tolist() == pytest.approx([0.0, 0.004])


def test_volume_curve_refuses_a_spacing_that_does_not_fit() -> None:
    with pytest.raises(GeometryError, match=r"expected \(T, \*spatial\) with 2 spatial axes"):
        volume_curve(np.zeros((2, 3, 3, 3)), (1.0, 1.0))
    with pytest.raises(GeometryError, match="positive and finite"):
        volume_curve(np.zeros((2, 3, 3)), (1.0, 0.0))


def test_smoothness_is_mean_absolute_second_difference_over_mean() -> None:
    assert volume_curve_smoothness([10.0, 20.0, 30.0, 40.0]) == 0.0  # a straight line
    # [100, 80, 70, 90]: second differences 100 - 160 + 70 = 10, 80 - 140 + 90 = 30 -> 20 / 85
    assert volume_curve_smoothness([100.0, 80.0, 70.0, 90.0]) == pytest.approx(20 / 85)
    # scaling the curve does not change it (normalised by the mean)
    assert volume_curve_smoothness([1.0, 0.8, 0.7, 0.9]) == pytest.approx(20 / 85)
    with pytest.raises(ConfigError, match="at least 3 frames"):
        volume_curve_smoothness([1.0, 2.0])
    with pytest.raises(ConfigError, match="positive mean"):
        volume_curve_smoothness([0.0, 0.0, 0.0])


def test_ed_es_are_largest_and_smallest_frames_first_on_ties() -> None:
    assert ed_es([50.0, 120.0, 80.0, 45.0, 120.0, 45.0]) == (1, 3)
    with pytest.raises(ConfigError, match="non-empty"):
        ed_es([])


def test_ejection_fraction() -> None:
    assert ejection_fraction(150.0, 60.0) == pytest.approx(60.0)
    assert ejection_fraction(100.0, 100.0) == 0.0
    with pytest.raises(ConfigError, match="must be positive"):
        ejection_fraction(0.0, 0.0)


def test_cycle_metrics_of_a_curve() -> None:
    got = cycle_metrics([80.0, 120.0, 100.0, 40.0, 60.0])
    # second differences: 80-240+100=-60, 120-200+40=-40, 100-80+60=80 -> 60 / 80
    assert got == {
        "ed_index": 1,
        "es_index": 3,
        "edv": 120.0,
        "esv": 40.0,
        "ef": pytest.approx(200 / 3),
        "smoothness": pytest.approx(60 / 80),
    }
    empty = cycle_metrics([0.0, 0.0, 0.0])
    assert np.isnan(empty["ef"]) and np.isnan(empty["smoothness"])
