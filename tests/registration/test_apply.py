"""register_pair: warped outputs on the fixed grid, and a displacement field SimpleITK resamples
with to the same warped image; grids that differ are padded or resampled as documented."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from medseg.errors import ConfigError, GeometryError
from medseg.io import Image, write_image
from medseg.io.formats import to_sitk
from medseg.registration.apply import load_registration_model, register_pair
from medseg.registration.config import RegistrationConfig, RegistrationModel
from medseg.training.checkpoint import save_checkpoint


def _model(dims: int, shape: tuple[int, ...]) -> tuple[RegistrationModel, RegistrationConfig]:
    """An untrained model whose flow head is scaled up: a smooth, non-trivial random flow."""
    config = RegistrationConfig(
        dataset="unused",
        spatial_dims=dims,
        shape=shape,
        features=(4, 8),
        decoder_features=(8, 8),
        final_features=(4,),
    )
    torch.manual_seed(0)
    model = RegistrationModel(config)
    torch.nn.init.normal_(model.net.flow.weight, std=0.3)
    return model.eval(), config


def _smooth(shape: tuple[int, ...], seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).random(shape)
    return (100 * ndimage.gaussian_filter(noise, 2.0)).astype(np.float32)


@pytest.mark.parametrize("dims", [2, 3])
def test_simpleitk_resampling_with_the_field_gives_our_warped_image(
    dims: int, tmp_path: Path
) -> None:
    shape = (16,) * dims
    # grids that differ: other shapes, origins and (in 3D) an anisotropic spacing
    spacing = (2.0, 1.0, 0.5)[:dims] if dims == 3 else (0.8, 1.2)
    fixed = Image(_smooth((14, 16, 15)[:dims], 0), spacing, origin=(5.0, -3.0, 2.0)[:dims])
    moving = Image(_smooth((16, 13, 16)[:dims], 1), spacing, origin=(1.0, 2.0, -1.0)[:dims])
    labels = moving.with_array((moving.array > np.median(moving.array)).astype(np.uint8))
    warped, warped_labels, field = register_pair(_model(dims, shape), fixed, moving, labels)
    assert warped.same_grid(fixed) and warped_labels.same_grid(fixed)
    assert field.array.shape == (dims, *fixed.spatial_shape)
    write_image(field, tmp_path / "field.nii.gz")
    itk_field = sitk.ReadImage(str(tmp_path / "field.nii.gz"), sitk.sitkVectorFloat64)
    transform = sitk.DisplacementFieldTransform(itk_field)
    reference = sitk.Resample(to_sitk(moving), to_sitk(fixed), transform, sitk.sitkLinear, 0.0)
    expected = sitk.GetArrayFromImage(reference)
    # away from the moving image's edge (where ITK reads 0 and we read the padding), equal
    inside = ndimage.binary_erosion(expected != 0, iterations=2)
    assert inside.mean() > 0.2
    np.testing.assert_allclose(warped.array[inside], expected[inside], rtol=1e-4, atol=1e-3)
    nearest = sitk.Resample(to_sitk(labels), to_sitk(fixed), transform, sitk.sitkNearestNeighbor, 0)
    agree = sitk.GetArrayFromImage(nearest)[inside] == warped_labels.array[inside]
    assert agree.mean() > 0.99  # ties at exactly half a voxel may round differently
    assert float(np.abs(field.array).max()) > 1.0  # the flow is not trivial


def test_a_moving_image_of_another_spacing_is_resampled_and_logged(caplog) -> None:
    fixed = Image(_smooth((16, 16), 0), (1.0, 1.0))
    moving = Image(_smooth((12, 12), 1), (1.5, 1.5))
    with caplog.at_level(logging.WARNING):
        warped, labels, field = register_pair(_model(2, (16, 16)), fixed, moving)
    assert "resampled onto the fixed grid" in caplog.text
    assert warped.same_grid(fixed) and labels is None and field.same_grid(fixed)


def test_bad_pairs_are_refused() -> None:
    loaded = _model(2, (16, 16))
    fixed = Image(_smooth((16, 16), 0), (1.0, 1.0))
    with pytest.raises(ConfigError, match="registers 2D"):
        register_pair(loaded, Image(np.zeros((8, 8, 8), np.float32), (1.0,) * 3), fixed)
    with pytest.raises(GeometryError, match="refused: fixed is 2D, moving 3D"):
        register_pair(loaded, fixed, Image(np.zeros((8, 8, 8), np.float32), (1.0,) * 3))
    with pytest.raises(GeometryError, match="not on the moving image's grid"):
        register_pair(loaded, fixed, fixed, Image(np.zeros((8, 8), np.uint8), (1.0, 1.0)))


def test_a_run_is_loaded_from_its_folder_and_other_files_are_refused(tmp_path: Path) -> None:
    model, config = _model(2, (16, 16))
    save_checkpoint(
        tmp_path / "checkpoint_best.pt",
        network_state=model.state_dict(),
        registration_config=config.to_dict(),
    )
    loaded, loaded_config = load_registration_model(tmp_path)
    assert loaded_config == config and not loaded.training
    save_checkpoint(tmp_path / "other" / "checkpoint_best.pt", network_state={}, plan={})
    with pytest.raises(ConfigError, match="not a medseg registration checkpoint"):
        load_registration_model(tmp_path / "other")
    with pytest.raises(ConfigError, match="not found"):
        load_registration_model(tmp_path / "missing")
