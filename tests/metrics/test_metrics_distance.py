"""Surface-distance metrics on hand-computed geometries, in mm."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.metrics import (
    SurfaceDistances,
    assd,
    average_symmetric_surface_distance,
    binary_metrics,
    distance_metrics,
    hausdorff_distance,
    masd,
    normalized_surface_dice,
    nsd,
    percentile_hausdorff,
)


def _slab(shape=(6, 8, 8)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[2, 2:6, 2:6] = True
    return mask


def test_shift_by_one_5mm_slice_gives_hd_of_5mm() -> None:
    ref = _slab()
    pred = np.roll(ref, 1, axis=0)
    m = distance_metrics(pred, ref, (5.0, 0.7, 0.7), tolerance_mm=4.9)
    assert m["hd"] == m["hd95"] == m["assd"] == m["masd"] == 5.0
    assert m["nsd"] == 0.0


def test_same_shift_in_plane_gives_the_in_plane_spacing() -> None:
    ref = _slab()
    pred = np.roll(ref, 1, axis=2)
    assert hausdorff_distance(pred, ref, (5.0, 0.7, 0.7)) == pytest.approx(0.7, rel=1e-12)


def test_nsd_counts_distances_equal_to_the_tolerance() -> None:
    ref = _slab()
    pred = np.roll(ref, 1, axis=0)
    assert normalized_surface_dice(pred, ref, (5.0, 0.7, 0.7), tolerance_mm=5.0) == 1.0
    # 0.8 mm is not exactly representable; one voxel away still counts at tau = 0.8 mm
    assert (
        normalized_surface_dice(np.roll(ref, 1, axis=1), ref, (1.0, 0.8, 0.8), tolerance_mm=0.8)
        == 1.0
    )


def test_hd_of_a_far_single_voxel_is_its_distance_in_mm() -> None:
    ref = np.zeros((4, 20), bool)
    ref[1, 1] = True
    pred = ref.copy()
    pred[1, 19] = True  # 18 columns away at 0.5 mm
    assert hausdorff_distance(pred, ref, (2.0, 0.5)) == 9.0


def test_2d_images_are_evaluated_in_2d() -> None:
    ref = np.zeros((5, 5), bool)
    ref[1:3, 1:3] = True
    pred = np.roll(ref, (1, 1), axis=(0, 1))
    assert hausdorff_distance(pred, ref, (1.0, 1.0)) == math.sqrt(2)


# A directed-distance set where the two HD95 definitions differ, computed by hand:
# 20 prediction elements at distance 0 and 2 reference elements at 1 and 10 mm.
HAND = SurfaceDistances(pred_to_ref=np.zeros(20), ref_to_pred=np.array([1.0, 10.0]))


def test_max_directed_hd95_is_the_larger_directed_percentile() -> None:
    # directed 95th percentiles: 0 and 1 + 0.95 * (10 - 1) = 9.55
    assert percentile_hausdorff(HAND, 95, mode="max_directed") == pytest.approx(9.55)


def test_pooled_hd95_is_the_percentile_of_all_distances() -> None:
    # 22 values [0]*20 + [1, 10]: position 0.95 * 21 = 19.95 -> 0 + 0.95 * (1 - 0)
    assert percentile_hausdorff(HAND, 95, mode="pooled") == pytest.approx(0.95)


def test_percentile_100_is_the_hausdorff_distance_in_both_modes() -> None:
    assert percentile_hausdorff(HAND, 100, mode="pooled") == 10.0
    assert percentile_hausdorff(HAND, 100, mode="max_directed") == 10.0


def test_assd_pools_both_surfaces_and_masd_averages_the_two_means() -> None:
    assert assd(HAND) == pytest.approx(11 / 22)
    assert masd(HAND) == pytest.approx((0 + 5.5) / 2)


def test_nsd_is_the_share_of_both_surfaces_within_tolerance() -> None:
    assert nsd(HAND, 1.0) == pytest.approx(21 / 22)
    assert nsd(HAND, 0.5) == pytest.approx(20 / 22)


def test_weighted_percentile_follows_the_surfel_areas() -> None:
    sd = SurfaceDistances(
        np.array([0.0, 4.0]), np.array([0.0]), np.array([1.0, 3.0]), np.array([1.0])
    )
    assert percentile_hausdorff(sd, 50) == 4.0  # 75 % of the area is at 4 mm
    assert assd(sd) == pytest.approx(12 / 5)


def test_unknown_hd95_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="hd95_mode"):
        percentile_hausdorff(HAND, 95, mode="mean")


def test_negative_tolerance_is_refused() -> None:
    with pytest.raises(ConfigError, match="tolerance"):
        nsd(HAND, -1.0)


def test_distances_are_symmetric_in_prediction_and_reference() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((12, 14)) < 0.3, rng.random((12, 14)) < 0.3
    ab, ba = distance_metrics(a, b, (1.3, 0.6)), distance_metrics(b, a, (1.3, 0.6))
    assert ab == pytest.approx(ba, rel=1e-12)


def test_average_symmetric_surface_distance_of_identical_masks_is_zero() -> None:
    mask = _slab()
    assert average_symmetric_surface_distance(mask, mask, (1.0, 1.0, 1.0)) == 0.0


def test_seed_spatial_alignment_example_dsc_iou_hd_hd95() -> None:
    # Seed lecture, "Effect of spatial alignment": a 13-pixel disc (radius 2) and the same disc
    # moved one pixel diagonally, centre (4.5, 4.5) vs (3.5, 3.5) in pixel-corner coordinates.
    # The slide's DSC 0.62, IoU 0.44, HD 1.41, HD95 1.41 follow (DSC = 8/13 = 0.615).
    # Its ASSD/MASD/NSD (1.05/1.04/0.92) cannot be reproduced: the drawn shapes are not given.
    yy, xx = np.mgrid[0:10, 0:10]
    ref = (yy - 4) ** 2 + (xx - 4) ** 2 <= 4
    pred = (yy - 3) ** 2 + (xx - 3) ** 2 <= 4
    m = binary_metrics(pred, ref, (1.0, 1.0))
    assert ref.sum() == 13
    assert (round(m["dice"], 2), round(m["iou"], 2)) == (0.62, 0.44)
    assert (round(m["hd"], 2), round(m["hd95"], 2)) == (1.41, 1.41)
