"""The optimisation stages behind :func:`medseg.classic.registration.register`.

The pyramid and seeded metric sampling (:func:`make_method`), the optional block-averaged
copy (:func:`downsampled`), the rigid -> affine cascade (:func:`linear_stages`) and the
coarse-to-fine B-spline stage (:func:`bspline_stage`); every stage takes a
:class:`StageSettings`. ``register`` checks the user's options and calls these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from medseg.errors import DatasetError

TRANSFORMS = ("rigid", "affine", "bspline")
METRICS = ("mattes_mi", "ncc")
SAMPLING_PERCENTAGE = 0.25
"""Fraction of the fixed image's voxels the metric samples (at random, seeded) ..."""
MIN_SAMPLES = 3000
"""... but at least this many voxels per pyramid level (all of them when fewer)."""
BSPLINE_CONTROL_SPACING_MM = 50.0
"""Approximate distance between B-spline control points at the finest mesh (mm)."""
BSPLINE_ITERATIONS = 20
"""L-BFGS-B iterations of the B-spline stage per pyramid level."""


@dataclass(frozen=True)
class StageSettings:
    """What every stage of one registration shares (checked by ``register``)."""

    metric: str
    seed: int
    sampling: float = SAMPLING_PERCENTAGE
    threads: int = 1
    mesh_mm: float = BSPLINE_CONTROL_SPACING_MM
    iterations: int = BSPLINE_ITERATIONS


