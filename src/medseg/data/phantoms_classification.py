"""Synthetic image-classification phantoms with a known deciding region (the lesion mask).

Every image is an organ-like blob inside a body outline, with a smooth texture, zero to two
dark "cysts" (distractors present in both classes), a smooth multiplicative bias field, a
random global gain and Gaussian noise. Two tasks (``kind``):

* ``"lesion"`` -- classes ``absent`` (0) / ``present`` (1): class 1 has one small bright lesion
  inside the organ (radius about 5-8 % of the image size, +0.18-0.28 over the organ), class 0
  has none. The lesion adds about 1 % to the mean intensity while the global gain varies it
  by +-25 %, so the mean intensity (or any other global linear feature) cannot solve the task;
  the lesion's local contrast can.
* ``"shape"`` -- classes ``benign`` (0) / ``malignant`` (1): every image has one larger bright
  lesion; benign ones are round and smooth (small low-frequency wobble), malignant ones
  spiculated / lobulated (large high-frequency wobble). Size, position and brightness are
  drawn from the same distributions in both classes, so only the outline decides.

The **lesion mask** (``return_masks=True``; ``masks/`` on disk) marks the voxels the deciding
lesion covers, at least partly: empty for ``absent`` images, non-empty for ``present``,
``benign`` and ``malignant`` ones. Explainability checks can ask whether a saliency map
falls inside it.

Images are float32 in ``[0, 1]`` (air 0, soft tissue about 0.35, organ about 0.5). 2D images
are quantised to steps of 1/255 exactly as their uint8 PNG files are, so
``load_classification(folder)`` gives the same arrays as ``classification_phantom_arrays``;
3D images are written as float32 NIfTI unchanged.

Determinism: image ``i`` of split ``s`` is drawn from ``SeedSequence([seed, s, i])`` (``s`` = 0
for train, 1 for test) and has class ``i % 2``, so it does not depend on how many images
are made: the first images of a larger set equal a smaller one's. One image is rendered by
``medseg.data.phantom_lesions.render_phantom``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Literal

import numpy as np

from medseg import __version__
from medseg.data.classification import ClassificationSet
from medseg.data.phantom_lesions import render_phantom
from medseg.data.phantoms import clear_generated_outputs
from medseg.errors import ConfigError
from medseg.fileutil import write_json_atomic
from medseg.io import Image, write_image

logger = logging.getLogger(__name__)

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_SIZE",
    "PHANTOM_KINDS",
    "PhantomKind",
    "classification_phantom_arrays",
    "make_classification_phantoms",
]

PhantomKind = Literal["lesion", "shape"]
PHANTOM_KINDS: tuple[str, ...] = ("lesion", "shape")
#: Class names per kind, index order (folder names sort the same way).
CLASS_NAMES: dict[str, tuple[str, str]] = {
    "lesion": ("absent", "present"),
    "shape": ("benign", "malignant"),
}
#: Default image edge length per spatial dimensionality.
DEFAULT_SIZE: dict[int, int] = {2: 64, 3: 32}
_SPLIT_STREAM = {"train": 0, "test": 1}


def classification_phantom_arrays(
    n_per_class: int = 100,
    *,
    spatial_dims: int = 2,
    size: int | None = None,
    seed: int = 0,
    kind: PhantomKind = "lesion",
    split: str = "train",
    return_masks: bool = False,
) -> ClassificationSet | tuple[ClassificationSet, np.ndarray]:
    """Generate a balanced two-class phantom set in memory (see the module docstring).

    Args:
        n_per_class: images per class (>= 1); ``2 * n_per_class`` in all, classes alternating
            ``0, 1, 0, 1, ...``.
        spatial_dims: 2 or 3.
        size: image edge length in voxels (>= 16); ``None``: 64 in 2D, 32 in 3D.
        seed: non-negative seed.
        kind: ``"lesion"`` (present / absent) or ``"shape"`` (benign / malignant).
        split: ``"train"`` or ``"test"``: independent random streams, as written by
            ``make_classification_phantoms``.
        return_masks: also return the deciding-lesion masks.

    Returns:
        The ``ClassificationSet`` (images ``(N, 1, *[size] * spatial_dims)`` float32, ids
        ``phantom_<split>_<i>``); with ``return_masks`` a tuple ``(set, masks)``, masks
        ``(N, *spatial)`` bool.

    Raises:
        ConfigError: invalid arguments.

    Example:
        >>> data, masks = classification_phantom_arrays(2, return_masks=True)
        >>> data.images.shape, data.labels.tolist(), [bool(m.any()) for m in masks]
        ((4, 1, 64, 64), [0, 1, 0, 1], [False, True, False, True])
    """
    shape = _check_args(n_per_class, spatial_dims, size, seed, kind, split)
    n = 2 * n_per_class
    images = np.empty((n, 1, *shape), dtype=np.float32)
    masks = np.empty((n, *shape), dtype=bool)
    labels = np.arange(n, dtype=np.int64) % 2
    for i in range(n):
        rng_seed = np.random.SeedSequence([int(seed), _SPLIT_STREAM[split], i])
        images[i, 0], masks[i] = render_phantom(rng_seed, int(labels[i]), kind, shape)
    data = ClassificationSet(
        images=images,
        labels=labels,
        class_names=list(CLASS_NAMES[kind]),
        ids=[f"phantom_{split}_{i:04d}" for i in range(n)],
        folds=None,
        task="classification",
    )
    return (data, masks) if return_masks else data


def make_classification_phantoms(
    out_dir: str | os.PathLike[str],
    *,
    n_per_class: int = 50,
    n_test_per_class: int | None = None,
    spatial_dims: int = 2,
    size: int | None = None,
    seed: int = 0,
    kind: PhantomKind = "lesion",
    overwrite: bool = False,
) -> Path:
    """Write a folder-per-class phantom dataset that ``load_classification`` reads.

    Layout (``<ending>`` is ``.png`` (uint8) in 2D, ``.nii.gz`` (float32) in 3D)::

        OUT/train/<class>/phantom_train_<i><ending>
        OUT/test/<class>/phantom_test_<i><ending>
        OUT/masks/<split>/<class>/phantom_<split>_<i><ending>   uint8 deciding-lesion mask (0/1)
        OUT/phantom.json                                       how it was made, per-image record

    Files are written atomically; ``phantom.json`` comes last.

    Args:
        out_dir: the dataset folder; created if missing.
        n_per_class: training images per class.
        n_test_per_class: test images per class; ``None``: ``max(1, n_per_class // 4)``.
        spatial_dims, size, seed, kind: as for ``classification_phantom_arrays``.
        overwrite: allow writing into a non-empty folder; the generator's previous outputs
            are removed first, other files are kept.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        OverwriteError: ``out_dir`` is not empty and ``overwrite`` is False, or its
            ``train``/``test``/``masks`` folders hold files the generator did not write.
        ConfigError: invalid arguments.
    """
    shape = _check_args(n_per_class, spatial_dims, size, seed, kind, "train")
    n_test = max(1, int(n_per_class) // 4) if n_test_per_class is None else n_test_per_class
    if not isinstance(n_test, int) or n_test < 1:
        raise ConfigError(f"n_test_per_class must be a positive integer, got {n_test!r}")
    out = Path(out_dir)
    _clear_own_outputs(out, overwrite=overwrite)
    ending = ".png" if spatial_dims == 2 else ".nii.gz"
    cases = []
    for split, count in (("train", n_per_class), ("test", n_test)):
        data, masks = classification_phantom_arrays(
            count,
            spatial_dims=spatial_dims,
            size=size,
            seed=seed,
            kind=kind,
            split=split,
            return_masks=True,
        )
        cases += _write_split(out, split, data, masks, ending)
    write_json_atomic(
        out / "phantom.json",
        {
            "generator": "medseg.data.phantoms_classification",
            "medseg_version": __version__,
            "kind": kind,
            "class_names": list(CLASS_NAMES[kind]),
            "spatial_dims": spatial_dims,
            "shape": list(shape),
            "seed": int(seed),
            "n_per_class": {"train": n_per_class, "test": n_test},
            "file_ending": ending,
            "cases": cases,
        },
    )
    logger.debug(
        "wrote %d %dD classification phantoms (%s) to %s", len(cases), spatial_dims, kind, out
    )
    return out


def _write_split(
    out: Path, split: str, data: ClassificationSet, masks: np.ndarray, ending: str
) -> list[dict[str, object]]:
    """Write one split's images and lesion masks (PNG: uint8 ``round(255 * x)``); return the
    per-image records of ``phantom.json``."""
    cases = []
    for image, label, case_id, mask in zip(data.images, data.labels, data.ids, masks, strict=True):
        cls = data.class_names[int(label)]
        pixels = image[0]
        if ending == ".png":
            pixels = np.rint(pixels * 255.0).astype(np.uint8)
        spacing = (1.0,) * mask.ndim
        write_image(Image(pixels, spacing), out / split / cls / f"{case_id}{ending}")
        write_image(
            Image(mask.astype(np.uint8), spacing),
            out / "masks" / split / cls / f"{case_id}{ending}",
        )
        cases.append(
            {
                "id": case_id,
                "split": split,
                "label": int(label),
                "class": cls,
                "lesion_voxels": int(mask.sum()),
            }
        )
    return cases


# ---------------------------------------------------------------- arguments


def _check_args(
    n_per_class: object,
    spatial_dims: object,
    size: object,
    seed: object,
    kind: object,
    split: object,
) -> tuple[int, ...]:
    if (
        not isinstance(n_per_class, (int, np.integer))
        or isinstance(n_per_class, bool)
        or n_per_class < 1
    ):
        raise ConfigError(f"n_per_class must be a positive integer, got {n_per_class!r}")
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    size = DEFAULT_SIZE[int(spatial_dims)] if size is None else size  # type: ignore[call-overload]
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ConfigError(f"size must be an integer >= 16, got {size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if kind not in PHANTOM_KINDS:
        raise ConfigError(f"kind must be one of {list(PHANTOM_KINDS)}, got {kind!r}")
    if split not in _SPLIT_STREAM:
        raise ConfigError(f"split must be one of {list(_SPLIT_STREAM)}, got {split!r}")
    return (int(size),) * int(spatial_dims)  # type: ignore[call-overload]


# ---------------------------------------------------------------- overwrite rule

_OWN_FILE = re.compile(r"^\.?phantom_(train|test)_\d+(\..*)?$")  # our images and their temp files
_OWN_TREES = ("train", "test", "masks")


def _clear_own_outputs(out: Path, *, overwrite: bool) -> None:
    clear_generated_outputs(
        out,
        overwrite=overwrite,
        own_files=("phantom.json",),
        own_trees=_OWN_TREES,
        own_name=_OWN_FILE,
    )
