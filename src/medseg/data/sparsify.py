"""``sparsify_dataset``: a copy of a dataset in which only every n-th slice is annotated.

Simulates sparse annotation (Cicek et al. 2016, "3D U-Net: learning dense volumetric
segmentation from sparse annotation"): along ``axis``, the slices ``0, n, 2n, ...`` of every
label map keep their labels and every other voxel becomes the ``ignore`` label, which
training, sampling and evaluation leave out (nnU-Net v2's convention). The rule is the same
for every case and does not look at the labels: slice 0 is always annotated, so every case
keeps at least one slice, but a case whose structure lies between annotated slices keeps only
background there.

The copy is an nnU-Net v2 dataset: ``imagesTr`` (and ``imagesTs``, when present) hold the
source images unchanged (hard links where the file system allows, else copies),
``labelsTr`` the rewritten labels, and ``dataset.json`` the source's with
``"ignore": max label value + 1`` added to ``labels`` (a dataset that already has an
``ignore`` label keeps its value and its ignored voxels). The whole folder is written beside
``out`` under a temporary name and renamed into place at the end, so an interrupted run never
leaves a half-written dataset under ``out``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.data.dataset import Case, Dataset, load_dataset
from medseg.data.labels import IGNORE
from medseg.errors import ConfigError, DatasetError, OverwriteError
from medseg.fileutil import write_json_atomic
from medseg.io import read_image, write_image

__all__ = ["SparsifySummary", "annotated_slices", "sparsify_dataset", "sparsify_label"]


@dataclass(frozen=True)
class SparsifySummary:
    """What ``sparsify_dataset`` wrote.

    Attributes:
        out: the new dataset folder.
        num_cases: labelled cases written.
        num_test_cases: ``imagesTs`` cases copied.
        ignore_label: the value of the ``ignore`` label in the new ``dataset.json``.
        annotated_slices: slices along ``axis`` that keep their labels, over all cases.
        total_slices: slices along ``axis``, over all cases.
        annotated_voxels: label voxels that are not ``ignore``, over all cases.
        total_voxels: label voxels, over all cases.
    """

    out: Path
    num_cases: int
    num_test_cases: int
    ignore_label: int
    annotated_slices: int
    total_slices: int
    annotated_voxels: int
    total_voxels: int

    @property
    def annotated_share(self) -> float:
        """Share of the label voxels that keep an annotation."""
        return self.annotated_voxels / max(self.total_voxels, 1)


def annotated_slices(length: int, every_nth_slice: int) -> np.ndarray:
    """Boolean ``(length,)``: True for the slices ``0, n, 2n, ...`` that keep their labels.

    Example:
        >>> annotated_slices(7, 3).tolist()
        [True, False, False, True, False, False, True]
    """
    return np.arange(length) % every_nth_slice == 0


def sparsify_label(
    label: np.ndarray, *, every_nth_slice: int, axis: int, ignore_label: int
) -> np.ndarray:
    """``label`` with every voxel outside the slices ``0, n, 2n, ...`` along ``axis`` set to
    ``ignore_label``.

    Args:
        label: ``(*spatial)`` integer label map.
        every_nth_slice: ``n >= 1``.
        axis: the array axis the slices are taken along.
        ignore_label: the value of unannotated voxels.

    Returns:
        ``(*spatial)``, in ``label``'s dtype when ``ignore_label`` fits it, else the smallest
        integer dtype that holds both.

    Example:
        >>> sparsify_label(np.ones((3, 2), np.uint8), every_nth_slice=2, axis=0, ignore_label=2)
        array([[1, 1],
               [2, 2],
               [1, 1]], dtype=uint8)
    """
    keep = annotated_slices(label.shape[axis], every_nth_slice)
    shape = [1] * label.ndim
    shape[axis] = label.shape[axis]
    dtype = np.result_type(label.dtype, np.min_scalar_type(ignore_label))
    return np.where(keep.reshape(shape), label.astype(dtype, copy=False), dtype.type(ignore_label))


def sparsify_dataset(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    every_nth_slice: int,
    axis: int = 0,
    overwrite: bool = False,
    copy_images: bool = False,
) -> SparsifySummary:
    """Write a copy of the nnU-Net v2 dataset ``source`` to ``out`` in which only every
    ``every_nth_slice``-th slice along ``axis`` is annotated (see the module docstring).

    Args:
        source: the dataset folder (nnU-Net v2 layout).
        out: the new dataset folder; must be new or empty unless ``overwrite``.
        every_nth_slice: ``n >= 1``: the slices ``0, n, 2n, ...`` keep their labels.
        axis: array axis of the slices (0: the first axis, ``z`` of a ``(z, y, x)`` volume).
        overwrite: replace an existing dataset folder ``out`` (one with a ``dataset.json``).
        copy_images: copy the images instead of hard-linking them.

    Returns:
        The ``SparsifySummary``.

    Raises:
        ConfigError: ``every_nth_slice < 1``, or ``axis`` is not an axis of the cases.
        DatasetError: ``source`` is not an nnU-Net v2 dataset, a label cannot be read, or
            ``out`` is ``source`` or contains it.
        OverwriteError: ``out`` is not empty and ``overwrite`` is False, or ``out`` is not a
            dataset folder.
    """
    if isinstance(every_nth_slice, bool) or not isinstance(every_nth_slice, int):
        raise ConfigError(f"every_nth_slice must be an integer >= 1, got {every_nth_slice!r}")
    if every_nth_slice < 1:
        raise ConfigError(f"every_nth_slice must be >= 1, got {every_nth_slice}")
    dataset = load_dataset(source)
    if dataset.layout != "nnunet_v2":
        raise DatasetError(
            f"{dataset.root}: sparsify needs an nnU-Net v2 dataset (dataset.json with "
            f"'channel_names' and 'file_ending'), found the {dataset.layout} layout"
        )
    if dataset.layout_problems:  # e.g. an image without a label: it would be left out
        path, message = dataset.layout_problems[0]
        raise DatasetError(f"{path}: {message}; run 'medseg data check {dataset.root}'")
    if not dataset.cases:
        raise DatasetError(f"{dataset.root}: no labelled cases to sparsify")
    out = Path(out)
    _check_out(dataset.root, out, overwrite=overwrite)
    ignore = _ignore_value(dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()  # the umask's mode, as the final folder should have
    try:
        counts = _write_copy(dataset, tmp, every_nth_slice, axis, ignore, copy_images=copy_images)
        _move_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    slices, total_slices, voxels, total_voxels = (int(c) for c in counts)
    return SparsifySummary(
        out=out,
        num_cases=len(dataset.cases),
        num_test_cases=len(dataset.test_cases),
        ignore_label=ignore,
        annotated_slices=slices,
        total_slices=total_slices,
        annotated_voxels=voxels,
        total_voxels=total_voxels,
    )


def _write_copy(
    dataset: Dataset,
    folder: Path,
    every_nth_slice: int,
    axis: int,
    ignore: int,
    *,
    copy_images: bool,
) -> np.ndarray:
    """Write the sparse copy into ``folder``; return ``[annotated slices, slices, annotated
    voxels, voxels]`` over all cases."""
    counts = np.zeros(4, dtype=np.int64)
    for case in dataset.cases:
        _link_images(case, folder / "imagesTr", copy=copy_images)
        counts += _write_sparse_label(
            case, folder / "labelsTr", every_nth_slice=every_nth_slice, axis=axis, ignore=ignore
        )
    for case in dataset.test_cases:
        _link_images(case, folder / "imagesTs", copy=copy_images)
    meta = json.loads((dataset.root / "dataset.json").read_text(encoding="utf-8"))
    meta["labels"] = {**meta["labels"], IGNORE: ignore}
    meta["sparsified"] = {
        "source": str(dataset.root),
        "every_nth_slice": every_nth_slice,
        "axis": axis,
    }
    write_json_atomic(folder / "dataset.json", meta)
    return counts


def _ignore_value(dataset: Dataset) -> int:
    """The dataset's ``ignore`` label, or one above its largest label value."""
    if dataset.ignore_label is not None:
        return dataset.ignore_label
    return max(dataset.label_values) + 1


