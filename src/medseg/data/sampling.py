"""Patch sampling for training (foreground oversampling, class balance) and a grid for inference.

Arrays follow ``medseg.io``: image ``(C, *spatial)``, label ``(*spatial)`` or ``(1, *spatial)``.

Training patches (``PatchSampler``):

* ``mode="oversample"`` (nnU-Net): a fraction ``oversample_foreground`` of each batch is
  centred on a voxel of a foreground class chosen uniformly among the classes present in the
  case (so rare classes are drawn as often as common ones); the rest are placed uniformly at
  random. The number of forced patches per batch is ``floor(B * f)`` plus one with
  probability ``frac(B * f)``, so the long-run fraction equals ``f`` for any batch size
  (nnU-Net rounds per batch position instead: with ``B = 2`` and ``f = 1/3`` it forces 1/2).
* ``mode="balanced"``: every patch is centred on a voxel of a class drawn uniformly among the
  present classes *including background* -- for a binary task the 50/50 foreground /
  background scheme of Kamnitsas et al. (DeepMedic, 2017).
* ``mode="uniform"``: patches placed uniformly at random.

Sparse annotations: negative label values (-1, the ``ignore`` label) are never a centre: class
locations hold values >= 1 only and a background centre is a voxel labelled 0, so
"foreground" always means *annotated* foreground.

With ``keep_inside=True`` (nnU-Net) a patch is shifted to lie inside the image wherever the
image is at least as large as the patch; the chosen voxel stays inside the patch but is no
longer exactly central. ``keep_inside=False`` centres exactly and pads at borders.

Padding: image voxels outside the case are 0 (``image_pad="zero"``, nnU-Net; on z-scored data
0 is the mean) or each channel's minimum (``"min"``, for CT/raw intensities where 0 is not
background); label voxels outside are ``label_pad`` (0 = background, or an ignore value such
as -1 to exclude them from the loss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SamplingMode = Literal["oversample", "balanced", "uniform"]


def class_locations(
    label: np.ndarray, *, max_per_class: int = 10000, seed: int | None = None
) -> dict[int, np.ndarray]:
    """Voxel coordinates of each foreground class, subsampled to at most ``max_per_class``.

    Computed once per case (and stored in the case's ``.json``) so that drawing a
    foreground-centred patch costs one random choice.

    Args:
        label: ``(*spatial)`` or ``(1, *spatial)`` integer label map.
        max_per_class: cap on stored coordinates per class (uniform random subset).
        seed: seed of the subsampling.

    Returns:
        ``{class value: (n, D) int64 coordinates}`` for every value > 0 present (background
        0 and negative ignore values are left out); an empty dict for an empty mask.

    Example:
        >>> locs = class_locations(np.array([[0, 2], [2, 0]]))
        >>> {k: v.tolist() for k, v in locs.items()}
        {2: [[0, 1], [1, 0]]}
    """
    label = np.asarray(label)
    if label.ndim >= 3 and label.shape[0] == 1:
        label = label[0]
    rng = np.random.default_rng(seed)
    out: dict[int, np.ndarray] = {}
    for value in np.unique(label):
        if value <= 0:
            continue
        coords = np.argwhere(label == value)
        if len(coords) > max_per_class:
            coords = coords[np.sort(rng.choice(len(coords), max_per_class, replace=False))]
        out[int(value)] = coords.astype(np.int64)
    return out


@dataclass
class CaseArrays:
    """One preprocessed case as (possibly memory-mapped) arrays.

    Attributes:
        case_id: the case's name.
        image: ``(C, *spatial)`` float.
        label: ``(1, *spatial)`` integer, or None (unlabelled).
        locations: ``class_locations`` of the label.
        channel_min: per-channel minimum (for ``image_pad="min"``); computed on first use.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    locations: dict[int, np.ndarray] = field(default_factory=dict)
    channel_min: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.ndim < 2:
            raise ValueError(
                f"case {self.case_id}: image must be (C, *spatial), got {self.image.shape}"
            )
        if self.label is not None:
            if self.label.ndim == self.image.ndim - 1:
                self.label = self.label[None]
            if self.label.shape != (1, *self.image.shape[1:]):
                raise ValueError(
                    f"case {self.case_id}: label {self.label.shape} does not match "
                    f"image {self.image.shape}; expected (1, *spatial) or (*spatial)"
                )

    def pad_values(self, image_pad: str) -> np.ndarray:
        if image_pad == "zero":
            return np.zeros(self.image.shape[0], dtype=np.float32)
        if self.channel_min is None:
            self.channel_min = np.asarray([float(c.min()) for c in self.image], dtype=np.float32)
        return self.channel_min


@dataclass(frozen=True)
class PatchBox:
    """Where one patch comes from: case index, first voxel (may be negative), centre class.

    ``centre_class`` is the class whose voxel the patch was placed on, 0 for a drawn
    background voxel, or None for a uniformly placed patch.
    """

    case_index: int
    start: tuple[int, ...]
    centre_class: int | None


def extract_patch(
    image: np.ndarray,
    label: np.ndarray | None,
    start: Sequence[int],
    patch_size: Sequence[int],
    *,
    image_fill: float | np.ndarray = 0.0,
    label_fill: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Copy the box ``[start, start + patch_size)`` out of a case, padding outside it.

    Args:
        image: ``(C, *spatial)`` (a memory map is read only where the box overlaps).
        label: ``(1, *spatial)`` or None.
        start: first voxel per spatial axis (negative or beyond the end pads).
        patch_size: patch spatial shape.
        image_fill: pad value, scalar or one per channel.
        label_fill: label pad value.

    Returns:
        ``(C, *patch_size)`` float32 image and ``(1, *patch_size)`` label (label dtype) or None.
    """
    src, dst = [], []
    for s, n, length in zip(start, patch_size, image.shape[1:], strict=True):
        lo, hi = max(int(s), 0), min(int(s) + n, length)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - int(s), max(hi, lo) - int(s)))
    fill = np.asarray(image_fill, dtype=np.float32).reshape(-1, *[1] * len(patch_size))
    out_image = np.empty((image.shape[0], *patch_size), dtype=np.float32)
    out_image[...] = fill
    out_image[(slice(None), *dst)] = image[(slice(None), *src)]
    if label is None:
        return out_image, None
    out_label = np.full((1, *patch_size), label_fill, dtype=label.dtype)
    out_label[(slice(None), *dst)] = label[(slice(None), *src)]
    return out_image, out_label


class PatchSampler:
    """Draw training patches from cases (see the module docstring for the modes).

    Args:
        patch_size: patch spatial shape.
        mode: "oversample", "balanced" or "uniform".
        oversample_foreground: fraction of foreground-centred patches for "oversample".
        keep_inside: shift patches inside the image where it is large enough (nnU-Net).
        image_pad: "zero" or "min" (per-channel minimum).
        label_pad: label value of padded voxels.

    Example:
        >>> case = CaseArrays("a", np.zeros((1, 8, 8), np.float32), np.zeros((1, 8, 8), np.int8))
        >>> image, label, boxes = PatchSampler((4, 4)).sample([case], 3, np.random.default_rng(0))
        >>> image.shape, label.shape
        ((3, 1, 4, 4), (3, 1, 4, 4))
    """

    def __init__(
        self,
        patch_size: Sequence[int],
        *,
        mode: SamplingMode = "oversample",
        oversample_foreground: float = 1 / 3,
        keep_inside: bool = True,
        image_pad: Literal["zero", "min"] = "zero",
        label_pad: int = 0,
    ) -> None:
        if mode not in ("oversample", "balanced", "uniform"):
            raise ValueError(f"mode must be 'oversample', 'balanced' or 'uniform', got {mode!r}")
        if not 0.0 <= oversample_foreground <= 1.0:
            raise ValueError(
                f"oversample_foreground must lie in [0, 1], got {oversample_foreground}"
            )
        if image_pad not in ("zero", "min"):
            raise ValueError(f"image_pad must be 'zero' or 'min', got {image_pad!r}")
        self.patch_size = tuple(int(s) for s in patch_size)
        self.mode, self.oversample_foreground = mode, float(oversample_foreground)
        self.keep_inside, self.image_pad, self.label_pad = keep_inside, image_pad, int(label_pad)

    def _start(
        self, centre: np.ndarray | None, shape: Sequence[int], rng: np.random.Generator
    ) -> tuple[int, ...]:
        start = []
        for d, (n, p) in enumerate(zip(shape, self.patch_size, strict=True)):
            low, high = (0, n - p) if n >= p else (-((p - n) // 2),) * 2
            if centre is None:
                s = (
                    int(rng.integers(low, high + 1))
                    if self.keep_inside
                    else int(rng.integers(0, n)) - p // 2
                )
            else:
                s = int(centre[d]) - p // 2
                s = min(max(s, low), high) if self.keep_inside else s
            start.append(s)
        return tuple(start)

    def _background_voxel(
        self, case: CaseArrays, rng: np.random.Generator, tries: int = 100
    ) -> np.ndarray | None:
        if case.label is None:
            return None
        shape = case.label.shape[1:]
        for _ in range(tries):
            voxel = np.array([rng.integers(0, n) for n in shape])
            if case.label[(0, *voxel)] == 0:
                return voxel
        return None

    def choose_boxes(
        self, cases: Sequence[CaseArrays], batch_size: int, rng: np.random.Generator
    ) -> list[PatchBox]:
        """Choose cases (uniformly, with replacement) and patch positions for one batch."""
        if self.mode == "oversample":
            expected = batch_size * self.oversample_foreground
            forced = math.floor(expected) + int(rng.random() < expected - math.floor(expected))
        else:
            forced = batch_size if self.mode == "balanced" else 0
        boxes = []
        for i in range(batch_size):
            index = int(rng.integers(len(cases)))
            case = cases[index]
            shape = case.image.shape[1:]
            centre_class, centre = None, None
            if i < forced:
                classes = sorted(case.locations)
                if self.mode == "balanced":
                    classes = [0, *classes]
                if classes:
                    chosen = classes[int(rng.integers(len(classes)))]
                    if chosen == 0:
                        centre = self._background_voxel(case, rng)
                    else:
                        coords = case.locations[chosen]
                        centre = coords[int(rng.integers(len(coords)))]
                    centre_class = chosen if centre is not None else None
            boxes.append(PatchBox(index, self._start(centre, shape, rng), centre_class))
        order = rng.permutation(batch_size)
        return [boxes[i] for i in order]

    def sample(
        self, cases: Sequence[CaseArrays], batch_size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None, list[PatchBox]]:
        """Draw one batch of patches.

        Args:
            cases: the cases to draw from (their arrays may be memory maps).
            batch_size: number of patches ``B``.
            rng: NumPy generator (one per batch keeps loader workers reproducible).

        Returns:
            ``(B, C, *patch_size)`` float32 images, ``(B, 1, *patch_size)`` labels (None if the
            cases are unlabelled) and the ``PatchBox`` of each patch.
        """
        if not cases:
            raise ValueError("no cases to sample patches from")
        boxes = self.choose_boxes(cases, batch_size, rng)
        images, labels = [], []
        for box in boxes:
            case = cases[box.case_index]
            image, label = extract_patch(
                case.image,
                case.label,
                box.start,
                self.patch_size,
                image_fill=case.pad_values(self.image_pad),
                label_fill=self.label_pad,
            )
            images.append(image)
            labels.append(label)
        label_batch = None if any(label is None for label in labels) else np.stack(labels)
        return np.stack(images), label_batch, boxes


def grid_slices(
    spatial_shape: Sequence[int], patch_size: Sequence[int], *, overlap: float = 0.5
) -> list[tuple[slice, ...]]:
    """Tiles of ``patch_size`` covering the whole image with at least ``overlap`` (inference).

    Steps are spread evenly as in nnU-Net's sliding window: along each axis
    ``ceil((n - p) / (p * (1 - overlap))) + 1`` tiles from 0 to ``n - p``.

    Args:
        spatial_shape: image shape; every axis must be at least the patch size (pad first).
        patch_size: tile shape.
        overlap: fraction of a tile shared with its neighbour, in [0, 1).

    Returns:
        Spatial slice tuples, C order (last axis fastest).

    Raises:
        ValueError: an axis smaller than the patch, or overlap outside [0, 1).

    Example:
        >>> [s[0] for s in grid_slices((10,), (4,), overlap=0.5)]
        [slice(0, 4, None), slice(2, 6, None), slice(4, 8, None), slice(6, 10, None)]
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    if any(n < p for n, p in zip(spatial_shape, patch_size, strict=True)):
        raise ValueError(
            f"image {tuple(spatial_shape)} is smaller than the patch {tuple(patch_size)} "
            "along some axis; pad it to at least the patch size first"
        )
    starts = []
    for n, p in zip(spatial_shape, patch_size, strict=True):
        count = math.ceil((n - p) / (p * (1 - overlap))) + 1 if n > p else 1
        step = (n - p) / (count - 1) if count > 1 else 0.0
        starts.append([round(i * step) for i in range(count)])
    grid = np.stack(np.meshgrid(*starts, indexing="ij"), axis=-1).reshape(-1, len(patch_size))
    return [
        tuple(slice(int(s), int(s) + p) for s, p in zip(row, patch_size, strict=True))
        for row in grid
    ]
