"""Fast registration: downsampled copies, B-spline from affine, parallel atlases, bad options."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medseg.classic.atlas import multi_atlas, propagate_atlases
from medseg.classic.registration import propagate, register, resample
from medseg.classic.registration_stages import downsampled
from medseg.errors import ConfigError
from medseg.io import Image
from medseg.io.formats import to_sitk


def _phantom_2d(size: int = 128, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A body with a bright and a dark ellipse (no symmetry), lightly blurred; ``(y, x)``."""
    y, x = np.mgrid[:size, :size].astype(float) - size / 2
    y, x, s = y - shift[0], x - shift[1], size / 128
    body = (y / (44 * s)) ** 2 + (x / (54 * s)) ** 2 < 1
    bright = ((y + 12 * s) / (14 * s)) ** 2 + ((x - 18 * s) / (20 * s)) ** 2 < 1
    dark = ((y - 16 * s) / (10 * s)) ** 2 + ((x + 20 * s) / (8 * s)) ** 2 < 1
    return ndimage.gaussian_filter(100.0 * body + 80 * bright - 50 * dark, 1.5 * s)


def _labels_2d(image: np.ndarray) -> np.ndarray:
    """1 = bright ellipse, 2 = dark ellipse (thresholds of the phantom)."""
    return np.where(image > 140, 1, np.where((image < 70) & (image > 20), 2, 0)).astype(np.uint8)


def _known_affine_2d(image: Image) -> sitk.AffineTransform:
    """Rotation 0.08 rad, anisotropic scaling and shear, a (2.5, -1.5) mm translation."""
    rotation = sitk.Euler2DTransform()
    rotation.SetAngle(0.08)
    matrix = np.reshape(rotation.GetMatrix(), (2, 2)) @ np.array([[1.06, 0.03], [0.0, 0.95]])
    affine = sitk.AffineTransform(2)
    centre = [(n - 1) / 2 for n in image.spatial_shape[::-1]]
    affine.SetCenter(to_sitk(image).TransformContinuousIndexToPhysicalPoint(centre))
    affine.SetMatrix(matrix.ravel().tolist())
    affine.SetTranslation((2.5, -1.5))
    return affine


