"""Reading and writing images in every format medseg supports, keeping geometry.

| format | extensions | read | write | geometry |
|---|---|---|---|---|
| NIfTI | .nii, .nii.gz | yes | yes | spacing, origin, direction |
| NRRD | .nrrd, .nhdr | yes | yes | spacing, origin, direction |
| MetaImage | .mha, .mhd | yes | yes | spacing, origin, direction |
| DICOM series | a folder of .dcm files | yes | no | spacing, origin, direction |
| PNG / JPEG / BMP | .png, .jpg, .jpeg, .bmp | yes | yes (PNG/BMP lossless, JPEG lossy) | none (spacing 1) |
| TIFF | .tif, .tiff | yes | yes | none (spacing 1) |

Volumetric formats go through SimpleITK; 2D picture formats through Pillow (and tifffile
for TIFF) because SimpleITK's handling of RGB and palette PNGs is not what users expect: a
grey image becomes ``(H, W)``, an RGB image ``(3, H, W)``, an RGBA image drops a fully opaque
alpha, and a palette PNG (a common mask format) keeps its palette indices as label values.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.errors import ImageIOError
from medseg.fileutil import atomic_path, check_writable
from medseg.io.image import Image
from medseg.io.integrity import nifti_is_truncated

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


def read_image(path: str | os.PathLike[str]) -> Image:
    """Read an image file (or a DICOM series folder) with its geometry.

    Args:
        path: an image file, or a folder holding one DICOM series.

    Returns:
        The ``Image``; multi-component (vector/RGB) volumes come channels first.

    Raises:
        ImageIOError: the path does not exist, is not a supported format, or is corrupt.
    """
    path = Path(path)
    if not path.exists():
        raise ImageIOError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_dicom_series(path)
    ext = file_ending(path)
    if path.stat().st_size == 0:
        raise ImageIOError(f"{path}: file is empty (0 bytes)")
    try:
        if ext in SITK_EXTENSIONS:
            if ext in (".nii.gz", ".nii"):
                return _read_nifti(path)
            return _from_sitk(sitk.ReadImage(str(path)))
        if ext in TIFF_EXTENSIONS:
            return _read_tiff(path)
        return _read_picture(path)
    except ImageIOError:
        raise
    except Exception as err:  # any decoder failure means the file is unreadable
        raise ImageIOError(f"{path}: cannot read ({_short(err)}); the file may be corrupt or truncated") from err


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
            np.zeros((0,) * d), tuple(reader.GetSpacing()[::-1]), reader.GetOrigin(), reader.GetDirection()
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
        np.ascontiguousarray(array), tuple(itk.GetSpacing()[::-1]), itk.GetOrigin(), itk.GetDirection()
    )


def to_sitk(image: Image) -> sitk.Image:
    """Convert to a ``SimpleITK.Image`` (channels become vector components)."""
    return _to_sitk(image)


def _to_sitk(image: Image) -> sitk.Image:
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


def _read_nifti(path: Path) -> Image:
    # ITK's NIfTI reader silently turns NaN voxels into 0 and zero-fills truncated files, so
    # the voxels come from nibabel (identical values and dtype otherwise, and faster) while
    # the geometry comes from ITK's header reader, so it agrees with SimpleITK by design.
    if nifti_is_truncated(path):
        raise ImageIOError(f"{path}: file is truncated (the data ends early); re-export or re-copy it")
    import nibabel

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    size = reader.GetSize()
    if reader.GetNumberOfComponents() > 1:
        return _from_sitk(reader.Execute())
    array = np.asanyarray(nibabel.load(str(path)).dataobj)
    array = np.ascontiguousarray(array.reshape(array.shape[: len(size)]).T)
    return Image(array, tuple(reader.GetSpacing()[::-1]), reader.GetOrigin(), reader.GetDirection())


def _read_dicom_series(folder: Path) -> Image:
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


def _read_picture(path: Path) -> Image:
    from PIL import Image as PILImage

    with PILImage.open(path) as pil:
        pil.load()
        if pil.mode == "P":
            array = np.asarray(pil)  # palette indices are the label values
        elif pil.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LA"):
            array = np.asarray(pil.convert("RGBA" if pil.mode in ("RGBA", "LA") else "RGB"))
        else:
            array = np.asarray(pil)
    return _picture_to_image(array)


def _read_tiff(path: Path) -> Image:
    # Pillow decodes the common compressions (LZW, deflate, packbits) without extra codecs;
    # tifffile covers what Pillow cannot (planar RGB, exotic sample formats).
    try:
        return _read_picture(path)
    except Exception:
        import tifffile

        array = tifffile.imread(path)
        if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
            array = np.moveaxis(array, 0, -1)  # planar-configured RGB
    if array.ndim > 3 or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageIOError(f"{path}: TIFF with shape {array.shape} is not a 2D grey/RGB image")
    return _picture_to_image(array)


def _picture_to_image(array: np.ndarray) -> Image:
    if array.ndim == 3:  # (H, W, C)
        if array.shape[-1] == 4 and np.all(array[..., 3] == np.iinfo(array.dtype).max if array.dtype.kind == "u" else 1):
            array = array[..., :3]
        if array.shape[-1] == 2:  # grey + alpha
            array = array[..., 0]
        else:
            array = np.moveaxis(array, -1, 0)
    return Image(np.ascontiguousarray(array), (1.0, 1.0))


def _picture_array(image: Image, path: Path, *, allow_float: bool) -> np.ndarray:
    if image.spatial_dims != 2:
        raise ImageIOError(f"{path}: a {image.spatial_dims}D image cannot be stored as a 2D picture")
    array = image.array
    if image.has_channels:
        if image.num_channels == 1:
            array = array[0]
        elif image.num_channels in (3, 4):
            array = np.moveaxis(array, 0, -1)
        else:
            raise ImageIOError(f"{path}: {image.num_channels} channels cannot be stored as a picture (1, 3 or 4)")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype.kind == "f" and not allow_float:
        raise ImageIOError(f"{path}: float pixels cannot be stored as PNG/JPEG; use .tif or .nii.gz")
    return np.ascontiguousarray(array)


def _write_picture(image: Image, tmp: Path, path: Path, ext: str) -> None:
    from PIL import Image as PILImage

    array = _picture_array(image, path, allow_float=False)
    if array.dtype.kind in "iu" and array.dtype.itemsize > 1:
        if array.ndim == 3 or array.min() < 0 or array.max() > 65535:
            raise ImageIOError(f"{path}: values outside uint8 (RGB) / uint16 (grey) range for a picture")
        array = array.astype(np.uint16) if array.max() > 255 else array.astype(np.uint8)
    elif array.dtype == np.int8:
        raise ImageIOError(f"{path}: signed 8-bit pixels cannot be stored as a picture")
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}[ext]
    PILImage.fromarray(array).save(tmp, format=fmt)


def _short(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text[:200] + ("..." if len(text) > 200 else "")
