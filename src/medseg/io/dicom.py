"""DICOM in and out: read one series of a folder as an ``Image``, write a label map as a DICOM
Segmentation (SEG) object that references that series.

* :func:`list_dicom_series` / :func:`find_dicom_series`: the series of a folder
  (SimpleITK/GDCM ``GetGDCMSeriesIDs``), each with its files sorted by GDCM along the slice
  normal. A folder with several series needs ``series_uid=``; the error lists them.
* :func:`read_dicom_series`: the chosen series as an ``Image`` (geometry from SimpleITK, which
  is medseg's convention: array ``(z, y, x)`` where ``array[k]`` is the ``k``-th sorted file,
  rows ``y``, columns ``x``) and the sorted files.
* :func:`write_dicom_seg`: a ``highdicom.seg.Segmentation`` (binary, one segment per label
  value, algorithm type AUTOMATIC) whose frame ``k`` is derived from the ``k``-th sorted
  source file, so frame order follows the slice positions exactly as ``read_dicom_series``
  returned them.

Reading needs only SimpleITK. Writing a SEG needs the ``dicom`` extra (highdicom, pydicom):
``pip install "medseg[dicom]"``; both are imported inside the functions.

Only single-frame source series (one slice per file: classic CT/MR/PET) are supported; an
enhanced multi-frame source is refused with a clear error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from medseg import __version__
from medseg.errors import ConfigError, DatasetError, GeometryError, ImageIOError
from medseg.fileutil import atomic_path, check_writable
from medseg.io.formats import _from_sitk, locale_kept
from medseg.io.image import Image

if TYPE_CHECKING:
    import pydicom

log = logging.getLogger(__name__)

DICOM_EXTRA = 'pip install "medseg[dicom]"'
_SERIES_DESCRIPTION = "0008|103e"


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series of a folder.

    Attributes:
        uid: the Series Instance UID.
        description: its Series Description (``""`` when absent).
        files: its files, sorted by GDCM along the slice normal (the order of the image's
            array axis 0).
    """

    uid: str
    description: str
    files: tuple[Path, ...]

    def summary(self) -> str:
        """``UID ('description', N files)`` for messages."""
        return f"{self.uid} ({self.description!r}, {len(self.files)} files)"


