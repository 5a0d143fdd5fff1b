"""Reading and writing images in every format medseg supports, keeping geometry.

| format | extensions | read | write | geometry |
|---|---|---|---|---|
| NIfTI | .nii, .nii.gz | yes | yes | spacing, origin, direction |
| NRRD | .nrrd, .nhdr | yes | yes | spacing, origin, direction |
| MetaImage | .mha, .mhd | yes | yes | spacing, origin, direction |
| DICOM series | a folder of .dcm files | yes | no | spacing, origin, direction |
| PNG / JPEG / BMP | .png, .jpg, .jpeg, .bmp | yes | yes (1) | none (spacing 1) |
| TIFF | .tif, .tiff | yes | yes | none (spacing 1) |

(1) PNG/BMP lossless, JPEG lossy.

A time series (``Image.time_interval`` set) is written as a 4D file with its frame interval;
read it back with ``medseg.io.time_axis.read_time_series``.

Volumetric formats go through SimpleITK; 2D picture formats through Pillow (and tifffile
for TIFF) because SimpleITK's handling of RGB and palette PNGs is not what users expect: a
grey image becomes ``(H, W)``, an RGB image ``(3, H, W)``, an RGBA image drops a fully opaque
alpha, and a palette PNG (a common mask format) keeps its palette indices as label values.
"""

from __future__ import annotations

import contextlib
import locale
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.errors import ImageIOError, MedsegError
from medseg.fileutil import atomic_path, check_writable
from medseg.io.image import Image
from medseg.io.integrity import nifti_size_problem, read_nifti_header
from medseg.io.limits import check_image_bytes, check_spacing, max_image_bytes

SITK_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_EXTENSIONS = (".tif", ".tiff")
IMAGE_EXTENSIONS = SITK_EXTENSIONS + PICTURE_EXTENSIONS + TIFF_EXTENSIONS


def file_ending(path: str | os.PathLike[str]) -> str:
    """The known image extension of ``path`` (``.nii.gz`` counts as one), lower case.

    Raises:
        ImageIOError: when the extension is not a supported image format.
    """
    name = Path(path).name.lower()
    for ext in IMAGE_EXTENSIONS:
        if name.endswith(ext):
            return ext
    raise ImageIOError(
        f"{path}: unsupported file type; supported: {', '.join(IMAGE_EXTENSIONS)} or a DICOM folder"
    )


def read_image(path: str | os.PathLike[str], *, max_gb: float | None = None) -> Image:
    """Read an image file (or a DICOM series folder) with its geometry.

    The header is checked before any voxel is decoded (see ``medseg.io.limits``): the voxel
    data it declares must fit the memory budget, and the spacing must be positive, finite and
    at most 100 mm on each spatial axis.

    Args:
        path: an image file, or a folder holding one DICOM series.
        max_gb: memory budget in GiB for the voxel data; None: ``$MEDSEG_MAX_IMAGE_GB`` if
            set, else ``MAX_IMAGE_GB`` (8).

    Returns:
        The ``Image``; multi-component (vector/RGB) volumes come channels first.

    Raises:
        ImageIOError: the path does not exist, is not a supported format, is corrupt or
            truncated, declares more voxel data than the budget, or has an unusable spacing.
        ConfigError: ``max_gb`` (or ``$MEDSEG_MAX_IMAGE_GB``) is not a positive number.
    """
    path = Path(path)
    max_bytes = max_image_bytes(max_gb)
    if not path.exists():
        raise ImageIOError(f"{path}: no such file or folder")
    if path.is_dir():
        image = _read_dicom_series(path)
        check_spacing(path, image.spacing[-3:])
        return image
    ext = file_ending(path)
    if path.stat().st_size == 0:
        raise ImageIOError(f"{path}: file is empty (0 bytes)")
    try:
        if ext in SITK_EXTENSIONS:
            if ext in (".nii.gz", ".nii"):
                return _read_nifti(path, max_bytes)
            _header_reader(path, max_bytes)  # size budget and spacing before decoding
            return _from_sitk(sitk.ReadImage(str(path)))
        if ext in TIFF_EXTENSIONS:
            return _read_tiff(path, max_bytes)
        return _read_picture(path, max_bytes)
    except MedsegError:
        raise
    except Exception as err:  # any decoder failure means the file is unreadable
        raise ImageIOError(
            f"{path}: cannot read ({_short(err)}); the file may be corrupt or truncated"
        ) from err


