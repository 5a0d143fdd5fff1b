"""Random spatial transforms: one combined affine + elastic grid, flips, rot90, crops.

``RandomSpatial`` composes rotation, scaling, shear, translation and an elastic deformation
(the original U-Net's: random displacements on a coarse control grid, smoothly
interpolated) into one sampling grid, so the batch is resampled with a single
``grid_sample`` call (image) plus one for the label. Flips, quarter turns and crop-or-pad are
exact index operations that never interpolate (``medseg.transforms.flip_crop``, re-exported
here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from medseg.transforms.base import (
    LabelOrNone,
    Transform,
    bernoulli,
    check_probability,
    check_range,
    uniform,
)
from medseg.transforms.flip_crop import CropOrPad, RandomFlip, RandomRot90
from medseg.transforms.grid import (
    ImagePadding,
    LabelMode,
    affine_matrix,
    centre_start,
    crop_or_pad,
    resample,
    rotation_planes,
    sampling_grid,
)
from medseg.transforms.separable import bspline_matrix, expand_separable

Range = tuple[float, float]


def _resample_rows(
    image: Tensor,
    label: LabelOrNone,
    active: Tensor,
    out_shape: Sequence[int],
    grid_for: Callable[[Tensor], Tensor],
    *,
    label_mode: LabelMode,
    image_padding: ImagePadding,
    label_fill: int,
) -> tuple[Tensor, LabelOrNone]:
    """Resample the ``active`` samples on ``grid_for(rows)``; centre-crop/pad the others exactly."""
    in_shape = list(image.shape[2:])
    start = centre_start(in_shape, out_shape)
    image_out = crop_or_pad(image, start, out_shape, fill=0.0)
    label_out = None if label is None else crop_or_pad(label, start, out_shape, fill=label_fill)
    if not bool(active.any()):
        return image_out, label_out
    every = bool(active.all())
    rows = active.to(image.device)
    grid = grid_for(active)
    sub_label = None if label is None else (label if every else label[rows])
    new_image, new_label = resample(
        image if every else image[rows],
        sub_label,
        grid,
        label_mode=label_mode,
        image_padding=image_padding,
        label_fill=label_fill,
    )
    if every:
        return new_image, new_label
    image_out = image_out.clone() if image_out is image else image_out
    image_out[rows] = new_image
    if label_out is not None and new_label is not None:
        label_out = label_out.clone() if label_out is label else label_out
        label_out[rows] = new_label
    return image_out, label_out


class RandomSpatial(Transform):
    """Rotation, scaling, shear, translation and elastic deformation in one resampling.

    Each part applies per sample with its own probability; the parts drawn for a sample are
    composed into one grid. Samples that draw none are copied exactly (centre-cropped or
    padded when ``output_size`` differs from the input).

    Args:
        output_size: spatial shape of the output (e.g. the patch size when a larger patch was
            cut to avoid empty corners); None keeps the input shape.
        p_rotation: probability of a rotation.
        rotation_deg: angle range in degrees, for every rotation plane, or one range per plane
            of ``grid.rotation_planes`` (3-D: ``(z, y)``, ``(z, x)``, ``(y, x)``; give
            ``[(0, 0), (0, 0), (-180, 180)]`` for in-plane-only rotation of anisotropic data).
        p_scale: probability of scaling.
        scale: size factor range; > 1 enlarges the content (zoom in).
        isotropic_scale: one factor for all axes (True) or one per axis.
        p_translation: probability of a translation.
        translation_vox: shift range in voxels, per axis.
        p_shear: probability of a shear.
        shear: range of each off-diagonal shear factor.
        p_elastic: probability of an elastic deformation.
        elastic_std_vox: range of the standard deviation (voxels) of the control-point
            displacements; each sample draws one value, then Gaussian displacements.
        elastic_control_points: control points per axis (>= 4, including one outside each
            border); cubic B-splines interpolate them to every voxel.
        label_mode: "nearest" or "linear" (one-hot interpolation); see ``grid.resample``.
        image_padding: "zeros", "border" or "reflection" outside the input.
        label_fill: label value outside the input (0, or an ignore value such as -1).
        p: probability that the transform considers a sample at all.
        seed: seed of the transform's own generator.

    Example:
        >>> t = RandomSpatial(p_rotation=1.0, rotation_deg=(90, 90), seed=0)
        >>> image, _ = t(torch.arange(9.0).view(1, 1, 3, 3))
        >>> image[0, 0, 1, 1].item()
        4.0
    """

    def __init__(
        self,
        *,
        output_size: Sequence[int] | None = None,
        p_rotation: float = 0.0,
        rotation_deg: Range | Sequence[Range] = (-15.0, 15.0),
        p_scale: float = 0.0,
        scale: Range = (0.85, 1.25),
        isotropic_scale: bool = True,
        p_translation: float = 0.0,
        translation_vox: Range = (-10.0, 10.0),
        p_shear: float = 0.0,
        shear: Range = (-0.1, 0.1),
        p_elastic: float = 0.0,
        elastic_std_vox: Range = (2.0, 5.0),
        elastic_control_points: int | Sequence[int] = 5,
        label_mode: LabelMode = "nearest",
        image_padding: ImagePadding = "zeros",
        label_fill: int = 0,
        p: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed)
        self.output_size = None if output_size is None else tuple(int(s) for s in output_size)
        self.p_rotation = check_probability("p_rotation", p_rotation)
        ranges = [rotation_deg] if isinstance(rotation_deg[0], int | float) else list(rotation_deg)
        self.rotation_deg = [check_range("rotation_deg", r) for r in ranges]  # type: ignore[arg-type]
        self.p_scale = check_probability("p_scale", p_scale)
        self.scale = check_range("scale", scale)
        if self.scale[0] <= 0:
            raise ValueError(f"scale factors must be positive, got {scale}")
        self.isotropic_scale = isotropic_scale
        self.p_translation = check_probability("p_translation", p_translation)
        self.translation_vox = check_range("translation_vox", translation_vox)
        self.p_shear = check_probability("p_shear", p_shear)
        self.shear = check_range("shear", shear)
        self.p_elastic = check_probability("p_elastic", p_elastic)
        self.elastic_std_vox = check_range("elastic_std_vox", elastic_std_vox, low=0.0)
        self.elastic_control_points = elastic_control_points
        if label_mode not in ("nearest", "linear"):
            raise ValueError(f"label_mode must be 'nearest' or 'linear', got {label_mode!r}")
        self.label_mode: LabelMode = label_mode
        self.image_padding: ImagePadding = image_padding
        self.label_fill = int(label_fill)

    def _angle_ranges(self, dims: int) -> list[Range]:
        planes = len(rotation_planes(dims))
        if len(self.rotation_deg) == 1:
            return self.rotation_deg * planes
        if len(self.rotation_deg) != planes:
            raise ValueError(
                f"rotation_deg has {len(self.rotation_deg)} ranges; {dims}-D needs {planes}"
            )
        return self.rotation_deg

    def sample_parameters(
        self, batch: int, dims: int, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """Draw per-sample parameters (CPU); neutral values where a part does not apply."""
        applies = bernoulli([batch], self.p, generator)
        on = {
            k: bernoulli([batch], getattr(self, f"p_{k}"), generator) & applies
            for k in ("rotation", "scale", "translation", "shear", "elastic")
        }
        angles = torch.stack(
            [uniform([batch], lo, hi, generator) for lo, hi in self._angle_ranges(dims)], dim=1
        ) * (math.pi / 180.0)
        factors = uniform([batch, 1 if self.isotropic_scale else dims], *self.scale, generator)
        shift = uniform([batch, dims], *self.translation_vox, generator)
        shear = uniform([batch, dims, dims], *self.shear, generator) * (
            1 - torch.eye(dims, dtype=torch.float64)
        )
        std = uniform([batch], *self.elastic_std_vox, generator)
        points = self.elastic_control_points
        points = [points] * dims if isinstance(points, int) else list(points)
        noise = torch.randn([batch, dims, *points], generator=generator, dtype=torch.float64)
        return {
            "angles": torch.where(on["rotation"][:, None], angles, 0.0),
            "scale": torch.where(on["scale"][:, None], factors, 1.0).expand(batch, dims),
            "translation": torch.where(on["translation"][:, None], shift, 0.0),
            "shear": torch.where(on["shear"][:, None, None], shear, 0.0),
            "elastic": noise * torch.where(on["elastic"], std, 0.0).view(batch, *[1] * (dims + 1)),
        }

    def apply(
        self, image: Tensor, label: LabelOrNone, generator: torch.Generator
    ) -> tuple[Tensor, LabelOrNone]:
        batch, dims = image.shape[0], image.ndim - 2
        params = self.sample_parameters(batch, dims, generator)
        return apply_spatial(
            image,
            label,
            params,
            output_size=self.output_size,
            label_mode=self.label_mode,
            image_padding=self.image_padding,
            label_fill=self.label_fill,
        )


def apply_spatial(
    image: Tensor,
    label: LabelOrNone,
    params: dict[str, Tensor],
    *,
    output_size: Sequence[int] | None = None,
    label_mode: LabelMode = "nearest",
    image_padding: ImagePadding = "zeros",
    label_fill: int = 0,
) -> tuple[Tensor, LabelOrNone]:
    """Deterministic part of ``RandomSpatial``: build one grid from ``params`` and resample.

    Args:
        image: ``(B, C, *spatial)``.
        label: ``(B, 1, *spatial)`` or None.
        params: ``angles (B, P)`` radians, ``scale (B, D)``, ``translation (B, D)`` voxels,
            ``shear (B, D, D)``, ``elastic (B, D, *control_points)`` voxels.
        output_size: output spatial shape (None: the input's).

    Returns:
        ``(image, label)`` of spatial shape ``output_size``.
    """
    batch, dims = image.shape[0], image.ndim - 2
    in_shape = list(image.shape[2:])
    out_shape = list(output_size) if output_size is not None else in_shape
    content = affine_matrix(
        angles=params["angles"],
        scale=params["scale"],
        shear=params["shear"],
        spatial_dims=dims,
        batch_size=batch,
    )
    eye = torch.eye(dims, dtype=torch.float64)
    has_elastic = params["elastic"].flatten(1).abs().amax(dim=1) > 0
    active = ((content - eye).flatten(1).abs().amax(dim=1) > 0) | has_elastic
    active |= params["translation"].abs().amax(dim=1) > 0
    sampling = torch.linalg.inv(content)
    offset = -(sampling @ params["translation"].to(torch.float64).unsqueeze(-1)).squeeze(-1)

    def grid_for(rows: Tensor) -> Tensor:
        displacement = None
        if bool(has_elastic[rows].any()):
            coeffs = params["elastic"][rows].to(device=image.device, dtype=torch.float32)
            matrices = [
                bspline_matrix(n, k) for n, k in zip(out_shape, coeffs.shape[2:], strict=True)
            ]
            displacement = expand_separable(coeffs, matrices)
        grid = sampling_grid(
            sampling[rows], offset[rows], in_shape, out_shape, displacement=displacement
        )
        return grid.to(image.device)

    return _resample_rows(
        image,
        label,
        active,
        out_shape,
        grid_for,
        label_mode=label_mode,
        image_padding=image_padding,
        label_fill=label_fill,
    )


class RandomCropResize(Transform):
    """Crop a random box and resize it to ``output_size`` (one resampling, labels nearest).

    Args:
        output_size: output spatial shape.
        scale: range of the box's side length as a fraction of the image's, per axis.
        isotropic: one fraction for all axes (True) or one per axis.
        p: per-sample probability; other samples are resized whole (exact copy when
            ``output_size`` equals the input shape).
        label_mode, image_padding, label_fill: as ``RandomSpatial``.
        seed: seed of the transform's own generator.
    """

    def __init__(
        self,
        output_size: Sequence[int],
        *,
        scale: Range = (0.5, 1.0),
        isotropic: bool = True,
        p: float = 1.0,
        label_mode: LabelMode = "nearest",
        image_padding: ImagePadding = "zeros",
        label_fill: int = 0,
        seed: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed)
        self.output_size = tuple(int(s) for s in output_size)
        self.scale = check_range("scale", scale)
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must lie in (0, 1], got {scale}")
        self.isotropic = isotropic
        self.label_mode: LabelMode = label_mode
        self.image_padding: ImagePadding = image_padding
        self.label_fill = int(label_fill)

    def apply(
        self, image: Tensor, label: LabelOrNone, generator: torch.Generator
    ) -> tuple[Tensor, LabelOrNone]:
        batch, dims = image.shape[0], image.ndim - 2
        in_shape = torch.tensor(image.shape[2:], dtype=torch.float64)
        out_shape = torch.tensor(self.output_size, dtype=torch.float64)
        applies = bernoulli([batch], self.p, generator)
        fraction = uniform([batch, 1 if self.isotropic else dims], *self.scale, generator).expand(
            batch, dims
        )
        where = uniform([batch, dims], 0.0, 1.0, generator)
        fraction = torch.where(applies[:, None], fraction, 1.0)
        box = fraction * in_shape  # box side in input voxels
        centre = (where - 0.5) * (in_shape - box)  # centred coordinates of the box centre
        sampling = torch.diag_embed(box / out_shape)
        active = (box != out_shape).any(dim=1) | (centre != 0).any(dim=1)

        def grid_for(rows: Tensor) -> Tensor:
            grid = sampling_grid(
                sampling[rows], centre[rows], list(image.shape[2:]), self.output_size
            )
            return grid.to(image.device)

        return _resample_rows(
            image,
            label,
            active,
            self.output_size,
            grid_for,
            label_mode=self.label_mode,
            image_padding=self.image_padding,
            label_fill=self.label_fill,
        )


__all__ = [
    "CropOrPad",
    "RandomCropResize",
    "RandomFlip",
    "RandomRot90",
    "RandomSpatial",
    "apply_spatial",
]
