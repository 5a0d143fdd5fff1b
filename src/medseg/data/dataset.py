"""Dataset folders: the nnU-Net v2 / Medical Segmentation Decathlon layouts and 2D folders.

Three layouts are recognised by ``load_dataset``:

* **nnU-Net v2** (``dataset.json`` has ``channel_names`` and ``file_ending``)::

      DATASET/imagesTr/<case>_0000<ending>   one file per channel (_0000, _0001, ...)
      DATASET/labelsTr/<case><ending>
      DATASET/imagesTs/<case>_0000<ending>   optional, unlabelled
      DATASET/dataset.json  {"channel_names": {"0": "MRI"}, "labels": {"background": 0, ...},
                             "numTraining": N, "file_ending": ".nii.gz"}

  A single RGB picture (``_0000.png`` / ``.tif``) may provide three channels.
* **MSD (Decathlon)** (``dataset.json`` has ``modality`` and a ``training`` list): paths are
  taken from the list (relative to DATASET; a path leading outside it is a problem and is
  never read); a multi-modal case is one 4D file whose first array axis is the channel.
* **2D folder** (no ``dataset.json``): ``DATASET/images/<name>.<png|tif|jpg>`` with masks of the
  same stem in ``DATASET/masks/`` (or ``labels/``). Label values are read from the masks.

Sparse annotations (nnU-Net v2): a label named exactly ``ignore`` in ``labels`` (e.g.
``{"background": 0, "hippocampus": 1, "ignore": 2}``) marks voxels that were not annotated.
It is not a class: ``foreground_labels`` leaves it out and ``ignore_label`` holds its value,
which must be an integer above every other label value (``medseg.data.labels``).

``load_dataset`` raises ``DatasetError`` only when the folder cannot be understood at all;
everything else (missing files, bad values, geometry) is reported by ``check_dataset``. A
case's files and how they are read (``Case``, ``read_case``) live in ``medseg.data.case``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from medseg.data.case import (
    Case,
    channels_first_image,
    duplicate_cases,
    missing_channel_files,
    read_case,
)
from medseg.data.labels import IGNORE, declared_ignore_label, ignore_value, labels_from_meta
from medseg.errors import DatasetError
from medseg.io import IMAGE_EXTENSIONS, read_image

__all__ = [
    "IGNORE",
    "Case",
    "Dataset",
    "Layout",
    "channels_first_image",
    "declared_ignore_label",
    "duplicate_cases",
    "ignore_value",
    "load_dataset",
    "missing_channel_files",
    "read_case",
]

Layout = Literal["nnunet_v2", "msd", "folder2d"]


@dataclass(frozen=True)
class Dataset:
    """A dataset folder resolved into cases.

    Attributes:
        root: the dataset folder.
        layout: which layout was recognised.
        name: ``dataset.json`` name (or the folder name).
        channel_names: channel index (as str) -> modality name, e.g. ``{"0": "CT"}``.
        labels: label name -> integer value (``background`` is 0). nnU-Net region labels
            (lists) are kept as lists.
        file_ending: image extension, e.g. ``.nii.gz``.
        cases: the labelled training cases, sorted by id.
        test_cases: unlabelled cases from ``imagesTs`` (may be empty).
        num_training: ``numTraining`` as declared in ``dataset.json`` (None if absent).
        layout_problems: ``(path, message)`` found while resolving files (e.g. an image
            without a label); reported by ``check_dataset``.
        instance_labels: ``dataset.json`` says ``"instance_labels": true``: label maps hold one
            id per object (detection and instance data), so any non-negative integer is valid.
    """

    root: Path
    layout: Layout
    name: str
    channel_names: dict[str, str]
    labels: dict[str, int | list[int]]
    file_ending: str
    cases: tuple[Case, ...]
    test_cases: tuple[Case, ...] = ()
    num_training: int | None = None
    layout_problems: tuple[tuple[Path, str], ...] = field(default=())
    instance_labels: bool = False

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def label_values(self) -> set[int]:
        """Every integer value a label map may contain (region lists flattened)."""
        values: set[int] = set()
        for value in self.labels.values():
            values.update(value if isinstance(value, list) else [value])
        return values

    @property
    def foreground_labels(self) -> dict[str, int]:
        """Name -> value for the plain (non-region) labels other than background and
        ``ignore``."""
        return {
            k: v for k, v in self.labels.items() if isinstance(v, int) and v != 0 and k != IGNORE
        }

    @property
    def ignore_label(self) -> int | None:
        """The value of the ``ignore`` label (unannotated voxels), or None (dense labels)."""
        return ignore_value(self.labels)

    def case(self, case_id: str) -> Case:
        for case in self.cases + self.test_cases:
            if case.case_id == case_id:
                return case
        raise DatasetError(f"{self.root}: no case '{case_id}'")


def load_dataset(root: str | os.PathLike[str]) -> Dataset:
    """Resolve a dataset folder into cases (see the module docstring for the layouts).

    Raises:
        DatasetError: the folder does not exist, ``dataset.json`` is not valid JSON or lacks
            required keys, or no layout is recognised.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    meta_path = root / "dataset.json"
    if not meta_path.exists():
        return _load_folder2d(root)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{meta_path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise DatasetError(f"{meta_path}: expected a JSON object")
    if isinstance(meta.get("slides"), list):
        raise DatasetError(
            f"{meta_path}: a whole-slide dataset ('slides' list): 'medseg plan' extracts its "
            "tiles into RESULTS/tiles first (docs/pathology.md)"
        )
    if "channel_names" in meta or "file_ending" in meta:
        return _load_nnunet_v2(root, meta)
    if "modality" in meta or "training" in meta:
        return _load_msd(root, meta)
    raise DatasetError(
        f"{meta_path}: neither nnU-Net v2 ('channel_names', 'file_ending') nor MSD "
        "('modality', 'training') keys found"
    )


# ---------------------------------------------------------------- layouts


def _load_nnunet_v2(root: Path, meta: dict) -> Dataset:
    meta_path = root / "dataset.json"
    missing = [k for k in ("channel_names", "labels", "file_ending") if k not in meta]
    if missing:
        raise DatasetError(f"{meta_path}: missing required key(s) {missing}")
    ending = str(meta["file_ending"])
    if ending.lower() not in IMAGE_EXTENSIONS:
        raise DatasetError(f"{meta_path}: file_ending '{ending}' is not a supported image format")
    channel_names = {str(k): str(v) for k, v in meta["channel_names"].items()}
    problems: list[tuple[Path, str]] = []
    cases = _discover_v2(root / "imagesTr", root / "labelsTr", ending, problems, labelled=True)
    test_cases = _discover_v2(root / "imagesTs", None, ending, problems, labelled=False)
    if not (root / "imagesTr").is_dir():
        problems.append((root / "imagesTr", "folder is missing"))
    return Dataset(
        root=root,
        layout="nnunet_v2",
        name=str(meta.get("name", root.name)),
        channel_names=channel_names,
        labels=labels_from_meta(meta, meta_path),
        file_ending=ending,
        cases=cases,
        test_cases=test_cases,
        num_training=_int_or_none(meta.get("numTraining")),
        layout_problems=tuple(problems),
        instance_labels=meta.get("instance_labels") is True,
    )


def _discover_v2(
    image_dir: Path, label_dir: Path | None, ending: str, problems: list, *, labelled: bool
) -> tuple[Case, ...]:
    if not image_dir.is_dir():
        return ()
    channels: dict[str, list[Path]] = {}
    for path in sorted(image_dir.iterdir()):
        name = path.name
        if name.startswith(".") or not name.endswith(ending):
            continue
        stem = name[: -len(ending)]
        if len(stem) < 6 or stem[-5] != "_" or not stem[-4:].isdigit():
            problems.append(
                (path, "image name lacks the channel suffix _XXXX (e.g. case_0000" + ending + ")")
            )
            continue
        channels.setdefault(stem[:-5], []).append(path)
    cases = []
    for case_id, paths in sorted(channels.items()):
        label = None
        if labelled and label_dir is not None:
            candidate = label_dir / f"{case_id}{ending}"
            if candidate.exists():
                label = candidate
            else:
                problems.append((candidate, f"label file missing for case '{case_id}'"))
                continue
        cases.append(Case(case_id, tuple(sorted(paths)), label))
    if labelled and label_dir is not None and label_dir.is_dir():
        for path in sorted(label_dir.iterdir()):
            if path.name.endswith(ending) and path.name[: -len(ending)] not in channels:
                problems.append((path, "label file has no matching image in imagesTr"))
    return tuple(cases)


def _load_msd(root: Path, meta: dict) -> Dataset:
    meta_path = root / "dataset.json"
    if not isinstance(meta.get("training"), list):
        raise DatasetError(f"{meta_path}: MSD layout needs a 'training' list of {{image, label}}")
    modality = meta.get("modality", {"0": "image"})
    problems: list[tuple[Path, str]] = []
    cases = []
    ending = ""
    for entry in meta["training"]:
        if not isinstance(entry, dict):
            problems.append(
                (meta_path, f"'training' entry {entry!r} is not an {{image, label}} object")
            )
            continue
        if not all(isinstance(entry.get(k), str) and entry[k].strip() for k in ("image", "label")):
            problems.append(
                (meta_path, f"'training' entry {entry} needs 'image' and 'label' paths")
            )
            continue
        image, label = _inside(root, entry["image"]), _inside(root, entry["label"])
        if image is None or label is None:
            problems.append(
                (
                    meta_path,
                    f"'training' entry {entry} points outside the dataset "
                    "folder; paths must be relative to it and stay inside it (the file "
                    "is not read)",
                )
            )
            continue
        ending = _ending_of(image)
        case_id = image.name[: -len(ending)] if ending else image.stem
        if not image.exists():
            problems.append((image, "image listed in dataset.json 'training' does not exist"))
            continue
        if not label.exists():
            problems.append((label, "label listed in dataset.json 'training' does not exist"))
            continue
        cases.append(Case(case_id, (image,), label))
    listed = meta.get("test") if isinstance(meta.get("test"), list) else []
    tests = [_inside(root, p) for p in listed]
    test_cases = tuple(Case(_strip(p), (p,)) for p in tests if p is not None and p.exists())
    return Dataset(
        root=root,
        layout="msd",
        name=str(meta.get("name", root.name)),
        channel_names={str(k): str(v) for k, v in modality.items()},
        labels=labels_from_meta(meta, meta_path),
        file_ending=ending or ".nii.gz",
        cases=tuple(sorted(cases, key=lambda c: c.case_id)),
        test_cases=test_cases,
        num_training=_int_or_none(meta.get("numTraining")),
        layout_problems=tuple(problems),
    )


def _load_folder2d(root: Path) -> Dataset:
    image_dir = root / "images"
    label_dir = next((root / n for n in ("masks", "labels") if (root / n).is_dir()), None)
    if not image_dir.is_dir() or label_dir is None:
        raise DatasetError(
            f"{root}: no dataset.json, and not a 2D folder with 'images/' and 'masks/' "
            "(or 'labels/'); see the README for the supported layouts"
        )
    problems: list[tuple[Path, str]] = []
    masks = {_strip(p): p for p in label_dir.iterdir() if _ending_of(p)}
    cases, endings, label_values = [], set(), set()
    for path in sorted(image_dir.iterdir()):
        ending = _ending_of(path)
        if not ending:
            continue
        case_id = path.name[: -len(ending)]
        if case_id not in masks:
            problems.append((path, f"no mask named '{case_id}.*' in {label_dir.name}/"))
            continue
        endings.add(ending)
        cases.append(Case(case_id, (path,), masks[case_id]))
    for case in cases:  # a plain folder declares no labels: take them from the masks
        try:
            label_values.update(int(v) for v in np.unique(read_image(case.label_path).array))
        except Exception:  # unreadable masks are reported by check_dataset
            continue
    if not cases:
        raise DatasetError(f"{image_dir}: no image/mask pairs found")
    first_image = read_image(cases[0].image_paths[0])
    labels: dict[str, int | list[int]] = {"background": 0}
    labels.update({f"label_{v}": v for v in sorted(label_values) if v != 0})
    return Dataset(
        root=root,
        layout="folder2d",
        name=root.name,
        channel_names={str(i): f"channel_{i}" for i in range(first_image.num_channels)},
        labels=labels,
        file_ending=sorted(endings)[0],
        cases=tuple(cases),
        layout_problems=tuple(problems),
    )


def _inside(root: Path, value: object) -> Path | None:
    """``root / value`` when ``value`` is a relative path that stays inside ``root``, else None.

    Judged on the text (no symlink is followed): a dataset whose files are links to storage
    elsewhere stays valid, while ``../x.nii.gz`` or ``/etc/x.nii.gz`` is never opened.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    relative = Path(os.path.normpath(value))
    if relative.is_absolute() or relative.drive or relative.parts[:1] == ("..",):
        return None
    return root / relative


def _ending_of(path: Path) -> str:
    name = path.name.lower()
    return next((ext for ext in IMAGE_EXTENSIONS if name.endswith(ext)), "")


def _strip(path: Path) -> str:
    ending = _ending_of(path)
    return path.name[: -len(ending)] if ending else path.stem


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
