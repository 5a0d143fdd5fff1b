"""Deterministic synthetic phantoms: multi-label 2D/3D datasets with known ground truth.

A phantom case is a body (soft tissue in air) holding an organ-like blob (label ``organ``),
small lesions inside it (``lesion``, missing from a fraction of cases) and a thin branching
tube (``vessel``). Each knob of ``PhantomConfig`` simulates one of the challenges that make
real images hard to segment (noise, partial volume, intensity inhomogeneity, anisotropic
resolution, artefacts, limited contrast, morphological variability); ``docs/phantoms.md``
says which knob stands for which challenge.

Pipeline of ``generate_case`` (each random step has its own generator spawned from the case
seed, so one knob changes only its own effect):

1. sample the anatomy in physical space (mm, centred field of view);
2. render labels and tissue intensities on a grid ``supersample`` times finer, then average
   intensities and majority-vote labels down to the voxel grid (partial volume);
3. multiply by a smooth bias field, add streaks, add noise.

``generate_dataset`` writes the nnU-Net v2 layout (``imagesTr/<case>_0000.nii.gz``,
``labelsTr/<case>.nii.gz``, ``dataset.json``) plus ``phantom.json`` recording how it was made.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg import __version__
from medseg.data.phantom_artefacts import (
    NOISE_KINDS,
    add_noise,
    bias_field,
    block_majority,
    block_mean,
    streaks,
    supersample_factors,
)
from medseg.data.phantom_config import (
    DEFAULT_FOV_MM,
    DEFAULT_SPACING,
    TISSUE_LEVELS,
    PhantomConfig,
)
from medseg.data.phantom_shapes import body_mask, grid_axes, paint, sample_anatomy
from medseg.errors import ConfigError, OverwriteError
from medseg.fileutil import write_json_atomic
from medseg.io import Image, write_image

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FOV_MM",
    "DEFAULT_SPACING",
    "FILE_ENDINGS",
    "NOISE_KINDS",
    "PNG_SCALE",
    "TISSUE_LEVELS",
    "PhantomConfig",
    "case_seed",
    "generate_case",
    "generate_dataset",
]


def generate_case(config: PhantomConfig, seed: int, *, spatial_dims: int) -> tuple[Image, Image]:
    """Generate one phantom case.

    Args:
        config: the generator knobs.
        seed: a non-negative integer; the same ``(config, seed, spatial_dims)`` always gives
            identical arrays.
        spatial_dims: 2 or 3.

    Returns:
        ``(image, label)`` on the same grid: ``image.array`` is ``(*shape)`` float32
        (``(z, y, x)`` in 3D), ``label.array`` ``(*shape)`` uint8 with values from
        ``config.label_values()``. The grid is centred on the world origin, direction
        identity, spacing ``config.grid(spatial_dims)[1]`` mm.

    Raises:
        ConfigError: bad ``seed`` or ``spatial_dims``, or a config that does not fit them.

    Example:
        >>> image, label = generate_case(PhantomConfig(), 0, spatial_dims=2)
        >>> image.spatial_shape, sorted(np.unique(label.array).tolist())
        ((128, 128), [0, 1, 2, 3])
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    shape, spacing = config.grid(spatial_dims)
    fov, _ = config.fov_and_spacing(spatial_dims)
    anatomy_rng, bias_rng, streak_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(4)
    )
    anatomy = sample_anatomy(
        anatomy_rng, fov, absent=config.optional_labels, p_absent=config.p_absent
    )

    # labels and clean intensities on the fine grid, then down to voxels (partial volume)
    factors = supersample_factors(spacing, config.supersample)
    fine_axes = grid_axes(shape, spacing, factors)
    fine_labels = np.zeros(tuple(a.size for a in fine_axes), dtype=np.uint8)
    for value, kind in enumerate(config.labels, start=1):
        for shape_ in anatomy.shapes(kind):
            paint(fine_labels, fine_axes, shape_, value)
    levels = config.intensity_levels()
    lookup = np.array([levels["tissue"], *(levels[k] for k in config.labels)], dtype=np.float32)
    fine_image = np.where(body_mask(fine_axes, anatomy.body), lookup[0], np.float32(levels["air"]))
    inside = fine_labels > 0
    fine_image[inside] = lookup[fine_labels[inside]]
    image = block_mean(fine_image, factors)
    label = block_majority(fine_labels, factors, len(config.labels) + 1)

    # acquisition effects on the voxel grid
    axes = grid_axes(shape, spacing, (1,) * len(shape))
    if config.bias_strength:
        image = image * bias_field(bias_rng, axes, fov, config.bias_strength)
    if config.streak_strength:
        image = image + streaks(streak_rng, axes, config.streak_strength)
    image = add_noise(image, noise_rng, kind=config.noise, std=config.noise_std)

    origin = tuple(float(a[0]) for a in reversed(axes))  # ITK order (x, y, z)
    return (
        Image(image.astype(np.float32), spacing, origin),
        Image(label, spacing, origin),
    )


