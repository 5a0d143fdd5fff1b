"""Instance phantoms: touching cells with a known count, for detection and instance tasks.

A case is a field of round cells (discs in 2D, balls in 3D) on a dark background. Most cells
are placed against an existing one, their centres ``0.8`` to ``1.0`` times the sum of the two
radii apart, so cells touch or overlap slightly and form clumps that connected components
cannot split; every cell lies entirely inside the image (none is cut by the border), so the
count is exact. Where two cells overlap, a voxel belongs to the cell whose centre is nearer
relative to its radius; every cell keeps its centre.

Image: background 0.1, each cell a brightness of 0.45-0.75 that is highest at the centre
(a soft nucleus) and darkest at its rim (a faint membrane, -25 %), Gaussian blur
(sigma 0.7 voxel) and Gaussian noise (std 0.04), clipped to ``[0, 1]``, float32.

Layout written by ``generate_instances_dataset`` (nnU-Net v2 like, read by
``medseg.data.dataset.load_dataset``)::

    OUT/imagesTr/cells_NNN_0000.nii.gz   float32 image, spacing 1 mm
    OUT/labelsTr/cells_NNN.nii.gz        uint16 instance label map: 0 background, 1..count
    OUT/dataset.json                     {"labels": {"background": 0, "cell": 1},
                                          "instance_labels": true, ...}
    OUT/instances.json                   per case: count, ids, boxes, centres, radii

The label maps hold instance ids, not class values: ``label > 0`` is the semantic "cell" mask
(``dataset.json`` says so with ``"instance_labels": true``; a semantic check of the values
against ``labels`` flags ids above 1). Boxes in ``instances.json`` follow
``medseg.metrics.boxes``: ``(lo_0..lo_{D-1}, hi_0..hi_{D-1})`` voxel indices, inclusive ``hi``,
box ``k`` belonging to instance ``ids[k]``.

Determinism: case ``i`` is drawn from ``SeedSequence([seed, i])``, so the first cases of a
larger dataset equal a smaller one's.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg import __version__
from medseg.data.phantoms import clear_generated_outputs
from medseg.errors import ConfigError
from medseg.fileutil import write_json_atomic
from medseg.io import Image, write_image

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_SHAPE", "generate_instances_dataset", "instance_phantom"]

#: Image shape per spatial dimensionality.
DEFAULT_SHAPE: dict[int, tuple[int, ...]] = {2: (96, 96), 3: (48, 48, 48)}
_RADII = {2: (5.0, 9.0), 3: (4.0, 7.0)}  # cell radius range in voxels
_COUNTS = {2: (8, 16), 3: (5, 10)}  # cells per case, inclusive
_OWN_FILE = re.compile(r"^\.?cells_\d+(_0000)?(\..*)?$")


def instance_phantom(
    seed: int | np.random.SeedSequence, *, spatial_dims: int = 2
) -> tuple[np.ndarray, np.ndarray, dict[str, list]]:
    """One case of touching cells (module docstring).

    Args:
        seed: a non-negative integer or a ``SeedSequence``.
        spatial_dims: 2 or 3.

    Returns:
        ``(image, instances, record)``: ``image`` ``DEFAULT_SHAPE[spatial_dims]`` float32,
        ``instances`` the same shape uint16 (0, 1..count), ``record`` with ``centres`` and
        ``radii`` (voxels) of cells ``1..count`` in id order.

    Raises:
        ConfigError: bad ``seed`` or ``spatial_dims``.

    Example:
        >>> image, instances, record = instance_phantom(0)
        >>> image.shape, int(instances.max()) == len(record["radii"])
        ((96, 96), True)
    """
    if spatial_dims not in DEFAULT_SHAPE:
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if not isinstance(seed, np.random.SeedSequence):
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        seed = np.random.SeedSequence(int(seed))
    place_rng, image_rng = (np.random.default_rng(s) for s in seed.spawn(2))
    shape = DEFAULT_SHAPE[spatial_dims]
    centres, radii = _place_cells(place_rng, shape)
    instances, relative = _paint(shape, centres, radii)
    image = _render(image_rng, instances, relative)
    record = {"centres": centres.round(3).tolist(), "radii": radii.round(3).tolist()}
    return image, instances, record


def generate_instances_dataset(
    out: str | os.PathLike[str],
    *,
    spatial_dims: int = 2,
    num_cases: int = 20,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a touching-cells dataset (layout in the module docstring).

    Args:
        out: the dataset folder; created if missing.
        spatial_dims: 2 or 3.
        num_cases: number of cases (>= 1).
        seed: non-negative dataset seed.
        overwrite: allow writing into a non-empty folder; only the generator's own outputs
            (``cells_*`` files in ``imagesTr``/``labelsTr``, ``dataset.json``,
            ``instances.json``) are replaced, other files are kept.

    Returns:
        ``out`` as a ``Path``.

    Raises:
        OverwriteError: ``out`` is not empty and ``overwrite`` is False, or its
            ``imagesTr``/``labelsTr`` hold files the generator did not write.
        ConfigError: invalid arguments.
    """
    if spatial_dims not in DEFAULT_SHAPE:
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if not isinstance(num_cases, (int, np.integer)) or isinstance(num_cases, bool) or num_cases < 1:
        raise ConfigError(f"num_cases must be a positive integer, got {num_cases!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    root = Path(out)
    clear_generated_outputs(
        root,
        overwrite=overwrite,
        own_files=("dataset.json", "instances.json"),
        own_trees=("imagesTr", "labelsTr"),
        own_name=_OWN_FILE,
    )
    cases = [_write_case(root, i, seed, spatial_dims) for i in range(int(num_cases))]
    write_json_atomic(
        root / "instances.json",
        {
            "generator": "medseg.data.phantoms_instances",
            "medseg_version": __version__,
            "spatial_dims": spatial_dims,
            "seed": int(seed),
            "shape": list(DEFAULT_SHAPE[spatial_dims]),
            "box_format": "(lo_0..lo_{D-1}, hi_0..hi_{D-1}) voxel indices, inclusive hi",
            "cases": cases,
        },
    )
    write_json_atomic(
        root / "dataset.json",
        {  # last: a folder with dataset.json is complete
            "name": f"Cells{spatial_dims}D",
            "description": (
                f"medseg instance phantom: touching {'discs' if spatial_dims == 2 else 'balls'},"
                f" seed {seed}; labelsTr hold instance ids (label > 0 is 'cell')"
            ),
            "channel_names": {"0": "microscopy"},
            "labels": {"background": 0, "cell": 1},
            "instance_labels": True,
            "numTraining": int(num_cases),
            "file_ending": ".nii.gz",
        },
    )
    logger.debug("wrote %d %dD instance phantoms to %s", num_cases, spatial_dims, root)
    return root


def _write_case(root: Path, index: int, seed: int, spatial_dims: int) -> dict[str, object]:
    """Generate and write case ``index``; return its ``instances.json`` record."""
    case_id = f"cells_{index:03d}"
    image, instances, record = instance_phantom(
        np.random.SeedSequence([int(seed), index]), spatial_dims=spatial_dims
    )
    spacing = (1.0,) * spatial_dims
    write_image(Image(image, spacing), root / "imagesTr" / f"{case_id}_0000.nii.gz")
    write_image(Image(instances, spacing), root / "labelsTr" / f"{case_id}.nii.gz")
    boxes = [
        [s.start for s in box] + [s.stop - 1 for s in box]
        for box in ndimage.find_objects(instances.astype(np.int64))
    ]
    count = len(boxes)
    return {"case": case_id, "count": count, "ids": list(range(1, count + 1)), "boxes": boxes}


def _place_cells(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(K, D)`` and radii ``(K,)``: clumps of touching cells inside the image."""
    dims = len(shape)
    low, high = _RADII[dims]
    target = int(rng.integers(_COUNTS[dims][0], _COUNTS[dims][1] + 1))
    centres: list[np.ndarray] = []
    radii: list[float] = []
    for _ in range(400):  # attempts
        if len(radii) == target:
            break
        r = float(rng.uniform(low, high))
        if centres and rng.random() < 0.8:  # against an existing cell
            k = int(rng.integers(len(centres)))
            direction = rng.normal(size=dims)
            direction /= np.linalg.norm(direction)
            c = centres[k] + direction * (r + radii[k]) * rng.uniform(0.8, 1.0)
        else:
            c = rng.uniform(r + 1, np.array(shape) - r - 2)
        inside = np.all(c - r >= 0.5) and np.all(c + r <= np.array(shape) - 1.5)
        apart = all(
            np.linalg.norm(c - other) >= 0.8 * (r + r_other)
            for other, r_other in zip(centres, radii, strict=True)
        )
        if inside and apart:
            centres.append(c)
            radii.append(r)
    return np.array(centres).reshape(-1, dims), np.array(radii)


def _paint(
    shape: tuple[int, ...], centres: np.ndarray, radii: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Instance map (each voxel to the cell of smallest distance / radius, if <= 1) and that
    relative distance (``inf`` in the background)."""
    grid = np.indices(shape, dtype=np.float32)
    best = np.full(shape, np.inf, dtype=np.float32)
    instances = np.zeros(shape, dtype=np.uint16)
    for k, (c, r) in enumerate(zip(centres, radii, strict=True)):
        relative = np.sqrt(sum((g - ci) ** 2 for g, ci in zip(grid, c, strict=True))) / r
        closer = (relative <= 1.0) & (relative < best)
        instances[closer] = k + 1
        best[closer] = relative[closer]
    return instances, best


def _render(rng: np.random.Generator, instances: np.ndarray, relative: np.ndarray) -> np.ndarray:
    """Intensities: bright cells with a brighter centre and a darker rim, blur, noise."""
    brightness = np.concatenate([[0.1], rng.uniform(0.45, 0.75, int(instances.max()))])
    image = brightness[instances].astype(np.float32)
    cell = instances > 0
    rel = relative[cell]
    profile = (1.0 + 0.25 * (1.0 - rel**2)) * (1.0 - 0.25 * np.exp(-(((1.0 - rel) / 0.12) ** 2)))
    image[cell] *= profile.astype(np.float32)
    image = ndimage.gaussian_filter(image, 0.7)
    image += rng.normal(0.0, 0.04, image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)
