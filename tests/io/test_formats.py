"""Round trips through every format, geometry checks against SimpleITK, and bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.errors import GeometryError, ImageIOError, OverwriteError
from medseg.io import Image, grid_mismatches, read_geometry, read_image, to_sitk, write_image


def _oblique_direction() -> tuple[float, ...]:
    angle = np.deg2rad(20)
    c, s = np.cos(angle), np.sin(angle)
    rot_z = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    rot_x = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return tuple((rot_x @ rot_z).ravel())


def _volume(dtype=np.float32) -> Image:
    rng = np.random.default_rng(0)
    array = (rng.normal(0, 100, (5, 7, 9))).astype(dtype)
    return Image(
        array, spacing=(4.5, 0.8, 0.6), origin=(-10.0, 20.5, 3.25), direction=_oblique_direction()
    )


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
def test_volume_round_trip_keeps_values_dtype_and_oblique_geometry(
    tmp_path: Path, ending: str, dtype
) -> None:
    image = _volume(dtype)
    path = write_image(image, tmp_path / f"vol{ending}")
    back = read_image(path)
    assert back.array.dtype == image.array.dtype
    np.testing.assert_array_equal(back.array, image.array)
    assert np.allclose(back.spacing, image.spacing, atol=1e-5)
    assert np.allclose(back.origin, image.origin, atol=1e-4)
    assert np.allclose(back.direction, image.direction, atol=1e-5)


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha"])
def test_geometry_agrees_with_simpleitk_reading_the_same_file(tmp_path: Path, ending: str) -> None:
    path = write_image(_volume(), tmp_path / f"vol{ending}")
    ours = read_image(path)
    itk = sitk.ReadImage(str(path))
    assert ours.spacing == pytest.approx(
        itk.GetSpacing()[::-1]
    )  # array order is reversed ITK order
    assert ours.origin == pytest.approx(itk.GetOrigin())
    assert ours.direction == pytest.approx(itk.GetDirection())
    np.testing.assert_array_equal(ours.array, sitk.GetArrayFromImage(itk))
    # the physical position of a voxel agrees with ITK's index -> point mapping
    index = (4, 6, 8)  # array (z, y, x) order
    assert ours.index_to_world(np.array(index))[0] == pytest.approx(
        itk.TransformIndexToPhysicalPoint(index[::-1])
    )


def test_multichannel_volume_round_trips_channels_first(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    image = Image(array, spacing=(2.0, 1.0, 0.5))
    back = read_image(write_image(image, tmp_path / "mc.nii.gz"))
    assert back.has_channels and back.num_channels == 2
    np.testing.assert_array_equal(back.array, array)


def test_2d_nifti_keeps_anisotropic_spacing(tmp_path: Path) -> None:
    image = Image(np.eye(6, 8, dtype=np.int16), spacing=(0.5, 2.0))
    back = read_image(write_image(image, tmp_path / "slice.nii.gz"))
    assert back.spatial_dims == 2 and back.spacing == (0.5, 2.0)
    np.testing.assert_array_equal(back.array, image.array)


@pytest.mark.parametrize("ending", [".png", ".tif", ".bmp"])
def test_grey_picture_round_trip(tmp_path: Path, ending: str) -> None:
    array = np.random.default_rng(1).integers(0, 256, (11, 13)).astype(np.uint8)
    back = read_image(write_image(Image(array, (1.0, 1.0)), tmp_path / f"g{ending}"))
    assert back.array.shape == (11, 13)
    np.testing.assert_array_equal(back.array, array)


def test_16bit_png_round_trip(tmp_path: Path) -> None:
    array = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    back = read_image(write_image(Image(array, (1.0, 1.0)), tmp_path / "g16.png"))
    np.testing.assert_array_equal(back.array, array)


@pytest.mark.parametrize("ending", [".png", ".tif"])
def test_rgb_picture_reads_as_three_channels_first(tmp_path: Path, ending: str) -> None:
    array = np.random.default_rng(2).integers(0, 256, (3, 9, 7)).astype(np.uint8)
    back = read_image(write_image(Image(array, (1.0, 1.0)), tmp_path / f"rgb{ending}"))
    assert back.has_channels and back.array.shape == (3, 9, 7)
    np.testing.assert_array_equal(back.array, array)


def test_float_tiff_round_trip(tmp_path: Path) -> None:
    array = np.random.default_rng(3).normal(size=(5, 6)).astype(np.float32)
    back = read_image(write_image(Image(array, (1.0, 1.0)), tmp_path / "f.tif"))
    np.testing.assert_array_equal(back.array, array)


def test_jpeg_is_lossy_but_close(tmp_path: Path) -> None:
    array = np.full((16, 16), 120, dtype=np.uint8)
    back = read_image(write_image(Image(array, (1.0, 1.0)), tmp_path / "j.jpg"))
    assert np.abs(back.array.astype(int) - 120).max() <= 2


def test_palette_png_keeps_indices_as_label_values(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    indices = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    pil = PILImage.fromarray(indices, mode="P")
    pil.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    pil.save(tmp_path / "mask.png")
    np.testing.assert_array_equal(read_image(tmp_path / "mask.png").array, indices)


def test_dicom_series_folder_reads_with_geometry(tmp_path: Path) -> None:
    array = (np.arange(4 * 6 * 5) % 200).astype(np.int16).reshape(4, 6, 5)
    itk = sitk.GetImageFromArray(array)
    itk.SetSpacing((0.7, 0.8, 2.5))
    itk.SetOrigin((10.0, -5.0, 30.0))
    series = tmp_path / "series"
    series.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        slice_ = itk[:, :, k]
        origin = itk.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in {
            "0020|000e": "1.2.826.0.1.3680043.2.1125.1",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(map(str, origin)),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": "2.5",
            "0028|0030": "0.8\\0.7",
            "0008|0060": "CT",
        }.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(series / f"s{k:03d}.dcm"))
        writer.Execute(slice_)
    image = read_image(series)
    assert image.array.shape == (4, 6, 5)
    np.testing.assert_array_equal(image.array, array)
    assert image.spacing == pytest.approx((2.5, 0.8, 0.7))
    assert image.origin == pytest.approx((10.0, -5.0, 30.0))


def test_read_geometry_matches_full_read_without_decoding(tmp_path: Path) -> None:
    path = write_image(_volume(), tmp_path / "v.nii.gz")
    shape, geometry = read_geometry(path)
    full = read_image(path)
    assert shape == full.spatial_shape
    assert geometry.spacing == pytest.approx(full.spacing)
    assert geometry.direction == pytest.approx(full.direction)


def test_to_sitk_preserves_geometry() -> None:
    image = _volume()
    itk = to_sitk(image)
    assert itk.GetSpacing() == pytest.approx(image.spacing[::-1])
    assert itk.GetSize() == image.spatial_shape[::-1]


# ------------------------------------------------------------------ bad input


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ImageIOError, match="nope.nii.gz: no such file"):
        read_image(tmp_path / "nope.nii.gz")


def test_truncated_nifti_is_reported_as_corrupt(tmp_path: Path) -> None:
    path = write_image(Image(np.ones((20, 20, 20), np.float32), (1, 1, 1)), tmp_path / "v.nii.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageIOError, match="v.nii.gz: (file is truncated|cannot read)"):
        read_image(path)


def test_garbage_png_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageIOError, match="bad.png: cannot read"):
        read_image(tmp_path / "bad.png")


def test_empty_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(ImageIOError, match="empty"):
        read_image(tmp_path / "empty.nii.gz")


def test_gzip_of_garbage_is_reported(tmp_path: Path) -> None:
    (tmp_path / "g.nii.gz").write_bytes(gzip.compress(b"x" * 1000))
    with pytest.raises(ImageIOError, match="g.nii.gz"):
        read_image(tmp_path / "g.nii.gz")


def test_unsupported_extension_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.xyz").write_bytes(b"123")
    with pytest.raises(ImageIOError, match="unsupported file type"):
        read_image(tmp_path / "a.xyz")


def test_write_refuses_to_overwrite_without_flag(tmp_path: Path) -> None:
    image = Image(np.zeros((3, 3), np.uint8), (1.0, 1.0))
    path = write_image(image, tmp_path / "a.png")
    with pytest.raises(OverwriteError, match="--overwrite"):
        write_image(image, path)
    write_image(image.with_array(np.ones((3, 3), np.uint8)), path, overwrite=True)
    assert read_image(path).array.max() == 1


def test_write_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    write_image(_volume(), tmp_path / "v.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["v.nii.gz"]


def test_3d_image_cannot_be_written_as_png(tmp_path: Path) -> None:
    with pytest.raises(ImageIOError, match="3D image cannot be stored"):
        write_image(_volume(np.uint8), tmp_path / "v.png")
    assert not (tmp_path / "v.png").exists()


def test_image_rejects_spacing_that_does_not_fit_the_array() -> None:
    with pytest.raises(GeometryError, match="does not fit spacing"):
        Image(np.zeros((4, 4, 4, 4, 4)), spacing=(1.0, 1.0))
    with pytest.raises(GeometryError, match="positive"):
        Image(np.zeros((4, 4)), spacing=(1.0, 0.0))


def test_grid_mismatches_names_each_difference() -> None:
    a = Image(np.zeros((4, 5, 6)), (1.0, 1.0, 1.0))
    b = Image(np.zeros((4, 5, 7)), (2.0, 1.0, 1.0), origin=(1.0, 0.0, 0.0))
    found = " ".join(grid_mismatches(a, b))
    assert "shape" in found and "spacing" in found and "origin" in found
    assert grid_mismatches(a, a) == []


@pytest.mark.parametrize("ending", [".nii", ".nrrd", ".mha"])
def test_truncated_files_of_other_formats_are_reported(tmp_path: Path, ending: str) -> None:
    rng = np.random.default_rng(5)
    path = write_image(
        Image(rng.normal(size=(20, 20, 20)).astype(np.float32), (1, 1, 1)), tmp_path / f"v{ending}"
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageIOError, match=f"v{ending}"):
        read_image(path)


def test_intact_nifti_gz_is_not_flagged_as_truncated(tmp_path: Path) -> None:
    from medseg.io.integrity import nifti_gz_is_truncated

    path = write_image(_volume(), tmp_path / "v.nii.gz")
    assert not nifti_gz_is_truncated(path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    assert nifti_gz_is_truncated(path)


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_nan_voxels_survive_a_round_trip(tmp_path: Path, ending: str) -> None:
    # ITK's own NIfTI reader turns NaN into 0; medseg must not hide bad voxels
    array = np.ones((3, 4, 5), np.float32)
    array[0, 0, :2] = np.nan
    back = read_image(write_image(Image(array, (1, 1, 1)), tmp_path / f"n{ending}"))
    assert int(np.isnan(back.array).sum()) == 2
