"""Time series (``Image.time_interval``, 4D NIfTI): round trips checked against nibabel's header
and SimpleITK's own frame extraction, and the messages for files that are not what is expected."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.errors import GeometryError, ImageIOError
from medseg.io import Image, read_image, write_image
from medseg.io.time_axis import (
    looks_like_time_series,
    nifti_time_info,
    read_time_series,
    stack_frames,
    time_series_hint,
)


def _oblique() -> tuple[float, ...]:
    c, s = np.cos(0.3), np.sin(0.3)
    return (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)


def _series() -> Image:
    array = np.random.default_rng(0).normal(size=(5, 3, 4, 6)).astype(np.float32)
    return Image(array, (4.0, 1.25, 0.75), (-3.0, 7.5, 11.0), _oblique(), time_interval=0.035)


def test_a_3d_plus_t_series_round_trips_with_its_interval_and_geometry(tmp_path: Path) -> None:
    series = _series()
    path = write_image(series, tmp_path / "cine.nii.gz")
    header = nibabel.load(str(path)).header
    assert header["dim"][:5].tolist() == [4, 6, 4, 3, 5]  # i, j, k, t
    assert header["pixdim"][4] == pytest.approx(0.035)
    assert header.get_xyzt_units()[1] == "sec"
    back = read_time_series(path)
    assert back.time_interval == 0.035  # float32 header value read as the decimal written
    np.testing.assert_array_equal(back.array, series.array)
    assert back.spacing == pytest.approx(series.spacing)
    assert back.origin == pytest.approx(series.origin)
    assert back.direction == pytest.approx(series.direction, abs=1e-6)


def test_a_frame_equals_simpleitk_extracting_that_frame(tmp_path: Path) -> None:
    path = write_image(_series(), tmp_path / "cine.nii.gz")
    itk = sitk.ReadImage(str(path))
    ref = sitk.Extract(itk, [6, 4, 3, 0], [0, 0, 0, 2])  # ITK's 4D -> 3D at t = 2
    frame = read_time_series(path).frame(2)
    np.testing.assert_array_equal(frame.array, sitk.GetArrayFromImage(ref))
    assert frame.spacing == pytest.approx(ref.GetSpacing()[::-1])
    assert frame.origin == pytest.approx(ref.GetOrigin())
    assert frame.direction == pytest.approx(ref.GetDirection(), abs=1e-6)
    assert not frame.has_time and frame.spatial_dims == 3


def test_a_2d_plus_t_series_round_trips_as_2d(tmp_path: Path) -> None:
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    series = Image(array, (0.5, 0.25), (1.0, 2.0), time_interval=0.02)
    back = read_time_series(write_image(series, tmp_path / "echo.nii.gz"))
    assert back.spatial_dims == 2 and back.num_frames == 4
    np.testing.assert_array_equal(back.array, array)
    assert back.spacing == (0.5, 0.25) and back.origin == (1.0, 2.0)
    assert back.time_interval == 0.02
    assert read_time_series(tmp_path / "echo.nii.gz", spatial_dims=3).spatial_shape == (1, 5, 6)


def test_milliseconds_in_the_header_become_seconds(tmp_path: Path) -> None:
    img = nibabel.Nifti1Image(np.ones((6, 5, 4, 3), np.float32), np.eye(4))
    img.header.set_xyzt_units("mm", "msec")
    img.header["pixdim"][4] = 40.0
    nibabel.save(img, str(tmp_path / "ms.nii.gz"))
    assert nifti_time_info(tmp_path / "ms.nii.gz") == (3, pytest.approx(0.04))
    assert read_time_series(tmp_path / "ms.nii.gz").time_interval == pytest.approx(0.04)


def test_a_4d_file_without_a_frame_interval_asks_for_it(tmp_path: Path) -> None:
    path = tmp_path / "nounit.nii.gz"  # nibabel's default: pixdim[4] = 1, no time unit
    nibabel.save(nibabel.Nifti1Image(np.ones((6, 5, 4, 3), np.float32), np.eye(4)), str(path))
    assert nifti_time_info(path) == (3, None)
    with pytest.raises(
        ImageIOError,
        match=r"nounit.nii.gz: 4D image with 3 frames has no frame "
        r"interval.*--frame-interval SECONDS",
    ):
        read_time_series(path)
    assert read_time_series(path, frame_interval=0.05).time_interval == 0.05
    assert not looks_like_time_series(path)


def test_a_3d_file_is_not_a_time_series(tmp_path: Path) -> None:
    path = write_image(Image(np.zeros((3, 4, 5)), (1, 1, 1)), tmp_path / "vol.nii.gz")
    with pytest.raises(ImageIOError, match=r"vol.nii.gz: image of shape \(3, 4, 5\) has no time"):
        read_time_series(path)
    assert not looks_like_time_series(path)


def test_read_image_keeps_reading_4d_files_as_before(tmp_path: Path) -> None:
    path = write_image(_series(), tmp_path / "cine.nii.gz")
    raw = read_image(path)  # what the file holds: 4 axes, MSD-style readers rely on it
    assert raw.spatial_dims == 4 and not raw.has_time
    assert looks_like_time_series(path)
    hint = time_series_hint(path, raw.array.shape)
    assert hint.startswith(f"{path}: image is a time series (5 frames of (3, 4, 6))")
    assert f"medseg data frame {path} --t 0 -o" in hint


def test_image_time_axis_rules() -> None:
    series = _series()
    assert series.has_time and not series.has_channels
    assert series.num_frames == 5 and series.num_channels == 1
    assert series.spatial_shape == (3, 4, 6)
    np.testing.assert_array_equal(series.frame(-1).array, series.array[4])
    assert series.with_array(series.array[:2]).time_interval == 0.035
    assert series.with_array(series.array[0]).time_interval is None
    with pytest.raises(GeometryError, match="frame 5 does not exist: the series has 5"):
        series.frame(5)
    with pytest.raises(GeometryError, match="take one frame with image.frame"):
        series.channels_first()
    with pytest.raises(GeometryError, match="positive number of seconds"):
        Image(series.array, series.spacing, time_interval=0.0)
    with pytest.raises(GeometryError, match=r"needs an array \(T, \*spatial\)"):
        Image(series.array[0], series.spacing, time_interval=0.1)
    with pytest.raises(GeometryError, match="has no time axis"):
        series.frame(0).frame(0)


def test_stack_frames_and_pictures(tmp_path: Path) -> None:
    frames = [Image(np.full((3, 4), t, np.uint8), (2.0, 1.0)) for t in range(3)]
    series = stack_frames(frames, 0.1)
    assert series.array[:, 0, 0].tolist() == [0, 1, 2] and series.time_interval == 0.1
    with pytest.raises(ImageIOError, match="frame 1 has shape"):
        stack_frames([frames[0], Image(np.zeros((2, 2)), (1, 1))], 0.1)
    with pytest.raises(ImageIOError, match="a time series is written as 4D NIfTI"):
        write_image(series, tmp_path / "x.png")