def _check_out(source: Path, out: Path, *, overwrite: bool) -> None:
    """``out`` may be written: not ``source`` nor above it, new or empty (or, with
    ``overwrite``, a dataset folder)."""
    src, dst = source.resolve(), out.resolve()
    if dst == src or dst in src.parents or src in dst.parents:
        raise DatasetError(
            f"{out}: the sparse copy must go to a folder outside the source dataset {source} "
            "and not containing it"
        )
    if dst.exists() and not dst.is_dir():
        raise OverwriteError(f"{out}: exists and is not a folder")
    if not dst.is_dir() or not any(dst.iterdir()):
        return
    if not overwrite:
        raise OverwriteError(f"{out}: folder is not empty; pass --overwrite to replace it")
    if not (dst / "dataset.json").is_file():
        raise OverwriteError(
            f"{out}: --overwrite replaces a dataset folder, but this one has no dataset.json; "
            "choose a new or empty folder"
        )


def _link_images(case: Case, folder: Path, *, copy: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in case.image_paths:
        target = folder / path.name
        if not copy:
            try:
                os.link(path, target)
                continue
            except OSError:  # another file system, or links not allowed: copy
                pass
        shutil.copy2(path, target)


def _write_sparse_label(
    case: Case, folder: Path, *, every_nth_slice: int, axis: int, ignore: int
) -> np.ndarray:
    """Write the case's sparse label; return ``[annotated slices, slices, annotated voxels,
    voxels]``."""
    assert case.label_path is not None
    label = read_image(case.label_path)
    if label.has_channels:
        raise DatasetError(
            f"{case.label_path}: label has {label.num_channels} channels; expected one label map"
        )
    array = label.array
    if not 0 <= axis < array.ndim:
        raise ConfigError(
            f"axis {axis} is not an axis of {case.label_path} (shape {array.shape}); "
            f"use 0..{array.ndim - 1}"
        )
    if array.dtype.kind not in "iub":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise DatasetError(f"{case.label_path}: label has non-integer values")
        array = array.astype(np.int64)
    sparse = sparsify_label(array, every_nth_slice=every_nth_slice, axis=axis, ignore_label=ignore)
    write_image(label.with_array(sparse), folder / case.label_path.name)
    length = array.shape[axis]
    return np.array(
        [
            int(annotated_slices(length, every_nth_slice).sum()),
            length,
            int(np.count_nonzero(sparse != ignore)),
            sparse.size,
        ],
        dtype=np.int64,
    )


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder ``tmp`` onto ``out`` (an existing ``out`` is replaced)."""
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    if out.is_dir():
        out.rmdir()
    os.replace(tmp, out)
