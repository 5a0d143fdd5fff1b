"""Lesion-wise metrics (BraTS 2023 definition) on hand-built 2D and 3D cases, and against a
transcription of the BraTS reference routine on random 3D cases."""

from __future__ import annotations

import doctest
import math

import cc3d
import numpy as np
import pytest
from scipy import ndimage

import medseg.metrics.lesions as lesions_module
from medseg.errors import ConfigError, GeometryError
from medseg.metrics import hausdorff_distance
from medseg.metrics.lesions import dilation_footprint, is_single_component, lesion_wise

PENALTY = 374.0


def _square(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def _kinds(result):
    return [lesion.kind for lesion in result.lesions]


def test_perfect_match_scores_one_and_zero_in_2d():
    ref = _square((10, 14), (1, 4), (1, 4)) | _square((10, 14), (5, 8), (8, 11))
    res = lesion_wise(ref.copy(), ref, (1.0, 1.0), dilation_mm=1.0, min_volume_mm3=0.0)
    assert (res.n_ref, res.n_pred, res.tp, res.fp, res.fn) == (2, 2, 2, 0, 0)
    assert res.lesion_dice == 1.0 and res.lesion_hd95 == 0.0
    assert res.precision == res.recall == res.f1 == 1.0
    assert [lesion.ref_volume_mm3 for lesion in res.lesions] == [9.0, 9.0]
    assert res.lesions[0].centroid == (2.0, 2.0)
    assert not res.single_component


def test_missed_lesion_enters_means_with_dice_zero_and_hd95_penalty():
    a = _square((10, 14), (1, 4), (1, 4))
    b = _square((10, 14), (5, 8), (8, 11))
    res = lesion_wise(a, a | b, (1.0, 1.0), dilation_mm=1.0, min_volume_mm3=0.0)
    assert (res.tp, res.fp, res.fn) == (1, 0, 1)
    assert _kinds(res) == ["tp", "fn"]
    # Dice (1 + 0) / 2; HD95 (0 + 374) / 2
    assert res.lesion_dice == 0.5
    assert res.lesion_hd95 == 187.0
    assert res.recall == 0.5 and res.precision == 1.0
    assert res.f1 == pytest.approx(2 / 3)  # 2*1 / (2*1 + 0 + 1)
    assert res.lesions[1].dice == 0.0 and res.lesions[1].hd95 == PENALTY
    assert res.lesions[1].pred_ids == ()


def test_spurious_component_is_a_false_positive_with_penalties():
    a = _square((10, 14), (1, 4), (1, 4))
    pred = a.copy()
    pred[8, 12] = True  # far from the lesion's 1 mm dilation
    res = lesion_wise(pred, a, (1.0, 1.0), dilation_mm=1.0, min_volume_mm3=0.0, hd95_penalty_mm=100)
    assert (res.tp, res.fp, res.fn, res.n_pred) == (1, 1, 0, 2)
    # Dice (1 + 0) / (1 lesion + 1 FP); HD95 (0 + 100) / 2
    assert res.lesion_dice == 0.5 and res.lesion_hd95 == 50.0
    assert res.precision == 0.5 and res.recall == 1.0
    fp = res.lesions[-1]
    assert (fp.kind, fp.lesion_id, fp.pred_ids, fp.centroid) == ("fp", 2, (2,), (8.0, 12.0))
    assert (fp.ref_volume_mm3, fp.pred_volume_mm3, fp.dice, fp.hd95) == (0.0, 1.0, 0.0, 100.0)


def test_split_lesion_is_one_tp_scored_against_the_union_of_its_components():
    ref = _square((8, 9), (2, 5), (2, 5))  # 3x3 = 9 voxels
    pred = _square((8, 9), (2, 5), (2, 4))  # 3x2 = 6 voxels inside the lesion
    pred[3, 5] = True  # outside the lesion, 1 mm from it: inside the 1 mm dilation
    res = lesion_wise(pred, ref, (1.0, 1.0), dilation_mm=1.0, min_volume_mm3=0.0)
    assert (res.n_pred, res.tp, res.fp, res.fn) == (2, 1, 0, 0)
    assert res.lesions[0].pred_ids == (1, 2)
    assert res.lesions[0].pred_volume_mm3 == 7.0
    # Dice 2 * 6 / (9 + 7) = 0.75
    assert res.lesion_dice == 0.75
    # Face-connected voxel surfaces: pred surface = 7 voxels, all on the ref surface except
    # (3, 3) (ref interior, 1 mm from it) and (3, 5) (1 mm): percentile 95 of [0]*5+[1]*2 is 1.
    # Ref surface = 8 voxels; (2, 4), (3, 4), (4, 4) are 1 mm from pred: p95 of [0]*5+[1]*3 = 1.
    assert res.lesion_hd95 == 1.0
    # without dilation the outside voxel matches nothing: a false positive
    strict = lesion_wise(pred, ref, (1.0, 1.0), dilation_mm=0.0, min_volume_mm3=0.0)
    assert (strict.tp, strict.fp, strict.fn) == (1, 1, 0)
    assert strict.lesion_dice == pytest.approx((2 * 6 / (9 + 6)) / 2)  # 0.8 / 2


def test_merged_pair_matches_one_component_to_both_lesions():
    a = _square((5, 12), (1, 4), (1, 4))
    b = _square((5, 12), (1, 4), (8, 11))  # 4 empty columns apart: stay two lesions
    bar = _square((5, 12), (1, 4), (1, 11))  # 30 voxels spanning both
    res = lesion_wise(bar, a | b, (1.0, 1.0), dilation_mm=1.0, min_volume_mm3=0.0)
    assert (res.n_ref, res.n_pred, res.tp, res.fp, res.fn) == (2, 1, 2, 0, 0)
    assert [lesion.pred_ids for lesion in res.lesions] == [(1,), (1,)]
    # each lesion against the whole bar: Dice 2 * 9 / (9 + 30) = 6/13
    assert res.lesion_dice == pytest.approx(6 / 13)
    # bar surface (22 voxels) to lesion a's surface: 7 zeros, then 1,1,2,2,...,7,7 and 7 for
    # the bar's far end (2, 10): p95 (index 19.95 of 22 sorted values) = 7; the other way
    # max is 1 mm, so HD95 = 7 for each lesion.
    assert res.lesions[0].hd95 == pytest.approx(7.0)
    assert res.lesion_hd95 == pytest.approx(7.0)
    assert res.lesions[0].hd95 == pytest.approx(
        hausdorff_distance(bar, a, (1.0, 1.0), percentile=95.0)
    )


def test_reference_components_within_the_dilation_merge_into_one_lesion():
    a = _square((5, 9), (1, 4), (1, 4))
    b = _square((5, 9), (1, 4), (5, 8))  # one empty column between a and b
    merged = lesion_wise(a, a | b, (1.0, 1.0), dilation_mm=1.0, min_volume_mm3=0.0)
    # one lesion of 18 voxels, found by a: Dice 2 * 9 / (18 + 9) = 2/3
    assert (merged.n_ref, merged.tp, merged.fn) == (1, 1, 0)
    assert merged.lesion_dice == pytest.approx(2 / 3)
    separate = lesion_wise(a, a | b, (1.0, 1.0), dilation_mm=0.0, min_volume_mm3=0.0)
    assert (separate.n_ref, separate.tp, separate.fn) == (2, 1, 1)
    assert separate.lesion_dice == 0.5  # (1 + 0) / 2


def test_lesions_at_or_under_the_minimum_volume_are_left_out():
    a = _square((10, 14), (1, 4), (1, 4))  # 9 voxels of 2 mm^2 = 18 mm^2
    tiny = np.zeros_like(a)
    tiny[8, 12] = True  # 2 mm^2
    spacing = (2.0, 1.0)
    # predicted tiny lesion: not counted, and its component is no false positive
    res = lesion_wise(a | tiny, a | tiny, spacing, dilation_mm=1.0, min_volume_mm3=2.0)
    assert (res.n_ref, res.n_small, res.tp, res.fp, res.fn) == (1, 1, 1, 0, 0)
    assert _kinds(res) == ["tp", "small"]
    # missed tiny lesion: not a FN, the means are those of lesion a alone
    res = lesion_wise(a, a | tiny, spacing, dilation_mm=1.0, min_volume_mm3=2.0)
    assert (res.tp, res.fn, res.lesion_dice, res.lesion_hd95) == (1, 0, 1.0, 0.0)
    # a threshold just below its volume keeps it (BraTS drops volume <= threshold)
    res = lesion_wise(a, a | tiny, spacing, dilation_mm=1.0, min_volume_mm3=1.99)
    assert (res.tp, res.fn, res.lesion_dice, res.lesion_hd95) == (1, 1, 0.5, 187.0)


def test_both_empty_scores_dice_one_hd95_zero_and_nan_detection():
    empty = np.zeros((6, 6, 6), bool)
    res = lesion_wise(empty, empty, (1.0, 1.0, 1.0))
    assert (res.n_ref, res.n_pred, res.tp, res.fp, res.fn, res.lesions) == (0, 0, 0, 0, 0, ())
    assert res.lesion_dice == 1.0 and res.lesion_hd95 == 0.0
    assert math.isnan(res.precision) and math.isnan(res.recall) and math.isnan(res.f1)


def test_empty_reference_with_a_prediction_scores_the_penalties():
    empty = np.zeros((6, 6, 6), bool)
    pred = empty.copy()
    pred[2:4, 2:4, 2:4] = True
    res = lesion_wise(pred, empty, (1.0, 1.0, 1.0))
    assert (res.fp, res.lesion_dice, res.lesion_hd95, res.precision) == (1, 0.0, PENALTY, 0.0)


@pytest.mark.parametrize(
    ("spacing", "matched_pixel", "spurious_pixel"),
    [((1.0, 3.0), (8, 5), (5, 8)), ((3.0, 1.0), (5, 8), (8, 5))],
)
def test_anisotropic_spacing_decides_the_match_in_mm(spacing, matched_pixel, spurious_pixel):
    ref = _square((11, 11), (4, 7), (4, 7))
    pred = ref.copy()
    pred[8, 5] = True  # 2 voxels below the lesion: 2 mm at 1 mm rows, 6 mm at 3 mm rows
    pred[5, 8] = True  # 2 voxels right of it
    res = lesion_wise(pred, ref, spacing, dilation_mm=2.5, min_volume_mm3=0.0)
    assert (res.tp, res.fp, res.fn) == (1, 1, 0)
    pred_cc = cc3d.connected_components(pred, connectivity=8)
    assert res.lesions[0].pred_ids == tuple(sorted([1, int(pred_cc[matched_pixel])]))
    assert res.lesions[1].pred_ids == (int(pred_cc[spurious_pixel]),)


def test_3d_cubes_hit_miss_and_false_positive_with_anisotropic_spacing():
    shape = (8, 12, 12)
    spacing = (2.0, 1.0, 1.0)
    ref = np.zeros(shape, bool)
    ref[1:3, 1:4, 1:4] = True  # 18 voxels of 2 mm^3 = 36 mm^3
    ref[5:7, 7:11, 7:11] = True  # 32 voxels = 64 mm^3, missed
    pred = np.zeros(shape, bool)
    pred[1:3, 1:4, 1:3] = True  # 12 voxels inside the first cube
    pred[6, 1, 10] = True  # spurious single voxel
    res = lesion_wise(pred, ref, spacing, dilation_mm=1.0, min_volume_mm3=10.0)
    assert (res.n_ref, res.n_pred, res.tp, res.fp, res.fn) == (2, 2, 1, 1, 1)
    assert [lesion.ref_volume_mm3 for lesion in res.lesions[:2]] == [36.0, 64.0]
    dice_tp = 2 * 12 / (18 + 12)  # 0.8
    hd_tp = hausdorff_distance(pred & (ref & (np.arange(8) < 4)[:, None, None]), ref, spacing)
    assert res.lesions[0].dice == pytest.approx(dice_tp)
    # means over 2 lesions + 1 FP
    assert res.lesion_dice == pytest.approx(dice_tp / 3)
    tp_hd95 = res.lesions[0].hd95
    assert res.lesion_hd95 == pytest.approx((tp_hd95 + 2 * PENALTY) / 3)
    # the lesion's HD95 is medseg's per-case hd95 of the cube pair (bounded by its HD)
    first = np.zeros(shape, bool)
    first[1:3, 1:4, 1:4] = True
    assert tp_hd95 == pytest.approx(
        hausdorff_distance(pred & first, first, spacing, percentile=95.0)
    )
    assert 0 < tp_hd95 <= hd_tp


def test_single_lesion_is_flagged_and_equals_the_per_case_dice():
    ref = np.zeros((8, 8, 8), bool)
    ref[2:6, 2:6, 2:6] = True
    pred = np.roll(ref, 1, axis=2)
    res = lesion_wise(pred, ref, (1.0, 1.0, 1.0), min_volume_mm3=0.0)
    assert res.single_component and is_single_component(res)
    assert res.lesion_dice == pytest.approx(2 * 48 / 128)  # overlap 4*4*3 = 48 of 64 + 64
    assert res.lesion_hd95 == pytest.approx(
        hausdorff_distance(pred, ref, (1.0, 1.0, 1.0), percentile=95.0)
    )


def test_brats_footprint_is_the_repeated_18_neighbour_dilation():
    for n in (1, 2, 3):
        seed = np.zeros((2 * n + 1,) * 3, bool)
        seed[(n,) * 3] = True
        brats = ndimage.binary_dilation(
            seed, structure=ndimage.generate_binary_structure(3, 2), iterations=n
        )
        np.testing.assert_array_equal(
            dilation_footprint((1.0, 1.0, 1.0), float(n), footprint="brats"), brats
        )
    # the ellipsoid at 1 mm and 1 mm voxels is the 6-neighbour cross
    assert dilation_footprint((1.0, 1.0, 1.0), 1.0).sum() == 7
    assert dilation_footprint((1.0, 2.0), 2.0).shape == (5, 3)


def test_bad_inputs_are_rejected():
    mask = np.zeros((4, 4), bool)
    with pytest.raises(GeometryError, match="2D or 3D"):
        lesion_wise(np.zeros(4, bool), np.zeros(4, bool), (1.0,))
    with pytest.raises(GeometryError, match="differs"):
        lesion_wise(mask, np.zeros((4, 5), bool), (1.0, 1.0))
    with pytest.raises(ConfigError, match="connectivity"):
        lesion_wise(mask, mask, (1.0, 1.0), connectivity=26)
    with pytest.raises(ConfigError, match="dilation_mm"):
        lesion_wise(mask, mask, (1.0, 1.0), dilation_mm=-1.0)
    with pytest.raises(ConfigError, match="footprint"):
        lesion_wise(mask, mask, (1.0, 1.0), footprint="ball")
    with pytest.raises(ConfigError, match="min_volume_mm3"):
        lesion_wise(mask, mask, (1.0, 1.0), min_volume_mm3=-1.0)


def test_docstring_examples_hold():
    result = doctest.testmod(lesions_module, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0


# --- BraTS reference, transcribed --------------------------------------------------------
# A line-by-line transcription of get_lesion_wise_score / get_lesion_wise_results
# (rachitsaluja/BraTS-2023-Metrics, brats_2023_metrics/surface_distance/brats_metrics.py) for
# one binary mask pair. The reference imports nibabel/pandas and DeepMind's surface-distance
# package, so its core loop is transcribed here; HD95 uses medseg's surfel HD95 (DeepMind's
# compute_robust_hausdorff definition, checked against DeepMind in test_metrics_peers).


def _brats_reference(pred, gt, dil_factor, lesion_volume_thresh):
    struct = ndimage.generate_binary_structure(3, 2)
    gt_cc = cc3d.connected_components(gt, connectivity=26)
    pred_cc = cc3d.connected_components(pred, connectivity=26)
    gt_dil = ndimage.binary_dilation(gt, structure=struct, iterations=dil_factor)
    gt_dil_cc = cc3d.connected_components(gt_dil, connectivity=26)
    combined = np.zeros_like(gt_dil_cc)
    for comp in range(1, int(gt_dil_cc.max()) + 1):
        tmp = (gt_dil_cc == comp).astype(gt_dil_cc.dtype) * gt_cc
        combined += np.where(tmp > 0, comp, 0).astype(combined.dtype)
    tp_list, gt_tp, fn, pairs = [], [], [], []
    for gt_comp in range(1, int(combined.max()) + 1):
        gt_tmp = combined == gt_comp
        gt_tmp_dil = ndimage.binary_dilation(gt_tmp, structure=struct, iterations=dil_factor)
        gt_volume = float(gt_tmp.sum())
        intersecting = np.unique(pred_cc * gt_tmp_dil)
        intersecting = intersecting[intersecting != 0]
        tp_list.extend(intersecting.tolist())
        pred_tmp = np.isin(pred_cc, intersecting)
        dice = 2.0 * np.logical_and(pred_tmp, gt_tmp).sum() / (pred_tmp.sum() + gt_tmp.sum())
        if pred_tmp.any():
            hd = hausdorff_distance(
                pred_tmp, gt_tmp, (1.0, 1.0, 1.0), percentile=95.0, surface="surfel"
            )
        else:
            hd = math.inf
        pairs.append((len(intersecting), gt_volume, dice, hd))
        (gt_tp if len(intersecting) else fn).append(gt_comp)
    fp = np.unique(pred_cc[np.isin(pred_cc, tp_list + [0], invert=True)])
    fn_sub = sum(1 for n, vol, _, _ in pairs if n == 0 and vol <= lesion_volume_thresh)
    tp_sub = sum(1 for n, vol, _, _ in pairs if n != 0 and vol <= lesion_volume_thresh)
    kept = [
        (d, 374.0 if h == math.inf else h) for _, vol, d, h in pairs if vol > lesion_volume_thresh
    ]
    den = len(kept) + len(fp)
    dice = sum(d for d, _ in kept) / den if den else 1.0
    hd95 = (sum(h for _, h in kept) + len(fp) * 374.0) / den if den else 0.0
    return {
        "tp": len(gt_tp) - tp_sub,
        "fp": len(fp),
        "fn": len(fn) - fn_sub,
        "dice": dice,
        "hd95": hd95,
    }


def _random_blobs(rng, shape, n_blobs, max_radius):
    mask = np.zeros(shape, bool)
    grid = np.indices(shape)
    for _ in range(n_blobs):
        centre = rng.uniform(0, shape)
        radii = rng.uniform(0.8, max_radius, size=3)
        mask |= sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1
    return mask


def _random_case(seed):
    """A reference of random ellipsoids; the prediction shifts it by a voxel, loses two of
    its components entirely (FN), loses parts of others and gains spurious blobs (FP)."""
    rng = np.random.default_rng(seed)
    shape = (40, 40, 40)
    gt = _random_blobs(rng, shape, 8, 4.0)
    gt_cc, n = cc3d.connected_components(gt, connectivity=26, return_N=True)
    lost = rng.choice(np.arange(1, n + 1), size=min(2, n - 1), replace=False)
    pred = np.roll(gt & ~np.isin(gt_cc, lost), 1, axis=int(rng.integers(3)))
    pred &= ~_random_blobs(rng, shape, 3, 5.0)
    return pred | _random_blobs(rng, shape, 4, 2.5), gt


def _compare_with_reference(pred, gt, dil_factor, thresh):
    expected = _brats_reference(pred, gt, dil_factor, thresh)
    res = lesion_wise(
        pred,
        gt,
        (1.0, 1.0, 1.0),
        dilation_mm=float(dil_factor),
        min_volume_mm3=float(thresh),
        footprint="brats",
        surface="surfel",
    )
    assert (res.tp, res.fp, res.fn) == (expected["tp"], expected["fp"], expected["fn"])
    assert res.lesion_dice == pytest.approx(expected["dice"], abs=1e-12)
    assert res.lesion_hd95 == pytest.approx(expected["hd95"], abs=1e-9)
    return res


@pytest.mark.parametrize(("seed", "dil_factor", "thresh"), [(0, 1, 2), (1, 3, 50), (2, 2, 10)])
def test_matches_the_brats_reference_on_random_3d_cases(seed, dil_factor, thresh):
    pred, gt = _random_case(seed)
    res = _compare_with_reference(pred, gt, dil_factor, thresh)
    assert res.tp > 1 and res.fn > 0 and res.fp > 0  # the case exercises every kind


def test_matches_the_brats_reference_on_split_and_merged_3d_lesions():
    gt = np.zeros((16, 8, 24), bool)
    gt[2:6, 2:6, 2:6] = True  # A: split into two predicted parts
    gt[2:6, 2:6, 12:16] = True  # B and C (5 rows below B): bridged by one predicted bar
    gt[11:15, 2:6, 12:16] = True
    gt[2:6, 2:6, 19:22] = True  # D, 3 columns right of B: merged with B at dilation 2
    pred = np.zeros_like(gt)
    pred[2:6, 2:6, 2:4] = True
    pred[2:6, 2:6, 5:7] = True  # reaches 1 voxel beyond A, within its dilation
    pred[3:14, 3:5, 13:15] = True  # the bar through B and C
    for dil_factor, n_ref in ((1, 4), (2, 3)):
        res = _compare_with_reference(pred, gt, dil_factor, 0)
        assert res.n_ref == n_ref and res.fp == 0
        assert res.lesions[0].pred_ids == (1, 2)  # the split lesion
        shared = [lesion.pred_ids for lesion in res.lesions if lesion.kind == "tp"]
        assert shared[1:] == [(3,), (3,)]  # the bar matched by B (with D) and C