def downsampled(image: sitk.Image, max_size: int | None, *, threads: int = 1) -> sitk.Image:
    """``image`` block-averaged so that its longest side is at most ``max_size`` voxels.

    Every axis shrinks by the same integer factor ``ceil(longest side / max_size)`` (an axis
    never below one voxel); ITK's ``BinShrink`` averages each block, which also anti-aliases,
    and places the output voxels at the blocks' centres, so the physical extent is kept
    (less the incomplete blocks at the far end). ``None`` or a small image: ``image`` itself.

    Example:
        >>> small = downsampled(sitk.Image([512, 300], sitk.sitkFloat32), 256)
        >>> small.GetSize(), small.GetSpacing()
        ((256, 150), (2.0, 2.0))
    """
    if max_size is None or max(image.GetSize()) <= max_size:
        return image
    factor = -(-max(image.GetSize()) // max_size)
    shrink = sitk.BinShrinkImageFilter()
    shrink.SetShrinkFactors([min(factor, n) for n in image.GetSize()])
    shrink.SetNumberOfThreads(threads)
    return shrink.Execute(image)


def make_method(
    settings: StageSettings, *, levels: tuple[int, ...], size: tuple[int, ...]
) -> sitk.ImageRegistrationMethod:
    """A registration method with the metric, seeded sampling and the pyramid configured.

    ``size`` is the fixed image's ITK size; small images (or coarse levels) sample more
    than ``settings.sampling`` so that the sampled metric is not dominated by noise (2D 64^2
    at shrink 4 would otherwise see 64 samples and may diverge).
    """
    method = sitk.ImageRegistrationMethod()
    if settings.metric == "mattes_mi":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    else:
        method.SetMetricAsCorrelation()
    method.SetMetricSamplingStrategy(method.RANDOM)
    voxels = [float(np.prod([max(1, n // shrink) for n in size])) for shrink in levels]
    # ITK takes seed 0 to mean "seed from the wall clock": shift so every seed is fixed
    method.SetMetricSamplingPercentagePerLevel(
        [min(1.0, max(settings.sampling, MIN_SAMPLES / v)) for v in voxels], settings.seed + 1
    )
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel(list(levels))
    method.SetSmoothingSigmasPerLevel([shrink / 2 for shrink in levels])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetNumberOfThreads(settings.threads)
    return method


def stage_metric(
    fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, settings: StageSettings
) -> float:
    """The metric of ``moving`` mapped by ``transform`` onto ``fixed`` (no pyramid)."""
    method = make_method(settings, levels=(1,), size=fixed.GetSize())
    method.SetInitialTransform(transform, inPlace=False)
    return float(execute(method, fixed, moving, evaluate=True))


def execute(
    method: sitk.ImageRegistrationMethod,
    fixed: sitk.Image,
    moving: sitk.Image,
    *,
    evaluate: bool = False,
) -> float:
    """Run the optimisation (or evaluate the metric); ITK's failures become one line."""
    try:
        if evaluate:
            return float(method.MetricEvaluate(fixed, moving))
        method.Execute(fixed, moving)
        return float(method.GetMetricValue())
    except RuntimeError as err:
        reason = next((line for line in str(err).splitlines() if "ITK ERROR" in line), str(err))
        raise DatasetError(
            f"register: SimpleITK registration failed ({reason.split('): ')[-1].strip()}); "
            "check that the images overlap in world coordinates (origin, direction)"
        ) from None


def _stage(
    fixed: sitk.Image,
    moving: sitk.Image,
    start: sitk.Transform,
    settings: StageSettings,
    *,
    levels: tuple[int, ...],
    lbfgsb: bool = False,
) -> sitk.Transform:
    """``start`` optimised (regular-step gradient descent or L-BFGS-B); a new transform."""
    method = make_method(settings, levels=levels, size=fixed.GetSize())
    if lbfgsb:  # no parameter scales: L-BFGS-B's curvature estimate handles the conditioning
        method.SetOptimizerAsLBFGSB(
            gradientConvergenceTolerance=1e-6,
            numberOfIterations=200,
            maximumNumberOfCorrections=10,
            maximumNumberOfFunctionEvaluations=1000,
            costFunctionConvergenceFactor=1e5,
        )
    else:
        method.SetOptimizerAsRegularStepGradientDescent(
            learningRate=1.0,
            minStep=1e-4,
            numberOfIterations=200,
            relaxationFactor=0.5,
            gradientMagnitudeTolerance=1e-8,
        )
        method.SetOptimizerScalesFromPhysicalShift()
    optimised = start.__class__(start)
    method.SetInitialTransform(optimised, inPlace=True)
    execute(method, fixed, moving)
    return optimised


def _affine_stage(
    fixed: sitk.Image, moving: sitk.Image, start: sitk.AffineTransform, settings: StageSettings
) -> sitk.Transform:
    """L-BFGS-B from ``start``; gradient descent when it diverges or ends worse than it began.

    L-BFGS-B has no parameter scales, and its first step can throw small images (a 64^2
    2D phantom) out of overlap; the scaled regular-step descent is the safe, slower path.
    """
    try:
        result = _stage(fixed, moving, start, settings, levels=(2, 1), lbfgsb=True)
        if stage_metric(fixed, moving, result, settings) <= stage_metric(
            fixed, moving, start, settings
        ):
            return result
    except DatasetError:
        pass
    return _stage(fixed, moving, start, settings, levels=(2, 1))


def linear_stages(
    fixed: sitk.Image, moving: sitk.Image, kind: str, settings: StageSettings
) -> tuple[sitk.Transform, sitk.Transform]:
    """(initial, optimised) rigid or affine transform, centred on the fixed image's centre.

    The rigid stage uses regular-step gradient descent (shrink 4, 2, 1). An affine
    registration continues from the rigid result with L-BFGS-B (shrink 2, 1): from the
    centred start directly, or with gradient descent, it stopped 0.7-2 mm off a known affine
    on a 48^3 phantom (slow convergence of the 12 coupled parameters); the cascade lands
    within ~0.45 mm (Mattes MI) / ~0.2 mm (NCC).
    """
    dims = fixed.GetDimension()
    rigid = sitk.Euler3DTransform() if dims == 3 else sitk.Euler2DTransform()
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, rigid, sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    result = _stage(fixed, moving, initial, settings, levels=(4, 2, 1))
    if kind == "affine":
        affine = sitk.AffineTransform(dims)
        affine.SetCenter(result.GetCenter())
        affine.SetMatrix(result.GetMatrix())
        affine.SetTranslation(result.GetTranslation())
        result = _affine_stage(fixed, moving, affine, settings)
    return initial, result


def bspline_stage(
    fixed: sitk.Image, moving: sitk.Image, affine: sitk.Transform, settings: StageSettings
) -> sitk.Transform:
    """A B-spline stage on top of ``affine``; returns the composite (affine after B-spline).

    Coarse to fine: shrink 2 with a mesh of control points ~``2 * mesh_mm`` apart, then
    full resolution with the mesh refined to ~``mesh_mm``; L-BFGS (ITK's LBFGS2),
    ``iterations`` per level.
    """
    extent_mm = [
        size * spacing for size, spacing in zip(fixed.GetSize(), fixed.GetSpacing(), strict=True)
    ]
    mesh = [max(1, round(e / (2 * settings.mesh_mm))) for e in extent_mm]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, 3)
    method = make_method(settings, levels=(2, 1), size=fixed.GetSize())
    # L-BFGS-B (ITK's v4 wrapper) rejects the refined mesh's parameter count: use LBFGS2
    method.SetOptimizerAsLBFGS2(
        solutionAccuracy=1e-5,
        numberOfIterations=settings.iterations,
        deltaConvergenceTolerance=1e-5,
    )
    method.SetMovingInitialTransform(affine)
    method.SetInitialTransformAsBSpline(bspline, inPlace=True, scaleFactors=[1, 2])
    execute(method, fixed, moving)
    # a CompositeTransform applies its last transform first: x -> affine(bspline(x))
    return sitk.CompositeTransform([affine, bspline])