def read_geometry(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], Image]:
    """Read only the header: returns ``(spatial_shape, image_with_empty_array)``.

    For volumetric formats this does not decode the voxels (fast); picture formats are
    decoded. The returned ``Image`` holds a zero-size placeholder array and carries
    ``spacing``, ``origin`` and ``direction``.
    """
    path = Path(path)
    if path.is_file() and file_ending(path) in SITK_EXTENSIONS:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except Exception as err:
            raise ImageIOError(f"{path}: cannot read header ({_short(err)})") from err
        size = tuple(int(s) for s in reader.GetSize()[::-1])
        d = len(size)
        geom = Image(
            np.zeros((0,) * d),
            tuple(reader.GetSpacing()[::-1]),
            reader.GetOrigin(),
            reader.GetDirection(),
        )
        return size, geom
    image = read_image(path)
    return image.spatial_shape, image


def write_image(
    image: Image, path: str | os.PathLike[str], *, overwrite: bool = False, compress: bool = True
) -> Path:
    """Write ``image`` to ``path`` atomically (temporary file + rename).

    The format follows the extension. Geometry is written for NIfTI/NRRD/MetaImage; PNG,
    JPEG, BMP and TIFF store pixels only (2D, grey or 3/4 channels).

    Raises:
        OverwriteError: ``path`` exists and ``overwrite`` is False.
        ImageIOError: the image cannot be stored in that format (e.g. 3D into PNG).
    """
    path = check_writable(path, overwrite=overwrite)
    ext = file_ending(path)
    if image.has_time and ext not in SITK_EXTENSIONS:  # medseg.io.time_axis
        raise ImageIOError(f"{path}: a time series is written as 4D NIfTI, NRRD or MetaImage")
    with atomic_path(path) as tmp:
        if ext in SITK_EXTENSIONS:
            sitk.WriteImage(_to_sitk(image), str(tmp), useCompression=compress)
        elif ext in TIFF_EXTENSIONS:
            import tifffile

            tifffile.imwrite(tmp, _picture_array(image, path, allow_float=True))
        else:
            _write_picture(image, tmp, path, ext)
    return path


# ---------------------------------------------------------------- SimpleITK conversion


def _from_sitk(itk: sitk.Image) -> Image:
    array = sitk.GetArrayFromImage(itk)
    if itk.GetNumberOfComponentsPerPixel() > 1:
        array = np.moveaxis(array, -1, 0)  # vector pixels -> channels first
    return Image(
        np.ascontiguousarray(array),
        tuple(itk.GetSpacing()[::-1]),
        itk.GetOrigin(),
        itk.GetDirection(),
    )


def to_sitk(image: Image) -> sitk.Image:
    """Convert to a ``SimpleITK.Image`` (channels become vector components)."""
    return _to_sitk(image)


def _to_sitk(image: Image) -> sitk.Image:
    if image.has_time:
        from medseg.io.time_axis import time_series_to_sitk

        return time_series_to_sitk(image)
    array = image.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    if image.has_channels:
        itk = sitk.GetImageFromArray(np.moveaxis(array, 0, -1), isVector=True)
    else:
        itk = sitk.GetImageFromArray(array)
    itk.SetSpacing(image.spacing[::-1])
    itk.SetOrigin(image.origin)
    itk.SetDirection(image.direction)
    return itk