def list_dicom_series(folder: str | os.PathLike[str]) -> list[DicomSeries]:
    """Every DICOM series directly in ``folder`` (not its sub-folders).

    Returns:
        The series in GDCM's order (possibly empty when the folder holds no DICOM file).

    Raises:
        ImageIOError: ``folder`` is not a folder or cannot be scanned.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageIOError(f"{folder}: not a folder (a DICOM series is read from its folder)")
    reader = sitk.ImageSeriesReader()
    with locale_kept():
        try:
            uids = reader.GetGDCMSeriesIDs(str(folder))
        except RuntimeError as err:
            raise ImageIOError(f"{folder}: cannot scan for DICOM files ({err})") from err
        series = []
        for uid in uids:
            files = tuple(Path(f) for f in reader.GetGDCMSeriesFileNames(str(folder), uid))
            series.append(DicomSeries(uid, _description(files[0]) if files else "", files))
    return series


def _description(path: Path) -> str:
    header = sitk.ImageFileReader()
    header.SetFileName(str(path))
    try:
        header.ReadImageInformation()
    except RuntimeError:
        return ""
    if not header.HasMetaDataKey(_SERIES_DESCRIPTION):
        return ""
    return header.GetMetaData(_SERIES_DESCRIPTION).strip()


def find_dicom_series(
    folder: str | os.PathLike[str], *, series_uid: str | None = None
) -> DicomSeries:
    """The one DICOM series of ``folder`` to read.

    Args:
        folder: a folder of DICOM files.
        series_uid: which series when the folder holds several (its Series Instance UID).

    Returns:
        The series with its sorted files.

    Raises:
        DatasetError: no DICOM series in the folder; several series and no ``series_uid``
            (the message lists each UID, description and number of files); ``series_uid`` not
            among them.
        ImageIOError: ``folder`` is not a folder.

    Example:
        >>> find_dicom_series("ct_folder").files[0]  # doctest: +SKIP
        PosixPath('ct_folder/IM0001.dcm')
    """
    folder = Path(folder)
    series = list_dicom_series(folder)
    if not series:
        raise DatasetError(
            f"{folder}: holds no DICOM series (no readable DICOM file directly in the folder); "
            "pass the folder with the .dcm files of one series"
        )
    found = "; ".join(s.summary() for s in series)
    if series_uid is not None:
        chosen = [s for s in series if s.uid == series_uid]
        if not chosen:
            raise DatasetError(f"{folder}: no DICOM series with UID {series_uid}; found {found}")
        return chosen[0]
    if len(series) > 1:
        raise DatasetError(
            f"{folder}: holds {len(series)} DICOM series: {found}; choose one with "
            "series_uid=<UID> (CLI: --series-uid)"
        )
    return series[0]


def read_dicom_series(
    folder: str | os.PathLike[str], *, series_uid: str | None = None
) -> tuple[Image, list[Path]]:
    """Read one DICOM series of a folder as a 3D image.

    Args:
        folder: the folder of the series' files.
        series_uid: which series when the folder holds several.

    Returns:
        ``(image, files)``: the ``(z, y, x)`` image (spacing in mm, LPS origin and direction
        from SimpleITK; ``array[k]`` is the slice of ``files[k]``) and the series' files
        sorted along the slice normal.

    Raises:
        DatasetError: see :func:`find_dicom_series`.
        ImageIOError: the files cannot be read as one volume.
    """
    series = find_dicom_series(folder, series_uid=series_uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in series.files])
    with locale_kept():
        try:
            itk = reader.Execute()
        except RuntimeError as err:
            first_line = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown"
            raise ImageIOError(
                f"{folder}: cannot read DICOM series {series.uid} ({first_line})"
            ) from err
    return _from_sitk(itk), list(series.files)


def _require_dicom_extra() -> tuple[Any, Any]:
    try:
        import highdicom
        import pydicom
    except ImportError as err:
        raise ConfigError(
            f"writing DICOM SEG needs highdicom and pydicom ({err.name} is missing): {DICOM_EXTRA}"
        ) from err
    return highdicom, pydicom


def _source_datasets(files: Sequence[str | os.PathLike[str]]) -> list[pydicom.Dataset]:
    _, pydicom = _require_dicom_extra()
    datasets = []
    for path in files:
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)  # D: headers suffice
        except (OSError, pydicom.errors.InvalidDicomError) as err:
            raise ImageIOError(f"{path}: cannot read as DICOM ({err})") from err
        if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
            raise ImageIOError(
                f"{path}: a multi-frame DICOM image; write_dicom_seg supports single-frame "
                "series (one slice per file)"
            )
        if "FrameOfReferenceUID" not in dataset:
            raise ImageIOError(
                f"{path}: has no Frame of Reference UID (0020,0052), which a DICOM SEG must "
                "reference; the series is not a valid CT/MR/PET series"
            )
        datasets.append(dataset)
    return datasets


def _segment_values(
    array: np.ndarray, segments: Mapping[int, str], target: Path
) -> tuple[list[int], dict[int, str]]:
    """The label values that get a segment (declared or present, background 0 excluded).

    Raises:
        ConfigError: there is none (``target`` names the output).
    """
    present = {int(v) for v in np.unique(array)} - {0}
    declared = {int(v) for v in segments} - {0}
    names = {int(v): str(n) for v, n in segments.items()}
    values = sorted(present | declared)
    if not values:
        raise ConfigError(
            f"{target}: no segment to write (empty label map and no foreground label declared)"
        )
    return values, {v: names.get(v, f"label_{v}") for v in values}


def _frames_and_sources(
    label: Image, source_files: Sequence[str | os.PathLike[str]], target: Path
) -> tuple[np.ndarray, list[pydicom.Dataset]]:
    """The label map as ``(frames, rows, columns)`` and the source files' headers, checked to
    match (``target`` names the output in errors).

    Raises:
        ConfigError: no source file; non-integer label values.
        GeometryError: the label is not 2D/3D, or its shape is not ``(files, Rows, Columns)``.
        ImageIOError: a source file is unreadable, multi-frame, or lacks a Frame of Reference.
    """
    if not source_files:
        raise ConfigError(f"{target}: no source DICOM files given")
    array = np.asarray(label.array)
    if label.has_channels or label.spatial_dims not in (2, 3):
        raise GeometryError(f"{target}: the label map must be 3D (z, y, x), got {array.shape}")
    if array.ndim == 2:
        array = array[None]
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise ConfigError(f"{target}: the label map has non-integer values")
    datasets = _source_datasets(source_files)
    grid = (len(datasets), int(datasets[0].Rows), int(datasets[0].Columns))
    if array.shape != grid:
        raise GeometryError(
            f"{target}: label map {array.shape} does not match the source series "
            f"(files, Rows, Columns) = {grid}"
        )
    return array, datasets


def _segment_descriptions(
    names: Sequence[str], *, algorithm_name: str, algorithm_version: str
) -> list[Any]:
    """One ``highdicom.seg.SegmentDescription`` per name, numbered 1, 2, ...: AUTOMATIC, by the
    given algorithm, with the generic SNOMED CT "Tissue" category and type."""
    highdicom, _ = _require_dicom_extra()
    from pydicom.sr.codedict import codes

    algorithm = highdicom.AlgorithmIdentificationSequence(
        name=algorithm_name,
        version=algorithm_version,
        family=codes.cid7162.ArtificialIntelligence,
    )
    return [
        highdicom.seg.SegmentDescription(
            segment_number=number,
            segment_label=name[:64],  # LO: at most 64 characters
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number, name in enumerate(names, start=1)
    ]


def write_dicom_seg(
    label: Image,
    source_files: Sequence[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    *,
    segments: Mapping[int, str],
    overwrite: bool = False,
    algorithm_name: str = "medseg",
    algorithm_version: str = __version__,
    series_description: str = "medseg segmentation",
    series_number: int = 300,
) -> Path:
    """Write a label map as a binary DICOM Segmentation referencing its source series.

    One segment per label value present in ``label`` or declared in ``segments`` (background 0
    excluded), numbered 1, 2, ... in increasing label value, its Segment Label the label's
    name; algorithm type AUTOMATIC with ``algorithm_name``/``algorithm_version``. Segmented
    property category and type are the generic SNOMED CT "Tissue" code (a label name is free
    text, not a coded anatomy). Frame ``k`` of the label (array axis 0) is derived from
    ``source_files[k]``; pass the files in the order :func:`read_dicom_series` returned them.

    An empty label map (no foreground voxel) is still written as a valid SEG: highdicom keeps
    every frame when all would be empty, so the declared segments are present and empty; a
    warning is logged. With no segment at all (empty map, ``segments`` only background) there
    is nothing to describe and a ``ConfigError`` is raised.

    Args:
        label: ``(z, y, x)`` integer label map on the grid of the source series (a ``(y, x)``
            map with one source file is accepted).
        source_files: the series' files, sorted as :func:`read_dicom_series` returns them.
        out_path: the ``.dcm`` file to write (atomically).
        segments: label value -> name (e.g. the plan's/dataset's ``labels`` inverted); values
            without a name are called ``label_<value>``.
        overwrite: replace an existing ``out_path``.
        algorithm_name, algorithm_version: the Algorithm Identification of every segment.
        series_description, series_number: of the new SEG series.

    Returns:
        The written path.

    Raises:
        ConfigError: the ``dicom`` extra is missing; no segment to write.
        GeometryError: the label's shape is not ``(number of files, Rows, Columns)``.
        ImageIOError: a source file is unreadable, multi-frame, or lacks a Frame of Reference.
        OverwriteError: ``out_path`` exists and ``overwrite`` is False.
    """
    highdicom, _ = _require_dicom_extra()
    target = check_writable(out_path, overwrite=overwrite)
    array, datasets = _frames_and_sources(label, source_files, target)
    values, names = _segment_values(array, segments, target)
    if not (array != 0).any():
        log.warning("%s: the label map is empty; writing a SEG with empty segments", target)
    descriptions = _segment_descriptions(
        [names[value] for value in values],
        algorithm_name=algorithm_name,
        algorithm_version=str(algorithm_version),
    )
    # (frames, rows, columns, segments): segment numbers need not equal label values
    pixels = np.stack([array == value for value in values], axis=-1)
    seg = highdicom.seg.Segmentation(
        source_images=datasets,
        pixel_array=pixels,
        segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=highdicom.UID(),
        series_number=series_number,
        sop_instance_uid=highdicom.UID(),
        instance_number=1,
        manufacturer="medseg",
        manufacturer_model_name=algorithm_name[:64],
        software_versions=f"medseg {__version__}",
        device_serial_number="none",
        series_description=series_description[:64],
    )
    with atomic_path(target) as tmp:
        seg.save_as(tmp)
    return target


__all__ = [
    "DICOM_EXTRA",
    "DicomSeries",
    "find_dicom_series",
    "list_dicom_series",
    "read_dicom_series",
    "write_dicom_seg",
]
