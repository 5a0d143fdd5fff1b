"""Whole-slide datasets: a ``dataset.json`` with a ``slides`` list.

Layout::

    DATASET/dataset.json
        {"name": "colon", "modality": "H&E",
         "labels": {"background": 0, "tissue": 1, "gland": 2, "nucleus": 3},
         "file_ending": ".tif",
         "mpp": 0.5,                       # optional: level-0 µm/px of every slide
         "slides": [
             {"image": "slides/a.tif", "label": "labels/a.tif"},
             {"image": "slides/b.tif", "annotations": "annotations/b.geojson"},
             {"image": "slides/c.tif", "mpp": 0.25}        # per-slide mpp, unlabelled
         ]}

A slide is labelled by a **label slide** (one channel of label values, level-0 pixels matching
the image's) or by **GeoJSON polygons** (QuPath's export, ``medseg.io.geojson``), not both.
Paths are relative to DATASET and must stay inside it (``../x`` or ``/x`` is refused, never
opened). The case id is the image's file name without ``file_ending`` (or its last suffix).

**Sparse annotations**: ``"unannotated": "ignore"`` (with an ``ignore`` label, see
``medseg.data.labels``) gives the pixels no polygon covers the ``ignore`` value instead of
background, for GeoJSON files that outline only some regions; training leaves them out.

``mpp`` says how many microns one level-0 pixel is, where the file does not say it (or says
it wrongly): a slide's own ``mpp`` comes first, then the dataset's, then the file's.

**Label slides at a lower resolution**: a label slide may be stored ``r`` times smaller than
its image (``r`` an integer >= 2, the same along both axes, each side ``floor`` or ``ceil`` of
the image's side over ``r``): its pixel ``(i, j)`` then labels image pixels
``[r i, r (i + 1)) x [r j, r (j + 1))``. Any other size mismatch is an error naming both sizes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from medseg.data.dataset import _inside
from medseg.data.labels import labels_from_meta
from medseg.errors import DatasetError, listing
from medseg.io.geojson import Annotations, read_geojson
from medseg.io.slide import Slide, open_slide

__all__ = [
    "OpenSlideCase",
    "SlideCase",
    "SlideDataset",
    "is_slide_dataset",
    "load_slide_dataset",
    "open_slide_case",
]

SLIDE_KEYS = ("image", "label", "annotations", "mpp")


@dataclass(frozen=True)
class SlideCase:
    """One slide of the dataset: its image, label slide or annotations, and mpp override."""

    case_id: str
    image: Path
    label: Path | None = None
    annotations: Path | None = None
    mpp: float | None = None

    @property
    def is_labelled(self) -> bool:
        return self.label is not None or self.annotations is not None


@dataclass(frozen=True)
class SlideDataset:
    """A slide dataset folder resolved (see the module docstring).

    Attributes:
        labels: class name -> integer value (``background`` is 0).
        mpp: the dataset-wide level-0 µm per pixel, or None (the files say).
        unannotated: ``"background"`` or ``"ignore"``: the value of GeoJSON slides' pixels
            outside every polygon.
    """

    root: Path
    name: str
    modality: str
    labels: dict[str, int]
    file_ending: str
    cases: tuple[SlideCase, ...]
    mpp: float | None = None
    unannotated: str = "background"
    meta: dict = field(default_factory=dict, repr=False)

    @property
    def foreground_labels(self) -> list[int]:
        """The label values tiles are oversampled on: all but background and ``ignore``."""
        return sorted(v for k, v in self.labels.items() if v != 0 and k != "ignore")


@dataclass
class OpenSlideCase:
    """An opened slide with its labels; close it (or use ``with``)."""

    case: SlideCase
    slide: Slide
    labels: Slide | Annotations | None
    label_downsample: int = 1

    def close(self) -> None:
        self.slide.close()
        if isinstance(self.labels, Slide):
            self.labels.close()

    def __enter__(self) -> OpenSlideCase:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def is_slide_dataset(root: str | os.PathLike[str]) -> bool:
    """Whether ``root/dataset.json`` is a JSON object with a ``slides`` list."""
    meta_path = Path(root) / "dataset.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("slides"), list)


def load_slide_dataset(root: str | os.PathLike[str]) -> SlideDataset:
    """Read a slide dataset's ``dataset.json`` and check that its files exist.

    Raises:
        DatasetError: no folder or ``dataset.json``, invalid JSON, no ``slides`` list, an
            entry without ``image``, with unknown keys, with both ``label`` and
            ``annotations``, with a path outside the folder or a missing file, a duplicate
            case id, or a bad ``mpp``; all problems of the entries are listed at once.
    """
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise DatasetError(f"{root}: no dataset.json; a slide dataset lists its slides there")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{meta_path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict) or not isinstance(meta.get("slides"), list) or not meta["slides"]:
        raise DatasetError(
            f"{meta_path}: a slide dataset needs a non-empty 'slides' list of "
            '{"image": ..., "label": ...} or {"image": ..., "annotations": ...}'
        )
    labels = labels_from_meta(meta, meta_path)
    regions = sorted(k for k, v in labels.items() if not isinstance(v, int))
    if regions:
        raise DatasetError(f"{meta_path}: region labels {regions} are not supported for slides")
    ending = str(meta.get("file_ending", ""))
    unannotated = meta.get("unannotated", "background")
    if unannotated not in ("background", "ignore") or (
        unannotated == "ignore" and "ignore" not in labels
    ):
        raise DatasetError(
            f'{meta_path}: \'unannotated\' must be "background" or "ignore" (with an '
            f"'ignore' label in 'labels'), got {unannotated!r}"
        )
    problems: list[str] = []
    cases = [
        case
        for index, entry in enumerate(meta["slides"])
        if (case := _case(root, entry, index, ending, problems)) is not None
    ]
    seen: dict[str, Path] = {}
    for case in cases:
        if case.case_id in seen:
            problems.append(
                f"{case.image} has the same case id '{case.case_id}' as {seen[case.case_id]}"
            )
        seen.setdefault(case.case_id, case.image)
    if problems:
        raise DatasetError(
            f"{meta_path}: {len(problems)} problem(s): {listing(problems, limit=10, sep='; ')}"
        )
    return SlideDataset(
        root=root,
        name=str(meta.get("name", root.name)),
        modality=str(meta.get("modality", "H&E")),
        labels={k: int(v) for k, v in labels.items()},  # type: ignore[arg-type]
        file_ending=ending,
        cases=tuple(sorted(cases, key=lambda c: c.case_id)),
        mpp=_mpp(meta.get("mpp"), f"{meta_path}: 'mpp'"),
        unannotated=unannotated,
        meta=meta,
    )


def open_slide_case(dataset: SlideDataset, case: SlideCase) -> OpenSlideCase:
    """Open ``case``'s slide and its label slide or annotations, checked against each other.

    Raises:
        DatasetError: the slide has no mpp (neither the file nor dataset.json says it); the
            label slide's size is neither the image's nor an integer fraction of it (both
            sizes named); the annotations are bad (``read_geojson``).
        ImageIOError: a file cannot be read.
    """
    mpp = case.mpp if case.mpp is not None else dataset.mpp
    slide = open_slide(case.image, mpp=mpp)
    try:
        if slide.mpp is None:
            raise DatasetError(
                f'{case.image}: the slide does not record its microns per pixel; set "mpp" '
                f"in its 'slides' entry (or for every slide) in {dataset.root / 'dataset.json'}"
            )
        if case.annotations is not None:
            background = dataset.labels["ignore"] if dataset.unannotated == "ignore" else 0
            annotations = read_geojson(
                case.annotations,
                dataset.labels,
                slide_shape=slide.levels[0].shape,
                background=background,
            )
            return OpenSlideCase(case, slide, annotations)
        if case.label is None:
            return OpenSlideCase(case, slide, None)
        labels = open_slide(case.label, mpp=1.0)  # its mpp is the image's times the ratio
        try:
            ratio = label_downsample(slide.levels[0].shape, labels.levels[0].shape, case.label)
            if labels.channels != 1:
                raise DatasetError(
                    f"{case.label}: a label slide has one channel of label values, this one "
                    f"has {labels.channels}"
                )
        except BaseException:
            labels.close()
            raise
        return OpenSlideCase(case, slide, labels, ratio)
    except BaseException:
        slide.close()
        raise


def label_downsample(image: tuple[int, int], label: tuple[int, int], path: Path) -> int:
    """How many times smaller a label slide is than its image (1: same size).

    Example:
        >>> label_downsample((1000, 801), (250, 201), Path("a.tif"))
        4

    Raises:
        DatasetError: no integer ratio (>= 1) fits both sides; the message names both sizes.
    """
    if tuple(label) == tuple(image):
        return 1
    ratio = round(image[0] / max(label[0], 1))
    fits = ratio >= 2 and all(
        side in (math.floor(big / ratio), math.ceil(big / ratio))
        for big, side in zip(image, label, strict=True)
    )
    if not fits:
        raise DatasetError(
            f"{path}: label slide is {label[0]} x {label[1]} px but its image is "
            f"{image[0]} x {image[1]} px; a label slide must have the image's size or be an "
            "integer factor smaller along both axes"
        )
    return ratio


def _case(root: Path, entry: object, index: int, ending: str, problems: list) -> SlideCase | None:
    where = f"'slides' entry {index}"
    if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
        problems.append(f"{where} needs an 'image' path")
        return None
    unknown = sorted(set(entry) - set(SLIDE_KEYS))
    if unknown:
        problems.append(f"{where} has unknown key(s) {unknown}; allowed: {list(SLIDE_KEYS)}")
        return None
    if "label" in entry and "annotations" in entry:
        problems.append(f"{where} has both 'label' and 'annotations'; give one")
        return None
    paths = {}
    for key in ("image", "label", "annotations"):
        if key not in entry:
            continue
        path = _inside(root, entry[key])
        if path is None:
            problems.append(
                f"{where}: '{key}' {entry[key]!r} is not a relative path inside the dataset "
                "folder (it is not read)"
            )
            return None
        if not path.is_file():
            problems.append(f"{path} ({where} '{key}') does not exist")
            return None
        paths[key] = path
    try:
        mpp = _mpp(entry.get("mpp"), f"{where} 'mpp'")
    except DatasetError as err:
        problems.append(str(err))
        return None
    image = paths["image"]
    lower = image.name.lower()
    case_id = (
        image.name[: -len(ending)] if ending and lower.endswith(ending.lower()) else image.stem
    )
    return SlideCase(case_id, image, paths.get("label"), paths.get("annotations"), mpp)


def _mpp(value: object, where: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise DatasetError(f"{where} must be a positive number of microns per pixel, got {value!r}")
    return float(value)
