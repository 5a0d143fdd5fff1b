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
are made: the first images of a larger set equal a smaller one's.
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
from medseg.data.phantom_artefacts import add_noise, bias_field, block_mean
from medseg.data.phantom_shapes import Blob, Body, body_mask, grid_axes, paint
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
_SUPERSAMPLE = 2
_NOISE_STD = 0.03
_BIAS_STRENGTH = 0.25
_TEXTURE_STRENGTH = 0.06


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
        images[i, 0], masks[i] = _render(rng_seed, int(labels[i]), kind, shape)
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
    names = CLASS_NAMES[kind]
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
        for image, label, case_id, mask in zip(
            data.images, data.labels, data.ids, masks, strict=True
        ):
            cls = names[int(label)]
            pixels = image[0]
            if ending == ".png":
                pixels = np.rint(pixels * 255.0).astype(np.uint8)
            write_image(
                Image(pixels, (1.0,) * spatial_dims), out / split / cls / f"{case_id}{ending}"
            )
            write_image(
                Image(mask.astype(np.uint8), (1.0,) * spatial_dims),
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
    write_json_atomic(
        out / "phantom.json",
        {
            "generator": "medseg.data.phantoms_classification",
            "medseg_version": __version__,
            "kind": kind,
            "class_names": list(names),
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


# ---------------------------------------------------------------- rendering


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


def _render(
    seed: np.random.SeedSequence, label: int, kind: str, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """One image ``(*shape)`` float32 in [0, 1] and its deciding-lesion mask ``(*shape)`` bool.

    All random draws are made whatever the label, so the two classes share their anatomy
    distribution and a seed's organ does not depend on whether its lesion is drawn.
    """
    anatomy_rng, texture_rng, bias_rng, noise_rng = (
        np.random.default_rng(s) for s in seed.spawn(4)
    )
    d, size = len(shape), float(shape[0])
    rng = anatomy_rng
    body = Body((size * rng.uniform(0.42, 0.48), size * rng.uniform(0.42, 0.48)))
    organ = _blob(
        rng,
        rng.uniform(-0.06, 0.06, d) * size,
        rng.uniform(0.22, 0.32, d) * size,
        amplitude=rng.uniform(0.1, 0.2),
        frequencies=(1, 3),
    )
    cysts = [
        _blob(
            rng,
            _inside(rng, organ, 0.6),
            rng.uniform(0.04, 0.07, d) * size,
            amplitude=rng.uniform(0.0, 0.1),
            frequencies=(1, 2),
        )
        for _ in range(2)
    ]
    num_cysts = int(rng.integers(0, 3))
    if kind == "lesion":
        radius = np.maximum(rng.uniform(0.05, 0.08, d) * size, 2.0)
        lesion = _blob(
            rng,
            _inside(rng, organ, 0.5),
            radius,
            amplitude=rng.uniform(0.0, 0.1),
            frequencies=(1, 2),
        )
        show_lesion = label == 1
    else:
        radius = np.full(d, rng.uniform(0.10, 0.15) * size) * rng.uniform(0.85, 1.15, d)
        centre = _inside(rng, organ, 0.3)
        smooth = _blob(
            rng, centre, radius, amplitude=rng.uniform(0.03, 0.08), frequencies=(1, 2), terms=4
        )
        spiky = _blob(
            rng, centre, radius * 0.9, amplitude=rng.uniform(0.3, 0.45), frequencies=(5, 9), terms=6
        )
        lesion = spiky if label == 1 else smooth
        show_lesion = True
    tissue = rng.uniform(0.32, 0.38)
    organ_level = tissue + rng.uniform(0.12, 0.2)
    levels = np.array(
        [
            0.0,  # air
            tissue,  # body
            organ_level,  # organ
            organ_level - rng.uniform(0.12, 0.2),  # cyst
            organ_level + rng.uniform(0.18, 0.28),  # lesion
        ],
        dtype=np.float32,
    )
    gain = rng.uniform(0.75, 1.25)

    factors = (_SUPERSAMPLE,) * d
    fine_axes = grid_axes(shape, (1.0,) * d, factors)
    fine = np.where(body_mask(fine_axes, body), np.uint8(1), np.uint8(0))
    paint(fine, fine_axes, organ, 2)
    for cyst in cysts[:num_cysts]:
        paint(fine, fine_axes, cyst, 3)
    if show_lesion:
        paint(fine, fine_axes, lesion, 4)
    image = block_mean(levels[fine], factors)
    mask = block_mean((fine == 4).astype(np.float32), factors) > 0

    axes = grid_axes(shape, (1.0,) * d, (1,) * d)
    from scipy import ndimage  # here: importing scipy.ndimage costs 0.2 s of every CLI start

    texture = ndimage.gaussian_filter(
        texture_rng.standard_normal(shape, dtype=np.float32), sigma=1.5
    )
    texture /= max(float(texture.std()), 1e-6)
    image = image * (1.0 + np.float32(_TEXTURE_STRENGTH) * texture)
    image = image * bias_field(bias_rng, axes, shape, _BIAS_STRENGTH) * np.float32(gain)
    image = np.clip(add_noise(image, noise_rng, kind="gaussian", std=_NOISE_STD), 0.0, 1.0)
    if d == 2:  # the exact values a uint8 PNG stores
        image = np.rint(image * 255.0).astype(np.float32) / np.float32(255.0)
    return image.astype(np.float32), mask


def _blob(
    rng: np.random.Generator,
    centre: np.ndarray,
    semi_axes: np.ndarray,
    *,
    amplitude: float,
    frequencies: tuple[int, int],
    terms: int = 6,
) -> Blob:
    """A ``phantom_shapes.Blob`` whose outline wobbles by ``amplitude`` at the given frequencies."""
    d = len(centre)
    weights = rng.uniform(-1.0, 1.0, terms)
    weights *= amplitude / max(np.abs(weights).sum(), 1e-12)
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    directions = rng.normal(size=(terms, d))
    directions /= np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
    return Blob(
        centre=np.asarray(centre, dtype=float),
        rotation=q * np.sign(np.diag(r)),
        semi_axes=np.asarray(semi_axes, dtype=float),
        directions=directions,
        frequencies=rng.integers(frequencies[0], frequencies[1] + 1, terms).astype(float),
        phases=rng.uniform(0.0, 2 * np.pi, terms),
        weights=weights,
    )


def _inside(rng: np.random.Generator, organ: Blob, reach: float) -> np.ndarray:
    """A random point within ``reach`` of the organ's semi-axes from its centre."""
    d = organ.centre.size
    v = rng.normal(size=d)
    v /= max(np.linalg.norm(v), 1e-12)
    return organ.centre + organ.rotation @ (v * rng.uniform(0.0, reach) * organ.semi_axes)


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
