"""Time series (cine MRI, 4D CT, ultrasound video) as 4D files: reading, writing, frames.

A time series is an ``Image`` with ``time_interval`` (seconds between frames) whose array is
``(T, *spatial)`` (see ``medseg.io.image``). On disk it is a 4D NIfTI (or NRRD / MetaImage):
NIfTI axes ``(i, j, k, t)``, ``pixdim[4]`` the frame interval in the unit of ``xyzt_units``
(ITK converts ms and us to seconds; medseg writes seconds). A 2D+t series is stored as
``(i, j, 1, t)`` and read back as 2D+t (a third axis of one voxel is dropped; pass
``spatial_dims=3`` to keep it).

A NIfTI whose header gives no frame interval (``pixdim[4]`` zero, NaN or inf, or no time
unit in ``xyzt_units``, as nibabel writes by default) is refused with a message asking for
``frame_interval`` (``--frame-interval`` on the command line). For NRRD / MetaImage the
fourth spacing is taken as the interval in seconds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.errors import ImageIOError
from medseg.io.image import Image

#: NIfTI ``xyzt_units`` time codes (bits 3-5) -> seconds per unit.
NIFTI_TIME_UNITS = {8: 1.0, 16: 1e-3, 24: 1e-6}


def nifti_time_info(path: str | os.PathLike[str]) -> tuple[int, float | None]:
    """``(frames, interval_s)`` from a NIfTI header (no voxels decoded).

    ``frames`` is ``dim[4]`` (1 for a file of 3 or fewer dimensions); ``interval_s`` is
    ``pixdim[4]`` in seconds, None when it is not a positive finite number or the header
    names no time unit.

    Raises:
        ImageIOError: the header cannot be read.
    """
    import nibabel

    try:
        header = nibabel.load(str(path)).header
    except Exception as err:
        raise ImageIOError(f"{path}: cannot read NIfTI header ({err})") from err
    dims = header["dim"]
    frames = int(dims[4]) if int(dims[0]) >= 4 else 1
    interval = float(header["pixdim"][4])
    scale = NIFTI_TIME_UNITS.get(int(header["xyzt_units"]) & 0x38)
    if scale is None or not np.isfinite(interval) or interval <= 0:
        return frames, None
    return frames, interval * scale


def read_time_series(
    path: str | os.PathLike[str],
    *,
    frame_interval: float | None = None,
    spatial_dims: int | None = None,
    max_gb: float | None = None,
) -> Image:
    """Read a 4D file as a time series ``(T, *spatial)`` with its frame interval.

    Args:
        path: a 4D NIfTI / NRRD / MetaImage.
        frame_interval: seconds between frames; overrides (NIfTI: replaces a missing) header value.
        spatial_dims: 2 or 3; None: 2 when the third spatial axis has one voxel, else 3.
        max_gb: memory budget, as ``read_image``.

    Raises:
        ImageIOError: not a 4D file, or no frame interval in the header nor given.
    """
    from medseg.io.formats import read_image

    path = Path(path)
    raw = read_image(path, max_gb=max_gb)
    if raw.spatial_dims != 4 or raw.has_channels:
        raise ImageIOError(
            f"{path}: image of shape {raw.array.shape} has no time axis (expected a 4D file, "
            "NIfTI axes i, j, k, t)"
        )
    interval = frame_interval
    if interval is None:
        if path.name.lower().endswith((".nii", ".nii.gz")):
            interval = nifti_time_info(path)[1]
        else:
            interval = raw.spacing[0]
    if interval is None:
        raise ImageIOError(
            f"{path}: 4D image with {raw.array.shape[0]} frames has no frame interval in its "
            "header (pixdim[4] with a time unit in xyzt_units); give it: --frame-interval "
            "SECONDS (Python: read_time_series(path, frame_interval=SECONDS))"
        )
    if frame_interval is None:  # headers store float32: 0.04, not 0.03999999910593033
        interval = float(str(np.float32(interval)))
    direction = np.asarray(raw.direction).reshape(4, 4)
    dims = spatial_dims or (2 if raw.array.shape[1] == 1 else 3)
    if dims not in (2, 3) or (dims == 2 and raw.array.shape[1] != 1):
        raise ImageIOError(f"{path}: cannot read {raw.array.shape} as {dims}D+t")
    array = raw.array[:, 0] if dims == 2 else raw.array
    return Image(
        array,
        raw.spacing[-dims:],
        raw.origin[:dims],
        tuple(direction[:dims, :dims].ravel()),
        time_interval=interval,
    )


def time_series_to_sitk(image: Image) -> sitk.Image:
    """A 4D ``SimpleITK.Image`` (x, y, z, t) of a time series; 2D+t gets a z axis of 1 voxel."""
    array = image.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    d = image.spatial_dims
    if d == 2:
        array = array[:, None]
    direction = np.eye(4)
    direction[:d, :d] = image.direction_matrix
    spacing = (*image.spacing[::-1], *((1.0,) if d == 2 else ()), image.time_interval)
    itk = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    itk.SetSpacing(spacing)
    itk.SetOrigin((*image.origin, *((0.0,) * (4 - d))))
    itk.SetDirection(tuple(direction.ravel()))
    return itk


def stack_frames(frames: Sequence[Image], time_interval: float) -> Image:
    """A time series from frames on one grid (the first frame's geometry).

    Raises:
        ImageIOError: no frames, or frames of different shapes or with channels.
    """
    if not frames:
        raise ImageIOError("no frames to stack")
    first = frames[0]
    for t, frame in enumerate(frames):
        if frame.array.shape != first.array.shape or frame.has_channels or frame.has_time:
            raise ImageIOError(
                f"frame {t} has shape {frame.array.shape}, frame 0 {first.array.shape}: "
                "frames must be single-channel images of one shape"
            )
    array = np.stack([f.array for f in frames])
    return Image(array, first.spacing, first.origin, first.direction, time_interval)


def time_series_hint(path: str | os.PathLike[str], shape: Sequence[int]) -> str:
    """The one line for a 4D file (array ``shape`` ``(T, z, y, x)``) where one 3D image is
    expected: what it is and how to pick a frame."""
    return (
        f"{path}: image is a time series ({shape[0]} frames of {tuple(shape[1:])}) where one "
        f"3D image is expected; pick a frame: medseg data frame {path} --t 0 -o FRAME.nii.gz "
        "(Python: read_time_series(path).frame(0)), or mark the dataset "
        '"time_axis": true in dataset.json'
    )


def looks_like_time_series(path: str | os.PathLike[str]) -> bool:
    """True for a 4D NIfTI whose header names a time unit (False for any other file)."""
    name = Path(path).name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return False
    try:
        import nibabel

        header = nibabel.load(str(path)).header
    except Exception:
        return False
    return int(header["dim"][0]) == 4 and (int(header["xyzt_units"]) & 0x38) in NIFTI_TIME_UNITS