def case_seed(seed: int, index: int) -> int:
    """The seed of case ``index`` in a dataset generated with ``seed`` (independent of size).

    Example:
        >>> case_seed(0, 0) == case_seed(0, 0) != case_seed(0, 1)
        True
    """
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


# ---------------------------------------------------------------- datasets on disk

FILE_ENDINGS = (".nii.gz", ".png")
#: PNG stores ``round(PNG_SCALE * intensity)`` clipped to 0-255 (tissue 0.5 -> 85).
PNG_SCALE = 170.0
_OWN_FILE = re.compile(r"^\.?phantom_\d+(_0000)?(\..*)?$")  # our cases and their temp files


def generate_dataset(
    out_dir: str | os.PathLike[str],
    *,
    spatial_dims: int = 3,
    num_cases: int = 20,
    seed: int = 0,
    config: PhantomConfig | None = None,
    overwrite: bool = False,
    file_ending: str = ".nii.gz",
) -> Path:
    """Write a phantom dataset in the nnU-Net v2 layout.

    Files: ``imagesTr/phantom_NNN_0000<ending>`` (float32 intensities),
    ``labelsTr/phantom_NNN<ending>`` (uint8), ``dataset.json`` and ``phantom.json`` (the
    config, seeds and per-case labels present). Case ``i`` uses ``case_seed(seed, i)``,
    so the first cases of a larger dataset equal a smaller one's. Files are identical byte
    for byte across runs (SimpleITK writes gzip without a timestamp).

    Args:
        out_dir: the dataset folder; created if missing.
        spatial_dims: 2 or 3.
        num_cases: number of training cases (>= 1).
        seed: non-negative dataset seed.
        config: generator knobs; ``None`` uses ``PhantomConfig()``.
        overwrite: allow writing into a non-empty folder. Only the generator's own outputs
            are replaced (``phantom_*`` files in ``imagesTr``/``labelsTr``,
            ``dataset.json``, ``phantom.json``); other files in ``out_dir`` are kept.
        file_ending: ``".nii.gz"`` (keeps spacing) or ``".png"`` (2D only; intensities
            scaled by ``PNG_SCALE`` to uint8, spacing lost).

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        OverwriteError: ``out_dir`` is not empty and ``overwrite`` is False, or
            ``imagesTr``/``labelsTr`` hold files the generator did not write.
        ConfigError: invalid arguments.
    """
    config = config or PhantomConfig()
    _check_dataset_args(spatial_dims, num_cases, seed, file_ending)
    _, spacing = config.grid(spatial_dims)
    out = Path(out_dir)
    _clear_own_outputs(out, overwrite=overwrite)
    if file_ending == ".png" and any(s != 1.0 for s in spacing):
        logger.warning(
            "PNG files do not store spacing; %s mm is recorded in phantom.json only", spacing
        )
    cases = [
        _write_case(out, config, index, case_seed(seed, index), spatial_dims, file_ending)
        for index in range(num_cases)
    ]
    _write_records(
        out, config, cases, spatial_dims=spatial_dims, seed=seed, file_ending=file_ending
    )
    logger.debug("wrote %d %dD phantom cases to %s", num_cases, spatial_dims, out)
    return out


def _check_dataset_args(spatial_dims: int, num_cases: int, seed: int, file_ending: str) -> None:
    if not isinstance(num_cases, int) or num_cases < 1:
        raise ConfigError(f"num_cases must be a positive integer, got {num_cases!r}")
    if file_ending not in FILE_ENDINGS:
        raise ConfigError(f"file_ending must be one of {list(FILE_ENDINGS)}, got {file_ending!r}")
    if file_ending == ".png" and spatial_dims != 2:
        raise ConfigError(f"file_ending '.png' needs spatial_dims=2, got {spatial_dims}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")


