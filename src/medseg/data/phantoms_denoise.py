"""Phantom denoising datasets: clean images plus two independent noisy copies per case.

Layout written by :func:`generate_denoise_dataset` (and read by ``medseg.enhance``)::

    OUT/clean/<case>.nii.gz    the clean image (float32), the supervised target
    OUT/noisy1/<case>.nii.gz   a noisy realisation of it
    OUT/noisy2/<case>.nii.gz   a second realisation, noise independent of the first
    OUT/labels/<case>.nii.gz   the phantom's label map (uint8; segmentation on denoised input)
    OUT/denoise.json           how it was made: noise spec, seeds, shape, spacing, per-case
                               data range (the clean image's max - min, which the noise level
                               is relative to), written last

Any folder with ``noisy1/`` and ``noisy2/`` (and optionally ``clean/``) of same-named files
is a pairs dataset for noise2noise training, e.g. two real acquisitions of each patient.

The clean images are :func:`medseg.data.phantoms.generate_case` phantoms without noise
(2D: 64 x 64 at 2 mm; 3D: 32 x 32 x 32 at 2 mm) with the default bias field.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from medseg import __version__
from medseg.data.noise_models import NoiseSpec, parse_noise
from medseg.data.phantom_config import PhantomConfig
from medseg.data.phantoms import case_seed, clear_generated_outputs, generate_case
from medseg.errors import ConfigError
from medseg.fileutil import write_json_atomic
from medseg.io import write_image

logger = logging.getLogger(__name__)

FOLDERS = ("clean", "noisy1", "noisy2", "labels")
RECORD = "denoise.json"
_OWN_FILE = re.compile(r"^\.?denoise_\d+(\..*)?$")
_GRIDS = {  # (field of view, spacing) in mm
    2: ((128.0, 128.0), (2.0, 2.0)),
    3: ((64.0, 64.0, 64.0), (2.0, 2.0, 2.0)),
}


def denoise_phantom_config(spatial_dims: int) -> PhantomConfig:
    """The phantom knobs of the denoising cases: no noise, the standard anatomy and bias.

    Raises:
        ConfigError: ``spatial_dims`` is not 2 or 3.
    """
    if spatial_dims not in _GRIDS:
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    fov, spacing = _GRIDS[spatial_dims]
    return PhantomConfig(fov_mm=fov, spacing=spacing, noise_std=0.0)


def _write_case(
    root: Path, config: PhantomConfig, spec: NoiseSpec, index: int, seed: int, spatial_dims: int
) -> dict[str, object]:
    """Write case ``index`` (clean, two noisy copies, labels); return its record."""
    case_id = f"denoise_{index:03d}"
    image, label = generate_case(config, seed, spatial_dims=spatial_dims)
    clean = image.array.astype(np.float32)
    data_range = float(clean.max() - clean.min())
    first, second = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(2))
    arrays = {
        "clean": clean,
        "noisy1": spec.apply(clean, first, data_range=data_range),
        "noisy2": spec.apply(clean, second, data_range=data_range),
        "labels": label.array,
    }
    for folder, array in arrays.items():
        write_image(image.with_array(array), root / folder / f"{case_id}.nii.gz")
    return {"case": case_id, "seed": seed, "data_range": data_range}


def generate_denoise_dataset(
    out: str | os.PathLike[str],
    *,
    spatial_dims: int = 2,
    num_cases: int = 24,
    seed: int = 0,
    noise: str = "rician:0.05",
    overwrite: bool = False,
) -> Path:
    """Write clean phantoms and two independent noisy copies of each (layout above).

    Args:
        out: the dataset folder (created).
        spatial_dims: 2 or 3.
        num_cases: cases (>= 1); case ``i`` uses ``case_seed(seed, i)`` for its anatomy and
            independent generators spawned from it for each noisy copy.
        seed: non-negative dataset seed.
        noise: ``"<model>:<level>"`` (``medseg.data.noise_models``), the level a fraction of
            each clean image's range.
        overwrite: replace a previous denoising phantom in ``out`` (only its own files go).

    Returns:
        ``out`` as a ``Path``.

    Raises:
        ConfigError: bad arguments or noise spec.
        OverwriteError: ``out`` is not empty and ``overwrite`` is False, or holds files the
            generator did not write in its folders.

    Example:
        >>> import tempfile
        >>> root = generate_denoise_dataset(tempfile.mkdtemp(), num_cases=1)
        >>> sorted(p.name for p in root.iterdir())
        ['clean', 'denoise.json', 'labels', 'noisy1', 'noisy2']
    """
    spec = parse_noise(noise)
    config = denoise_phantom_config(spatial_dims)
    if not isinstance(num_cases, int) or num_cases < 1:
        raise ConfigError(f"num_cases must be a positive integer, got {num_cases!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    root = Path(out)
    clear_generated_outputs(
        root, overwrite=overwrite, own_files=(RECORD,), own_trees=FOLDERS, own_name=_OWN_FILE
    )
    cases = [
        _write_case(root, config, spec, index, case_seed(seed, index), spatial_dims)
        for index in range(num_cases)
    ]
    shape, spacing = config.grid(spatial_dims)
    write_json_atomic(
        root / RECORD,
        {
            "generator": "medseg.data.phantoms_denoise",
            "medseg_version": __version__,
            "spatial_dims": spatial_dims,
            "seed": int(seed),
            "noise": str(spec),
            "noise_level_relative_to": "each clean image's max - min (cases[].data_range)",
            "num_cases": num_cases,
            "shape": list(shape),
            "spacing": list(spacing),
            "labels": config.label_values(),
            "cases": cases,
        },
    )
    logger.info("wrote %d %dD denoising phantoms (%s) to %s", num_cases, spatial_dims, spec, root)
    return root
