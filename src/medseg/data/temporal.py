"""Temporal training mode: segment each frame of a cine series with its neighbours as channels.

The least invasive route through the segmentation pipeline: ``cine_to_frames`` turns a
time-axis dataset (``docs/time_series.md``: one 4D image and one 4D label per case) into an
ordinary nnU-Net v2 dataset of **per-frame cases** whose ``2k + 1`` channels are the frames
``t - k .. t + k`` (``context = k``; channel ``k`` is frame ``t`` itself). ``plan``,
``preprocess``, ``train`` and ``predict`` then run unchanged, the U-Net seeing temporal
context as input channels; ``context = 0`` is the frame-by-frame baseline. Neighbours wrap
around the series (a cine series covers one periodic cardiac cycle); ``cyclic=False``
repeats the first/last frame instead (an acquisition that is not periodic).

Only labelled frames become training cases: a frame whose label voxels are all the
``ignore`` value (ACDC-style data labelled at ED and ES only) is left out. For prediction,
``write_frame_inputs`` writes every frame of a series as a case of such a folder and
``stack_frame_predictions`` stacks the per-frame label maps back into a series.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.data.case import Case
from medseg.data.dataset import Dataset, load_dataset
from medseg.data.labels import ignore_value
from medseg.errors import ConfigError, DatasetError
from medseg.fileutil import write_json_atomic
from medseg.io.formats import read_image, write_image
from medseg.io.image import Image
from medseg.io.time_axis import looks_like_time_series, read_time_series, stack_frames

FRAME_SUFFIX = "_f{t:03d}"


def _meta(dataset: Dataset) -> dict:
    try:
        meta = json.loads((dataset.root / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def is_time_series_dataset(dataset: Dataset) -> bool:
    """True when ``dataset.json`` says ``"time_axis": true``, or (nnU-Net v2 layout, no
    ``time_axis`` key) its first case's image is a 4D NIfTI whose header names a time unit."""
    meta = _meta(dataset)
    if "time_axis" in meta:
        return meta["time_axis"] is True
    if dataset.layout != "nnunet_v2" or not dataset.cases:
        return False
    return looks_like_time_series(dataset.cases[0].image_paths[0])


def dataset_frame_interval(dataset: Dataset) -> float | None:
    """``dataset.json``'s ``"frame_interval"`` (seconds) for files whose header has none.

    Raises:
        DatasetError: it is not a positive number.
    """
    value = _meta(dataset).get("frame_interval")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise DatasetError(
            f"{dataset.root / 'dataset.json'}: frame_interval must be a positive number of "
            f"seconds, got {value!r}"
        )
    return float(value)


def read_time_case(case: Case, frame_interval: float | None = None) -> tuple[Image, Image | None]:
    """A time-axis case's image series and label series (None when unlabelled); the label
    takes the image's frame interval.

    Raises:
        DatasetError: several image files, or label frames differing from the image's.
        ImageIOError: a file is not a readable time series (no interval: the message asks).
    """
    if len(case.image_paths) != 1:
        raise DatasetError(
            f"{case.image_paths[0]}: time-axis case '{case.case_id}' has "
            f"{len(case.image_paths)} image files; it takes one 4D image"
        )
    series = read_time_series(case.image_paths[0], frame_interval=frame_interval)
    if case.label_path is None:
        return series, None
    label = read_time_series(case.label_path, frame_interval=series.time_interval)
    if label.num_frames != series.num_frames:
        raise DatasetError(
            f"{case.label_path}: {label.num_frames} label frames, image has {series.num_frames}"
        )
    return series, label


def context_indices(t: int, frames: int, context: int, *, cyclic: bool = True) -> list[int]:
    """Frames ``t - context .. t + context``, wrapped (cyclic) or clamped at the ends.

    Example:
        >>> context_indices(0, 5, 1), context_indices(0, 5, 1, cyclic=False)
        ([4, 0, 1], [0, 0, 1])
    """
    if context < 0:
        raise ConfigError(f"context must be 0 or more frames, got {context}")
    offsets = range(t - context, t + context + 1)
    if cyclic:
        return [o % frames for o in offsets]
    return [min(max(o, 0), frames - 1) for o in offsets]


def frame_with_context(series: Image, t: int, context: int, *, cyclic: bool = True) -> Image:
    """Frame ``t`` of ``series`` with its neighbours as channels ``(2k + 1, *spatial)``."""
    if not series.has_time:
        raise ConfigError(f"image of shape {series.array.shape} is not a time series")
    indices = context_indices(t, series.num_frames, context, cyclic=cyclic)
    return Image(series.array[indices], series.spacing, series.origin, series.direction)


def labelled_frames(label: np.ndarray, ignore: int | None) -> list[int]:
    """The frames of a ``(T, *spatial)`` label series that are not entirely ``ignore``."""
    if ignore is None:
        return list(range(label.shape[0]))
    flat = label.reshape(label.shape[0], -1)
    return [t for t in range(label.shape[0]) if not np.all(flat[t] == ignore)]


def frame_case_id(case_id: str, t: int) -> str:
    """``<case>_fTTT``: the id of frame ``t`` of ``case_id`` in a per-frame dataset."""
    return case_id + FRAME_SUFFIX.format(t=t)