def _max_error_voxels(image: Image, truth: sitk.Transform, found: sitk.Transform) -> float:
    """Largest distance of truth(found(p)) from p over inner points, in full-resolution voxels."""
    reference = to_sitk(image)
    size = image.spatial_shape[0]
    indices = np.random.default_rng(0).integers(size // 4, 3 * size // 4, (60, 2))
    points = [reference.TransformIndexToPhysicalPoint([int(i) for i in p]) for p in indices]
    errors = [
        np.linalg.norm(np.subtract(truth.TransformPoint(found.TransformPoint(p)), p))
        for p in points
    ]
    return max(errors) / max(image.spacing)


def _smooth_warp(image: Image, seed: int = 0, sigma_mm: float = 5.0) -> sitk.BSplineTransform:
    warp = sitk.BSplineTransformInitializer(to_sitk(image), [3, 3], 3)
    params = np.random.default_rng(seed).normal(0.0, sigma_mm, len(warp.GetParameters()))
    warp.SetParameters(params.tolist())
    return warp


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_downsampled_copy_keeps_the_physical_extent() -> None:
    image = to_sitk(Image(np.zeros((300, 512), np.float32), spacing=(0.5, 0.8), origin=(4, -2)))
    small = downsampled(image, 256)
    assert small.GetSize() == (256, 150)
    np.testing.assert_allclose(small.GetSpacing(), (1.6, 1.0))
    # the first block's centre: half a block minus half an input voxel past the origin
    np.testing.assert_allclose(small.GetOrigin(), (4 + 0.4, -2 + 0.25))  # origin is x, y
    assert downsampled(image, None) is image and downsampled(image, 512) is image


def test_downsampled_registration_recovers_affine_within_half_voxel_at_full_resolution() -> None:
    fixed = Image(_phantom_2d(192), spacing=(0.9, 1.1), origin=(3.0, -2.0))
    truth = _known_affine_2d(fixed)
    moving = resample(fixed, truth, fixed)  # moving(x) = fixed(truth(x))
    result = register(fixed, moving, transform="affine", metric="ncc", max_size=96, threads=1)
    assert result.kind == "affine"
    assert _max_error_voxels(fixed, truth, result.transform) < 0.5


def test_bspline_recovers_smooth_warp_better_than_affine() -> None:
    fixed = Image(_phantom_2d(128), spacing=(1.0, 1.0))
    labels = fixed.with_array(_labels_2d(fixed.array))
    warp = _smooth_warp(fixed)
    moving, moving_labels = resample(fixed, warp, fixed), propagate(labels, warp, fixed)
    options = {"metric": "mattes_mi", "max_size": 64, "threads": 1}
    affine = register(fixed, moving, transform="affine", **options)
    bspline = register(fixed, moving, transform="bspline", mesh_mm=32.0, **options)
    assert bspline.kind == "bspline"
    scores = {}
    for name, result in (("affine", affine), ("bspline", bspline)):
        back = propagate(moving_labels, result.transform, fixed).array
        scores[name] = np.mean([_dice(back == v, labels.array == v) for v in (1, 2)])
    assert scores["bspline"] > scores["affine"] + 0.02
    assert scores["bspline"] > 0.9


def test_bspline_from_initial_affine_equals_full_bspline_registration() -> None:
    fixed = Image(_phantom_2d(96), spacing=(1.0, 1.0))
    moving = resample(fixed, _smooth_warp(fixed, seed=1), fixed)
    options = {"metric": "ncc", "threads": 1, "mesh_mm": 32.0}
    affine = register(fixed, moving, transform="affine", **options)
    refined = register(fixed, moving, transform="bspline", initial=affine, **options)
    direct = register(fixed, moving, transform="bspline", **options)
    assert refined.kind == direct.kind == "bspline"
    np.testing.assert_allclose(refined.metric_after, direct.metric_after, rtol=1e-9)


def _atlases(count: int, size: int = 64) -> list[tuple[Image, Image]]:
    pairs = []
    for number in range(count):
        shift = (2.0 * number - count, 3.0 - 1.5 * number)
        array = _phantom_2d(size, shift=shift)
        image = Image(array, spacing=(1.0, 1.0))
        pairs.append((image, image.with_array(_labels_2d(array))))
    return pairs


def test_parallel_jobs_give_the_same_labels_as_one_job() -> None:
    target = Image(_phantom_2d(64, shift=(1.0, -1.0)), spacing=(1.0, 1.0))
    atlases = _atlases(3)
    options = {"k": 2, "transform": "bspline", "metric": "ncc", "mesh_mm": 32.0, "threads": 1}
    serial = multi_atlas(target, atlases, jobs=1, **options)
    parallel = multi_atlas(target, atlases, jobs=2, **options)
    np.testing.assert_array_equal(serial.array, parallel.array)
    assert set(np.unique(serial.array)) == {0, 1, 2}


def test_propagate_atlases_ranks_after_affine_and_refines_the_top_k() -> None:
    target = Image(_phantom_2d(64, shift=(1.0, -1.0)), spacing=(1.0, 1.0))
    ranked = propagate_atlases(
        target, _atlases(3), k=2, transform="bspline", metric="ncc", mesh_mm=32.0, threads=1
    )
    assert len(ranked) == 2
    assert ranked[0].similarity >= ranked[1].similarity
    assert {atlas.registration.kind for atlas in ranked} <= {"bspline", "affine"}
    assert all(atlas.label.array.shape == target.spatial_shape for atlas in ranked)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_size": 8}, "max_size must be None or an int >= 16"),
        ({"max_size": 64.0}, "max_size must be None or an int >= 16"),
        ({"sampling": 0.0}, r"sampling must be a fraction in \(0, 1\]"),
        ({"sampling": 1.5}, r"sampling must be a fraction in \(0, 1\]"),
        ({"mesh_mm": -5.0}, "mesh_mm must be a positive distance in mm"),
        ({"iterations": 0}, "iterations must be an int >= 1"),
        ({"threads": 0}, "threads must be None or an int >= 1"),
        ({"seed": -1}, r"seed must be an int in \[0, 2\*\*31 - 2\]"),
    ],
)
def test_bad_register_option_raises_one_clear_error(options: dict, match: str) -> None:
    image = Image(_phantom_2d(32), spacing=(1.0, 1.0))
    with pytest.raises(ConfigError, match=match):
        register(image, image, transform="bspline", **options)


def test_initial_needs_the_bspline_transform() -> None:
    image = Image(_phantom_2d(32), spacing=(1.0, 1.0))
    affine = register(image, image, transform="affine", metric="ncc", threads=1)
    with pytest.raises(ConfigError, match="initial .* needs transform='bspline'"):
        register(image, image, transform="affine", initial=affine)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"jobs": 0}, "jobs must be an int >= 1"),
        ({"threads": 0}, "threads must be None or an int >= 1"),
        ({"max_size": 4}, "max_size must be None or an int >= 16"),
    ],
)
def test_bad_multi_atlas_option_raises_one_clear_error(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        multi_atlas(Image(_phantom_2d(32), spacing=(1.0, 1.0)), _atlases(2, 32), **options)
