"""Detection data: images on the network's grid and the objects in them.

An image ``(C, *spatial)`` is z-scored per channel, then either resized (linear) to the
config's ``image_size`` or padded at the high end of each axis up to a multiple of the
network's divisor (:class:`Grid` records which, to map predictions back). Its objects form an
instance map (0: background) with a class per instance: the label map itself
(``instances="labels"``), or the connected components (face connectivity) of chosen label
values (``instances="components"``). Instance maps are resized with nearest neighbour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from medseg.data.case import read_case
from medseg.data.dataset import Dataset
from medseg.detect.config import DetectConfig
from medseg.errors import DatasetError


@dataclass(frozen=True)
class Grid:
    """How an image of ``original`` size sits on the network grid ``model`` (resized or
    padded at the high end)."""

    original: tuple[int, ...]
    model: tuple[int, ...]
    resized: bool

    @classmethod
    def for_shape(
        cls, shape: Sequence[int], image_size: Sequence[int], divisor: Sequence[int]
    ) -> Grid:
        if image_size:
            return cls(tuple(shape), tuple(int(s) for s in image_size), True)
        padded = tuple(math.ceil(n / d) * d for n, d in zip(shape, divisor, strict=True))
        return cls(tuple(shape), padded, False)

    def image(self, array: np.ndarray) -> Tensor:
        """``(C, *original)`` -> z-scored ``(C, *model)`` float32."""
        x = torch.as_tensor(np.asarray(array, dtype=np.float32))
        flat = x.flatten(1)
        shape = (-1, *[1] * (x.ndim - 1))
        x = (x - flat.mean(1).view(shape)) / flat.std(1).clamp_min(1e-8).view(shape)
        if self.resized:
            mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[x.ndim - 1]
            return F.interpolate(x[None], size=self.model, mode=mode, align_corners=False)[0]
        return F.pad(x, _padding(self.original, self.model))

    def labels(self, array: np.ndarray) -> np.ndarray:
        """An integer map ``(*original)`` -> ``(*model)`` (nearest neighbour or zero pad)."""
        x = torch.as_tensor(np.asarray(array, dtype=np.int64))
        if self.resized:
            y = F.interpolate(x[None, None].double(), size=self.model, mode="nearest")[0, 0]
            return y.long().numpy()
        return F.pad(x, _padding(self.original, self.model)).numpy()

    def labels_back(self, array: np.ndarray) -> np.ndarray:
        """An integer map on the grid -> ``(*original)``."""
        x = torch.as_tensor(np.asarray(array, dtype=np.int64))
        if self.resized:
            y = F.interpolate(x[None, None].double(), size=self.original, mode="nearest")[0, 0]
            return y.long().numpy()
        return x[tuple(slice(0, n) for n in self.original)].numpy()

    def values_back(self, array: np.ndarray) -> np.ndarray:
        """A float map on the grid -> ``(*original)`` (linear interpolation or crop)."""
        x = torch.as_tensor(np.asarray(array, dtype=np.float32))
        if self.resized:
            mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[x.ndim]
            x = F.interpolate(x[None, None], size=self.original, mode=mode, align_corners=False)
            return x[0, 0].numpy()
        return x[tuple(slice(0, n) for n in self.original)].numpy()

    def boxes_back(self, boxes: Tensor) -> Tensor:
        """``(N, 2D)`` inclusive boxes on the grid -> on the original image."""
        dims = len(self.original)
        last = torch.tensor(self.original, dtype=torch.float64) - 1
        boxes = boxes.double()
        lo, hi = boxes[:, :dims], boxes[:, dims:]
        if self.resized:
            scale = torch.tensor(self.original, dtype=torch.float64) / torch.tensor(self.model)
            lo, hi = torch.floor(lo * scale), torch.ceil((hi + 1) * scale) - 1
        lo = torch.minimum(lo, last)
        hi = torch.maximum(torch.minimum(hi, last), lo)
        return torch.cat([lo, hi], dim=1).long()


def _padding(shape: Sequence[int], target: Sequence[int]) -> list[int]:
    pad: list[int] = []
    for n, t in zip(reversed(shape), reversed(target), strict=True):
        pad += [0, t - n]
    return pad


def instance_map(
    label: np.ndarray, config: DetectConfig, values: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The objects of a label map: ``(instances, class_of)`` with ``instances`` int64
    ``(*spatial)`` (0: background, 1..N) and ``class_of[i]`` the class of instance ``i``
    (``class_of[0] = -1``). Objects under ``config.min_voxels`` are dropped.

    Example:
        >>> cfg = DetectConfig("ds", instances="components", labels=(1,))
        >>> inst, cls = instance_map(np.array([[1, 0, 1, 1]]), cfg, (1,))
        >>> inst.tolist(), cls.tolist()
        ([[1, 0, 2, 2]], [-1, 0, 0])
    """
    label = np.asarray(label)
    out = np.zeros(label.shape, np.int64)
    classes = [-1]
    if config.instances == "labels":
        parts = [(label, 0, [int(v) for v in np.unique(label) if v != 0])]
    else:
        parts = []
        for cls, value in enumerate(values):
            components, count = ndimage.label(label == value)
            parts.append((components, cls, list(range(1, count + 1))))
    for ids_map, cls, ids in parts:
        if not ids:
            continue
        sizes = ndimage.sum_labels(np.ones(label.shape), ids_map, ids)
        for value, size in zip(ids, sizes, strict=True):
            if size >= config.min_voxels:
                classes.append(cls)
                out[ids_map == value] = len(classes) - 1
    return out, np.asarray(classes, np.int64)


@dataclass
class DetectionSample:
    """One image on the network grid: ``image (C, *model)``, ``instances (*model)`` int64,
    ``class_of`` (class of each instance id), its :class:`Grid` and case id."""

    case_id: str
    image: Tensor
    instances: np.ndarray
    class_of: np.ndarray
    grid: Grid


def object_values(dataset: Dataset, config: DetectConfig) -> tuple[int, ...]:
    """The label values whose components are objects (``components``), as configured or
    every foreground label."""
    if config.instances == "labels":
        return (1,)
    return tuple(config.labels) or tuple(sorted(dataset.foreground_labels.values()))


def load_detection_samples(
    dataset: Dataset, config: DetectConfig, case_ids: Sequence[str], divisor: Sequence[int]
) -> list[DetectionSample]:
    """Read, normalise and place the cases ``case_ids`` on the network grid.

    Raises:
        DatasetError: a case without a label map, or of another dimensionality.
    """
    values = object_values(dataset, config)
    samples = []
    for case_id in case_ids:
        case = dataset.case(case_id)
        image, label = read_case(case, num_channels=dataset.num_channels)
        if label is None:
            raise DatasetError(f"{case.image_paths[0]}: case '{case_id}' has no label map")
        if image.spatial_dims != config.spatial_dims:
            raise DatasetError(
                f"{case.image_paths[0]}: {image.spatial_dims}-D, the run is {config.spatial_dims}-D"
            )
        grid = Grid.for_shape(image.spatial_shape, config.image_size, divisor)
        instances, class_of = instance_map(label.array, config, values)
        samples.append(
            DetectionSample(
                case_id, grid.image(image.array), grid.labels(instances), class_of, grid
            )
        )
    return samples