def write_frame_inputs(
    series: Image,
    out_dir: str | os.PathLike[str],
    case_id: str,
    *,
    context: int = 1,
    cyclic: bool = True,
    frames: Sequence[int] | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Write frames of ``series`` (default all) as ``<case>_fTTT_000C.nii.gz`` channel files
    (a ``medseg predict`` input folder, or ``imagesTr``). Returns the frame case ids."""
    out = Path(out_dir)
    ids = []
    for t in range(series.num_frames) if frames is None else frames:
        image = frame_with_context(series, t, context, cyclic=cyclic)
        frame_id = frame_case_id(case_id, t)
        for c, channel in enumerate(image.array):
            path = out / f"{frame_id}_{c:04d}.nii.gz"
            write_image(image.with_array(channel), path, overwrite=overwrite)
        ids.append(frame_id)
    return ids


def stack_frame_predictions(
    pred_dir: str | os.PathLike[str],
    case_id: str,
    frames: int,
    time_interval: float,
    *,
    ending: str = ".nii.gz",
) -> Image:
    """The label series ``(T, *spatial)`` of ``case_id`` from ``<case>_fTTT<ending>`` files.

    Raises:
        DatasetError: a frame's prediction is missing.
    """
    pred_dir = Path(pred_dir)
    images = []
    for t in range(frames):
        path = pred_dir / f"{frame_case_id(case_id, t)}{ending}"
        if not path.is_file():
            raise DatasetError(f"{path}: prediction of frame {t} of '{case_id}' is missing")
        images.append(read_image(path))
    return stack_frames(images, time_interval)


def cine_to_frames(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    context: int = 1,
    cyclic: bool = True,
    frame_interval: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert a time-axis dataset into a per-frame nnU-Net v2 dataset (module docstring).

    Args:
        source: a dataset with one single-channel 4D image and one 4D label per case.
        target: the new dataset folder (must be empty, or ``overwrite``).
        context: ``k``: frames ``t - k .. t + k`` become channels ``0 .. 2k``.
        cyclic: wrap neighbours around the series (else repeat the end frames).
        frame_interval: seconds between frames, for files whose header has none.

    Returns:
        ``target``; it holds ``dataset.json`` (``"temporal_context": k``) and
        ``temporal.json`` (source, context, cyclic, each case's frames and labelled frames).

    Raises:
        DatasetError: the source is not a single-channel time-axis dataset, or a label
            series does not have its image's frames.
        OverwriteError: ``target`` exists and holds files, without ``overwrite``.
    """
    source, target = Path(source), Path(target)
    dataset = load_dataset(source)
    if dataset.num_channels != 1:
        raise DatasetError(
            f"{source}: {dataset.num_channels} channels; temporal context needs one channel"
        )
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise DatasetError(f"{target}: folder is not empty; pass overwrite=True (--overwrite)")
    ignore = ignore_value(dataset.labels)
    frame_interval = frame_interval or dataset_frame_interval(dataset)
    records, found_ignore = {}, False
    for case in dataset.cases:
        series, label = read_time_case(case, frame_interval)
        assert label is not None  # dataset.cases are the labelled ones
        keep = labelled_frames(label.array, ignore)
        ids = write_frame_inputs(
            series,
            target / "imagesTr",
            case.case_id,
            context=context,
            cyclic=cyclic,
            frames=keep,
            overwrite=overwrite,
        )
        for t, frame_id in zip(keep, ids, strict=True):
            frame = label.frame(t)
            found_ignore |= ignore is not None and bool(np.any(frame.array == ignore))
            write_image(frame, target / "labelsTr" / f"{frame_id}.nii.gz", overwrite=overwrite)
        records[case.case_id] = {
            "frames": series.num_frames,
            "time_interval": series.time_interval,
            "labelled_frames": keep,
        }
    labels = {k: v for k, v in dataset.labels.items() if k != "ignore" or found_ignore}
    name = next(iter(dataset.channel_names.values()))
    write_json_atomic(
        target / "temporal.json",
        {"source": str(source), "context": context, "cyclic": cyclic, "cases": records},
    )
    write_json_atomic(
        target / "dataset.json",
        {
            "name": f"{dataset.name}_frames_k{context}",
            "channel_names": {str(c): name for c in range(2 * context + 1)},
            "labels": labels,
            "numTraining": sum(len(r["labelled_frames"]) for r in records.values()),
            "file_ending": ".nii.gz",
            "temporal_context": context,
        },
    )
    return target


def series_splits(
    frame_case_ids: Sequence[str], *, num_folds: int = 5, seed: int = 12345
) -> list[dict[str, list[str]]]:
    """K-fold splits of a per-frame dataset that keep every frame of a series in one fold.

    Frames of one series are nearly the same image; split by frame, validation would see the
    training series. Write the result to ``RESULTS/splits.json`` (after ``medseg plan``,
    before ``medseg train``) to cross-validate by series.

    Example:
        >>> ids = ["a_f000", "a_f009", "b_f001", "b_f007"]
        >>> [s["val"] for s in series_splits(ids, num_folds=2, seed=0)]
        [['a_f000', 'a_f009'], ['b_f001', 'b_f007']]
    """
    series: dict[str, list[str]] = {}
    for case_id in sorted(frame_case_ids):
        stem, _, frame = case_id.rpartition("_f")
        if not stem or not frame.isdigit():
            raise ConfigError(f"case '{case_id}' is not a per-frame case '<case>_fTTT'")
        series.setdefault(stem, []).append(case_id)
    names = sorted(series)
    if len(names) < 2:
        raise ConfigError(f"cross-validation needs at least 2 series, got {len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    splits = []
    for fold in np.array_split(order, min(num_folds, len(names))):
        val = sorted(c for i in fold for c in series[names[i]])
        splits.append({"train": sorted(set(frame_case_ids) - set(val)), "val": val})
    return splits