def _write_case(
    out: Path, config: PhantomConfig, index: int, seed: int, spatial_dims: int, file_ending: str
) -> dict[str, object]:
    """Generate and write case ``index``; return its ``phantom.json`` record."""
    case_id = f"phantom_{index:03d}"
    image, label = generate_case(config, seed, spatial_dims=spatial_dims)
    if file_ending == ".png":
        image = image.with_array(np.clip(np.rint(image.array * PNG_SCALE), 0, 255).astype(np.uint8))
    write_image(image, out / "imagesTr" / f"{case_id}_0000{file_ending}")
    write_image(label, out / "labelsTr" / f"{case_id}{file_ending}")
    present = [name for name, v in config.label_values().items() if v and np.any(label.array == v)]
    logger.debug("wrote %s (seed %d, labels %s)", case_id, seed, present)
    return {"case": case_id, "seed": seed, "labels_present": present}


def _write_records(
    out: Path,
    config: PhantomConfig,
    cases: list[dict[str, object]],
    *,
    spatial_dims: int,
    seed: int,
    file_ending: str,
) -> None:
    """Write ``phantom.json`` (how the dataset was made), then ``dataset.json``."""
    shape, spacing = config.grid(spatial_dims)
    fov, _ = config.fov_and_spacing(spatial_dims)
    num_cases = len(cases)
    write_json_atomic(
        out / "phantom.json",
        {
            "generator": "medseg.data.phantoms",
            "medseg_version": __version__,
            "spatial_dims": spatial_dims,
            "seed": int(seed),
            "num_cases": num_cases,
            "file_ending": file_ending,
            "shape": list(shape),
            "spacing": list(spacing),
            "fov_mm": list(fov),
            "intensity_levels": config.intensity_levels(),
            "config": config.to_dict(),
            "cases": cases,
        },
    )
    write_json_atomic(
        out / "dataset.json",
        {  # last: a folder with dataset.json is complete
            "name": f"Phantom{spatial_dims}D",
            "description": _describe(config, spatial_dims, seed),
            "channel_names": {"0": config.channel_name},
            "labels": config.label_values(),
            "numTraining": num_cases,
            "file_ending": file_ending,
        },
    )


def _clear_own_outputs(out: Path, *, overwrite: bool) -> None:
    clear_generated_outputs(
        out,
        overwrite=overwrite,
        own_files=("dataset.json", "phantom.json"),
        own_trees=("imagesTr", "labelsTr"),
        own_name=_OWN_FILE,
    )


def clear_generated_outputs(
    out: Path,
    *,
    overwrite: bool,
    own_files: Sequence[str],
    own_trees: Sequence[str],
    own_name: re.Pattern[str],
) -> None:
    """Apply the overwrite rule to a generator's output folder, then delete its previous outputs.

    Only the generator's own files go: ``own_files`` at the top and, under ``own_trees``, files
    whose name matches ``own_name``; any other file there stops it with an ``OverwriteError``
    naming it. Folders left empty under ``own_trees`` are removed.
    """
    if out.exists() and not out.is_dir():
        raise OverwriteError(f"{out}: exists and is not a folder; choose another output folder")
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise OverwriteError(
            f"{out}: folder is not empty; pass --overwrite (overwrite=True) to replace the "
            "phantom dataset in it, or choose an empty folder"
        )
    own: list[Path] = [out / name for name in own_files if (out / name).is_file()]
    for tree in own_trees:
        root = out / tree
        if not root.is_dir():
            continue
        files = [p for p in root.rglob("*") if not p.is_dir()]
        foreign = sorted(
            str(p.relative_to(out)) for p in files if not (p.is_file() and own_name.match(p.name))
        )
        if foreign:
            raise OverwriteError(
                f"{root}: holds files the phantom generator did not write ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}); move them away or choose another folder"
            )
        own.extend(files)
    for path in own:
        path.unlink()
    for tree in own_trees:  # empty class folders left behind would be "empty class" errors
        root = out / tree
        if root.is_dir():
            for folder in sorted(
                (p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
            ):
                if not any(folder.iterdir()):
                    folder.rmdir()
    logger.info("overwrite: removed %d previous phantom file(s) from %s", len(own), out)


def _describe(config: PhantomConfig, spatial_dims: int, seed: int) -> str:
    return (
        f"Synthetic {spatial_dims}D phantom (medseg.data.phantoms, seed {seed}): "
        f"{config.noise} noise std {config.noise_std:g}, bias {config.bias_strength:g}, "
        f"streaks {config.streak_strength:g}, contrast {config.contrast:g}, "
        f"supersample {config.supersample}, p_absent {config.p_absent:g}. See phantom.json."
    )