def _component_bytes(pixel_id: int) -> int:
    """Bytes per component of a SimpleITK pixel type (8 when unknown: errs on the safe side)."""
    name = sitk.GetPixelIDValueAsString(pixel_id)
    bits = next((b for b in (8, 16, 32, 64) if f"{b}-bit" in name), 64)
    return bits // 8 * (2 if "complex" in name else 1)


def _header_reader(path: Path, max_bytes: int) -> sitk.ImageFileReader:
    """ITK's header reader for ``path`` after the size budget and spacing checks."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    nbytes = int(np.prod(reader.GetSize(), dtype=np.float64)) * reader.GetNumberOfComponents()
    check_image_bytes(path, nbytes * _component_bytes(reader.GetPixelID()), max_bytes)
    check_spacing(path, reader.GetSpacing()[:3][::-1])  # axes past the third (time) are not spatial
    return reader


def _read_nifti(path: Path, max_bytes: int) -> Image:
    # ITK's NIfTI reader silently turns NaN voxels into 0, zero-fills truncated files and
    # turns a pixdim of 0, NaN or inf into 1.0, so the raw header is checked first, the
    # voxels come from nibabel (identical values and dtype otherwise, and faster) and the
    # geometry from ITK's header reader, so it agrees with SimpleITK by design.
    header = read_nifti_header(path)
    if header is not None:
        check_image_bytes(path, header.data_bytes, max_bytes)
        check_spacing(path, header.pixdim[: min(len(header.dims), 3)][::-1])
        problem = nifti_size_problem(path, header)
        if problem is not None:
            raise ImageIOError(f"{path}: {problem}")
    import nibabel

    reader = _header_reader(path, max_bytes)
    size = reader.GetSize()
    if reader.GetNumberOfComponents() > 1:
        return _from_sitk(reader.Execute())
    array = np.asanyarray(nibabel.load(str(path)).dataobj)
    array = np.ascontiguousarray(array.reshape(array.shape[: len(size)]).T)
    return Image(array, tuple(reader.GetSpacing()[::-1]), reader.GetOrigin(), reader.GetDirection())


@contextlib.contextmanager
def locale_kept() -> Iterator[None]:
    """Put the process locale back as it was after the block (all categories).

    GDCM, SimpleITK's DICOM library, can leave the process in the C locale (with SimpleITK
    2.5 writing a DICOM file does: ``setlocale(LC_ALL, "C")``). Python then decodes every
    text file opened without an explicit encoding as ASCII, for the rest of the process.

    Example:
        >>> import locale
        >>> before = locale.setlocale(locale.LC_ALL)
        >>> with locale_kept():
        ...     _ = locale.setlocale(locale.LC_ALL, "C")
        >>> locale.setlocale(locale.LC_ALL) == before
        True
    """
    saved = locale.setlocale(locale.LC_ALL)  # a query: one name, or every category's
    try:
        yield
    finally:
        if locale.setlocale(locale.LC_ALL) != saved:
            locale.setlocale(locale.LC_ALL, saved)


def _read_dicom_series(folder: Path) -> Image:
    with locale_kept():
        return _read_dicom_series_gdcm(folder)


def _read_dicom_series_gdcm(folder: Path) -> Image:
    reader = sitk.ImageSeriesReader()
    try:
        series = reader.GetGDCMSeriesIDs(str(folder))
    except Exception as err:
        raise ImageIOError(f"{folder}: cannot scan for DICOM files ({_short(err)})") from err
    if not series:
        raise ImageIOError(f"{folder}: folder holds no DICOM series")
    if len(series) > 1:
        raise ImageIOError(
            f"{folder}: folder holds {len(series)} DICOM series ({', '.join(series)}); "
            "put each series in its own folder"
        )
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    reader.SetFileNames(files)
    try:
        return _from_sitk(reader.Execute())
    except Exception as err:
        raise ImageIOError(f"{folder}: cannot read DICOM series ({_short(err)})") from err


# ---------------------------------------------------------------- 2D pictures


def _read_picture(path: Path, max_bytes: int) -> Image:
    from PIL import Image as PILImage

    with PILImage.open(path) as pil:
        check_image_bytes(path, pil.width * pil.height * _picture_pixel_bytes(pil.mode), max_bytes)
        pil.load()
        if pil.mode == "P":
            array = np.asarray(pil)  # palette indices are the label values
        elif pil.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LA"):
            array = np.asarray(pil.convert("RGBA" if pil.mode in ("RGBA", "LA") else "RGB"))
        else:
            array = np.asarray(pil)
    return _picture_to_image(array)


def _picture_pixel_bytes(mode: str) -> int:
    """Bytes per pixel of a decoded Pillow picture of ``mode`` (grey + alpha becomes RGBA)."""
    bands = {"P": 1, "LA": 4, "CMYK": 3, "YCbCr": 3, "RGBA": 4, "RGB": 3}.get(mode, 1)
    if mode in ("I", "F") or mode.startswith("I;32"):
        return bands * 4
    return bands * (2 if mode.startswith("I;16") else 1)


def _read_tiff(path: Path, max_bytes: int) -> Image:
    # Pillow decodes the common compressions (LZW, deflate, packbits) without extra codecs;
    # tifffile covers what Pillow cannot (planar RGB, exotic sample formats).
    try:
        return _read_picture(path, max_bytes)
    except ImageIOError:
        raise
    except Exception:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            voxels = int(np.prod(series.shape, dtype=np.float64))
            check_image_bytes(path, voxels * series.dtype.itemsize, max_bytes)
            array = series.asarray()
        if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
            array = np.moveaxis(array, 0, -1)  # planar-configured RGB
    if array.ndim > 3 or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageIOError(f"{path}: TIFF with shape {array.shape} is not a 2D grey/RGB image")
    return _picture_to_image(array)


def _picture_to_image(array: np.ndarray) -> Image:
    if array.ndim == 3:  # (H, W, C)
        if array.shape[-1] == 4 and np.all(
            array[..., 3] == np.iinfo(array.dtype).max if array.dtype.kind == "u" else 1
        ):
            array = array[..., :3]
        if array.shape[-1] == 2:  # grey + alpha
            array = array[..., 0]
        else:
            array = np.moveaxis(array, -1, 0)
    return Image(np.ascontiguousarray(array), (1.0, 1.0))


def _picture_array(image: Image, path: Path, *, allow_float: bool) -> np.ndarray:
    if image.spatial_dims != 2:
        raise ImageIOError(
            f"{path}: a {image.spatial_dims}D image cannot be stored as a 2D picture"
        )
    array = image.array
    if image.has_channels:
        if image.num_channels == 1:
            array = array[0]
        elif image.num_channels in (3, 4):
            array = np.moveaxis(array, 0, -1)
        else:
            raise ImageIOError(
                f"{path}: {image.num_channels} channels cannot be stored as a picture (1, 3 or 4)"
            )
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype.kind == "f" and not allow_float:
        raise ImageIOError(
            f"{path}: float pixels cannot be stored as PNG/JPEG; use .tif or .nii.gz"
        )
    return np.ascontiguousarray(array)


def _write_picture(image: Image, tmp: Path, path: Path, ext: str) -> None:
    from PIL import Image as PILImage

    array = _picture_array(image, path, allow_float=False)
    if array.dtype.kind in "iu" and array.dtype.itemsize > 1:
        if array.ndim == 3 or array.min() < 0 or array.max() > 65535:
            raise ImageIOError(
                f"{path}: values outside uint8 (RGB) / uint16 (grey) range for a picture"
            )
        array = array.astype(np.uint16) if array.max() > 255 else array.astype(np.uint8)
    elif array.dtype == np.int8:
        raise ImageIOError(f"{path}: signed 8-bit pixels cannot be stored as a picture")
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}[ext]
    PILImage.fromarray(array).save(tmp, format=fmt)


def _short(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text[:200] + ("..." if len(text) > 200 else "")
