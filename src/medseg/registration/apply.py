"""Registering a pair with a trained VoxelMorph run, and the field SimpleITK reads.

:func:`register_pair` returns the warped moving image and labels on the fixed grid and the
**displacement field** as an :class:`~medseg.io.Image` that SimpleITK takes as a
``sitk.DisplacementFieldTransform``: on the fixed grid (its spacing, origin, direction),
one vector per voxel with ITK's ``x, y, z`` component order, in millimetres, **physical
displacement**: fixed world point ``x`` maps to moving world point ``x + d(x)``. So::

    field = sitk.ReadImage("field.nii.gz", sitk.sitkVectorFloat64)
    transform = sitk.DisplacementFieldTransform(field)
    warped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear)

reproduces the warped image (tested). The field includes what pairs the grids (the centred
padding of images of different shapes, different origins), so it is valid for the
original moving file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from medseg.device import resolve_device
from medseg.errors import ConfigError
from medseg.io import Image
from medseg.registration.config import CONFIG_KEY, RegistrationConfig, RegistrationModel
from medseg.registration.data import (
    centre_offsets,
    common_shape,
    crop_to,
    match_grid,
    normalise,
    pad_to,
)
from medseg.registration.warp import identity_grid, warp
from medseg.training.checkpoint import load_checkpoint

log = logging.getLogger(__name__)


def load_registration_model(
    model_dir: str | os.PathLike[str], *, checkpoint: str = "best", device: str | None = None
) -> tuple[RegistrationModel, RegistrationConfig]:
    """The trained model (eval mode) and its config from a run folder (or a checkpoint file).

    Raises:
        ConfigError: no checkpoint, or one that is not a registration run.
    """
    path = Path(model_dir)
    if path.is_dir():
        path = path / f"checkpoint_{checkpoint}.pt"
    data = load_checkpoint(path, kind="weights", what="registration checkpoint")
    if CONFIG_KEY not in data or "network_state" not in data:
        raise ConfigError(
            f"{path}: not a medseg registration checkpoint (no {CONFIG_KEY}); train one with "
            "`medseg register train`"
        )
    config = RegistrationConfig.from_dict(data[CONFIG_KEY], source=str(path))
    model = RegistrationModel(config)
    model.load_state_dict(data["network_state"])
    return model.to(resolve_device(device)).eval(), config


def _padded(image: Image, shape: tuple[int, ...], config: RegistrationConfig) -> torch.Tensor:
    array = normalise(image.channels_first()[0], config.normalisation)
    return torch.from_numpy(pad_to(array, shape))[None, None]


def _world(image: Image, index: np.ndarray) -> np.ndarray:
    """World points ``(N, D)`` (ITK ``x, y, z``) of voxel indices ``(D, *shape)``."""
    return image.index_to_world(index.reshape(index.shape[0], -1).T)


def physical_field(flow: np.ndarray, fixed: Image, moving: Image, shape: tuple[int, ...]) -> Image:
    """The padded-grid voxel ``flow`` ``(D, *shape)`` as a physical displacement field on
    ``fixed``'s grid (ITK ``x, y, z`` vectors in mm, float64; see the module docstring)."""
    dims = fixed.spatial_dims
    fixed_off = np.asarray(centre_offsets(fixed.spatial_shape, shape))
    moving_off = np.asarray(centre_offsets(moving.spatial_shape, shape))
    flow = crop_to(flow, fixed.spatial_shape).astype(np.float64)
    index = identity_grid(fixed.spatial_shape, dtype=torch.float64).numpy()
    moving_index = index + flow + (fixed_off - moving_off).reshape(dims, *[1] * dims)
    displacement = _world(moving, moving_index) - _world(fixed, index)  # (N, D) in x, y, z
    vectors = displacement.T.reshape(dims, *fixed.spatial_shape)
    return fixed.with_array(np.ascontiguousarray(vectors))


@torch.no_grad()
def register_pair(
    model_dir: str | os.PathLike[str] | tuple[RegistrationModel, RegistrationConfig],
    fixed: Image,
    moving: Image,
    labels: Image | None = None,
    *,
    checkpoint: str = "best",
    device: str | None = None,
) -> tuple[Image, Image | None, Image]:
    """Register ``moving`` onto ``fixed`` with a trained run.

    Args:
        model_dir: a run folder of ``fit_registration`` (or a loaded ``(model, config)``,
            to register many pairs without reloading).
        fixed, moving: single-channel images; of other shapes they are padded about their
            centres as in training; of another spacing or direction ``moving`` (and
            ``labels``) is resampled onto the fixed grid with SimpleITK first (logged).
        labels: the moving image's label map (warped with nearest neighbours).

    Returns:
        ``(warped, warped_labels, field)``: the warped moving image (its original
        intensities, linear) and labels (None without ``labels``) on the fixed grid, and the
        displacement field (module docstring).

    Raises:
        GeometryError: different dimensionality, multi-channel images, labels off the moving
            grid; ConfigError: a run of another dimensionality, a bad checkpoint.
    """
    model, config = (
        model_dir
        if isinstance(model_dir, tuple)
        else load_registration_model(model_dir, checkpoint=checkpoint, device=device)
    )
    if fixed.spatial_dims != config.spatial_dims:
        raise ConfigError(
            f"the model registers {config.spatial_dims}D images, the fixed image is "
            f"{fixed.spatial_dims}D"
        )
    moving, labels = match_grid(fixed, moving, labels)
    shapes = [fixed.spatial_shape, moving.spatial_shape, config.shape]
    shape = common_shape(shapes, config.divisor)
    dev = next(model.parameters()).device
    _, flow, _ = model(
        _padded(moving, shape, config).to(dev), _padded(fixed, shape, config).to(dev)
    )
    # one flow in moving-padded coordinates warps the raw moving image and its labels
    raw = torch.from_numpy(pad_to(moving.channels_first()[0].astype(np.float32), shape))
    warped = crop_to(warp(raw[None, None].to(dev), flow)[0, 0].cpu().numpy(), fixed.spatial_shape)
    warped_labels = None
    if labels is not None:
        lab = torch.from_numpy(pad_to(np.rint(labels.channels_first()[0]).astype(np.int64), shape))
        moved = warp(lab[None, None].to(dev), flow, mode="nearest")[0, 0].cpu().numpy()
        warped_labels = fixed.with_array(
            crop_to(moved, fixed.spatial_shape).astype(np.uint8 if moved.max() < 256 else np.int32)
        )
    field = physical_field(flow[0].cpu().numpy(), fixed, moving, shape)
    return fixed.with_array(warped), warped_labels, field
