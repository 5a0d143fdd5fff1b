"""Registration, label propagation, label fusion, multi-atlas segmentation and MNI152."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medseg.classic import registration
from medseg.classic.atlas import fuse_labels, fuse_weighted, local_ncc, mni152, multi_atlas
from medseg.classic.registration import propagate, register, resample
from medseg.classic.registry import CLASSIC
from medseg.errors import ConfigError, DatasetError, GeometryError
from medseg.io import Image
from medseg.io.formats import to_sitk


def _phantom_3d(size: int = 48) -> np.ndarray:
    """Three overlapping ellipsoids of different intensity (no symmetry), lightly blurred."""
    z, y, x = np.mgrid[:size, :size, :size].astype(float) - size / 2
    body = (z / 16) ** 2 + (y / 12) ** 2 + (x / 18) ** 2 < 1
    bright = ((z - 5) / 5) ** 2 + ((y + 4) / 4) ** 2 + ((x - 6) / 7) ** 2 < 1
    dark = ((z + 6) / 4) ** 2 + ((y - 3) / 6) ** 2 + ((x + 5) / 3) ** 2 < 1
    return ndimage.gaussian_filter((100.0 * body + 80 * bright + 40 * dark), 1.0)


def _known_affine(image: Image) -> sitk.AffineTransform:
    """Rotation (~3-5 degrees), anisotropic scaling/shear and a 2 mm translation."""
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(0.06, -0.04, 0.08)
    matrix = np.reshape(rotation.GetMatrix(), (3, 3)) @ np.array(
        [[1.05, 0.03, 0.0], [0.0, 0.97, 0.02], [0.0, 0.0, 1.02]]
    )
    affine = sitk.AffineTransform(3)
    centre = [(n - 1) / 2 for n in image.spatial_shape[::-1]]
    affine.SetCenter(to_sitk(image).TransformContinuousIndexToPhysicalPoint(centre))
    affine.SetMatrix(matrix.ravel().tolist())
    affine.SetTranslation((2.0, -1.5, 1.0))
    return affine


def _max_point_error_voxels(image: Image, truth: sitk.Transform, found: sitk.Transform) -> float:
    """Largest distance (in voxels of the largest spacing) of truth(found(p)) from p."""
    reference = to_sitk(image)
    indices = np.random.default_rng(0).integers(10, 38, (60, 3))
    points = [reference.TransformIndexToPhysicalPoint([int(i) for i in p]) for p in indices]
    errors = [
        np.linalg.norm(np.subtract(truth.TransformPoint(found.TransformPoint(p)), p))
        for p in points
    ]
    return max(errors) / max(image.spacing)


def test_register_recovers_known_affine_within_half_voxel() -> None:
    fixed = Image(_phantom_3d(), spacing=(1.2, 1.0, 0.9), origin=(3.0, -2.0, 5.0))
    truth = _known_affine(fixed)
    moving = resample(fixed, truth, fixed)  # moving(x) = fixed(truth(x))
    result = register(fixed, moving, transform="affine", metric="ncc")
    # found maps fixed -> moving points, so truth(found(p)) must come back to p
    assert _max_point_error_voxels(fixed, truth, result.transform) < 0.5
    assert result.metric_after < result.metric_before
    assert result.kind == "affine"


def test_register_rigid_recovers_rotation_mattes_mi() -> None:
    fixed = Image(_phantom_3d(), spacing=(1.2, 1.0, 0.9))
    truth = sitk.Euler3DTransform()
    truth.SetCenter(to_sitk(fixed).TransformContinuousIndexToPhysicalPoint([23.5] * 3))
    truth.SetRotation(0.06, -0.04, 0.08)
    truth.SetTranslation((2.0, -1.5, 1.0))
    moving = resample(fixed, truth, fixed)
    result = register(fixed, moving, transform="rigid", metric="mattes_mi")
    assert _max_point_error_voxels(fixed, truth, result.transform) < 0.5


def test_propagate_is_nearest_neighbour_on_reference_grid() -> None:
    labels = np.zeros((10, 12), dtype=np.uint8)
    labels[2:5, 3:7] = 3
    atlas = Image(labels, spacing=(1.0, 1.0))
    reference = Image(np.zeros((10, 12)), spacing=(1.0, 1.0))
    shift = sitk.TranslationTransform(2, (2.0, 1.0))  # reference (x, y) -> atlas (x+2, y+1)
    out = propagate(atlas, shift, reference)
    expected = np.zeros_like(labels)
    expected[1:4, 1:5] = 3
    assert out.array.dtype == np.uint8
    np.testing.assert_array_equal(out.array, expected)


# ----------------------------------------------------------------- label fusion (hand-made)


def test_fuse_labels_majority() -> None:
    stack = np.array([[[1, 0], [2, 2]], [[1, 1], [2, 0]], [[0, 1], [1, 0]]])
    np.testing.assert_array_equal(fuse_labels(stack), [[1, 1], [2, 0]])


def test_fuse_labels_tie_goes_to_larger_weight_then_lowest_label() -> None:
    stack = np.array([[2, 2, 3], [1, 1, 1]])  # three voxels, two atlases: every voxel tied
    weights = np.array([[0.9, 0.5, 0.5], [0.2, 0.5, 0.5]])
    np.testing.assert_array_equal(fuse_labels(stack, weights=weights), [2, 1, 1])
    np.testing.assert_array_equal(fuse_labels(stack), [1, 1, 1])


def test_fuse_labels_three_way_tie_lowest_label_wins() -> None:
    stack = np.array([[3], [0], [2]])
    np.testing.assert_array_equal(fuse_labels(stack, weights=np.full((3, 1), 0.4)), [0])


def test_fuse_weighted_prefers_weight_over_votes() -> None:
    stack = np.array([[1], [1], [2]])
    weights = np.array([[0.1], [0.1], [0.9]])
    assert fuse_weighted(stack, weights=weights).tolist() == [2]
    assert fuse_labels(stack, weights=weights).tolist() == [1]


def test_local_ncc_is_one_for_affine_related_images() -> None:
    rng = np.random.default_rng(1)
    first = ndimage.gaussian_filter(rng.normal(size=(20, 20)), 2)
    weights = local_ncc(first, 3 * first + 1, (1.0, 1.0))
    np.testing.assert_allclose(weights, 1.0, atol=1e-6)
    assert local_ncc(first, -first, (1.0, 1.0)).max() == 0.0


# ----------------------------------------------------------------- multi-atlas (2D phantoms)


def _subject(rng: np.random.Generator, *, size: int = 64) -> tuple[Image, Image]:
    """A 2D 'organ' (label 1) with an inner structure (label 2), random shape and pose.

    Each subject has its own boundary bumps, so single-atlas errors are independent and the
    vote averages them out (the seeds' "robust, like ensembles").
    """
    y, x = np.mgrid[:size, :size].astype(float)
    angle = rng.uniform(-0.25, 0.25)
    cy, cx = size / 2 + rng.uniform(-3, 3, 2)
    u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
    v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
    ry, rx = 14 * rng.uniform(0.85, 1.15), 22 * rng.uniform(0.85, 1.15)
    # boundary bumps (angular harmonics 3-5) that no affine transform can undo
    theta = np.arctan2(v, u)
    bumps = sum(rng.normal(0, 0.06) * np.cos(m * theta + rng.uniform(0, 6.3)) for m in (3, 4, 5))
    organ = np.sqrt((u / rx) ** 2 + (v / ry) ** 2) < 1 + bumps
    inner = ((u - 6) / (7 * rng.uniform(0.8, 1.2))) ** 2 + ((v + 2) / 5) ** 2 < 1
    labels = np.where(inner, 2, np.where(organ, 1, 0)).astype(np.uint8)
    intensity = np.array([10.0, 60.0, 120.0])[labels] + rng.normal(0, 8, labels.shape)
    image = ndimage.gaussian_filter(intensity, 0.7)
    return Image(image, spacing=(1.0, 1.0)), Image(labels, spacing=(1.0, 1.0))


def _dice_of(a: np.ndarray, b: np.ndarray, label: int) -> float:
    return float(
        2 * ((a == label) & (b == label)).sum() / ((a == label).sum() + (b == label).sum())
    )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return (_dice_of(a, b, 1) + _dice_of(a, b, 2)) / 2


@pytest.mark.slow  # 15 registrations, ~12 s on 2 cores
def test_multi_atlas_fusion_beats_median_single_atlas() -> None:
    rng = np.random.default_rng(7)
    target, truth = _subject(rng)
    atlases = [_subject(rng) for _ in range(5)]
    singles = []
    for image, labels in atlases:
        result = register(target, image, transform="affine", metric="mattes_mi")
        singles.append(_dice(propagate(labels, result.transform, target).array, truth.array))
    fused = multi_atlas(target, atlases, fusion="majority")
    weighted = multi_atlas(target, atlases, fusion="weighted")
    assert fused.array.dtype == np.uint8 and fused.same_grid(target)
    assert _dice(fused.array, truth.array) > np.median(singles)
    assert _dice(weighted.array, truth.array) > np.median(singles)


def test_multi_atlas_is_registered() -> None:
    assert CLASSIC.get("multi_atlas") is multi_atlas


def test_multi_atlas_top_k_of_identical_atlas_reproduces_its_labels() -> None:
    rng = np.random.default_rng(5)
    target, truth = _subject(rng, size=40)
    other = _subject(rng, size=40)
    # the target itself ranks first (NCC 1), so k=1 returns its own labels
    out = multi_atlas(target, [other, (target, truth)], k=1, transform="rigid", metric="ncc")
    assert out.array.dtype == np.uint8 and out.same_grid(target)
    assert _dice(out.array, truth.array) > 0.99


# ----------------------------------------------------------------- bad input


def test_bad_atlas_input_raises_one_clear_error() -> None:
    rng = np.random.default_rng(3)
    target, _ = _subject(rng, size=32)
    atlas = _subject(rng, size=32)
    volume = Image(np.zeros((4, 32, 32)), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(GeometryError, match="atlas 0 is 3D but the target is 2D"):
        multi_atlas(target, [(volume, volume.with_array(np.ones((4, 32, 32), np.uint8)))])
    disjoint = (atlas[0], atlas[1].with_array(atlas[1].array * 5))
    with pytest.raises(DatasetError, match="disjoint"):
        multi_atlas(target, [atlas, disjoint])
    with pytest.raises(ConfigError, match="k=3"):
        multi_atlas(target, [atlas], k=3)
    with pytest.raises(ConfigError, match="no atlases"):
        multi_atlas(target, [])
    nan_target = target.with_array(np.where(target.array > 100, np.nan, target.array))
    with pytest.raises(DatasetError, match="NaN"):
        multi_atlas(nan_target, [atlas])
    with pytest.raises(GeometryError, match="2D but moving image is 3D"):
        register(target, volume)
    with pytest.raises(ConfigError, match="transform 'demons'"):
        register(target, atlas[0], transform="demons")


def test_bspline_worse_than_affine_warns_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    fixed, _ = _subject(rng, size=48)

    def far_off(fixed_itk, moving_itk, affine, settings):  # a B-spline stage gone wrong
        return sitk.CompositeTransform([affine, sitk.TranslationTransform(2, (15.0, -12.0))])

    monkeypatch.setattr(registration, "bspline_stage", far_off)
    with pytest.warns(UserWarning, match="falling back to the affine"):
        result = register(fixed, fixed, transform="bspline", metric="ncc")
    assert result.kind == "affine"
    assert isinstance(result.transform, sitk.AffineTransform)


# ----------------------------------------------------------------- MNI152 (nilearn, offline)


@pytest.fixture(scope="module")
def mni4() -> tuple[Image, Image]:
    pytest.importorskip("nilearn")
    return mni152(resolution_mm=4)


@pytest.mark.slow
def test_mni152_geometry_matches_itk_reading_of_the_nifti(mni4, tmp_path) -> None:
    from nilearn import datasets

    from medseg.io import read_image

    t1, labels = mni4
    path = tmp_path / "t1.nii.gz"
    datasets.load_mni152_template(resolution=4).to_filename(path)
    reference = read_image(path)  # ITK's geometry of the same file
    assert t1.same_grid(reference) and labels.same_grid(reference)
    # the file is written back as uint8 with a scale factor: 1/255 quantisation
    np.testing.assert_allclose(t1.array, reference.array, atol=0.005)
    counts = np.bincount(labels.array.ravel(), minlength=3)
    assert labels.array.dtype == np.uint8 and counts.size == 3 and counts.min() > 1000


@pytest.mark.slow
def test_mni152_smooth_warp_registered_back(mni4) -> None:
    t1, labels = mni4
    warp = sitk.BSplineTransformInitializer(to_sitk(t1), [3, 3, 3], 3)
    params = np.random.default_rng(0).normal(0.0, 6.0, len(warp.GetParameters()))
    warp.SetParameters(params.tolist())
    moving, moving_labels = resample(t1, warp, t1), propagate(labels, warp, t1)
    assert _dice_of(moving_labels.array, labels.array, 2) < 0.8  # the warp matters
    # a tenth of the voxels and 10 L-BFGS iterations per level: 9 s instead of 45 s, and
    # still Dice 0.95 / 0.95 (defaults: 0.953 / 0.948)
    result = register(
        t1, moving, transform="bspline", metric="mattes_mi", sampling=0.1, iterations=10
    )
    back = propagate(moving_labels, result.transform, t1).array
    assert result.kind == "bspline"
    assert _dice_of(back, labels.array, 2) > 0.8 and _dice_of(back, labels.array, 1) > 0.7


def test_mni152_without_nilearn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nilearn", None)
    with pytest.raises(ConfigError, match=r"medseg\[atlas\]"):
        mni152(2)


def test_mni152_with_a_nilearn_that_fails_to_import_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins

    real_import = builtins.__import__

    def broken_nilearn(name, *args, **kwargs):
        if name == "nilearn":
            raise AttributeError("'Version' object has no attribute '__replace__'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken_nilearn)
    with pytest.raises(ConfigError, match=r"nilearn fails to import .*packaging"):
        mni152(2)


def test_registration_ending_worse_than_start_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    fixed, _ = _subject(rng, size=48)

    def diverged(fixed_itk, moving_itk, kind, settings):  # an optimiser that ran away
        return sitk.Euler2DTransform(), sitk.TranslationTransform(2, (9.0, 7.0))

    monkeypatch.setattr(registration, "linear_stages", diverged)
    with pytest.warns(UserWarning, match="ended worse than it started"):
        result = register(fixed, fixed, transform="rigid", metric="ncc")
    assert result.metric_after > result.metric_before


def test_mni152_logs_the_copyright_notice(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("nilearn")
    from medseg.classic.atlas import MNI152_NOTICE

    with caplog.at_level(logging.INFO, logger="medseg.classic.mni152"):
        mni152(resolution_mm=4)
    assert any(MNI152_NOTICE in record.getMessage() for record in caplog.records)
    assert "Copyright (C) 1993-2009 Louis Collins" in MNI152_NOTICE
