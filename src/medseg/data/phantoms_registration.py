"""Phantom registration pairs with a known smooth warp and its inverse (``--task registration``).

Every case is one template (an ellipsoid "organ", label 1, holding a smaller off-centre
ellipsoid, label 2, on a smooth textured background) deformed by a random smooth field, so
random inter-subject pairs are learnable. Pair ``i`` is a fixed case ``F`` and a moving case
``M = F o (id + u)``: ``M(p) = F(p + u(p))``, generated from the template directly (one
interpolation). ``u`` and its inverse ``v`` (``v(p) = -u(p + v(p))``, fixed-point iteration)
are stored, so ``warp(M, v) ~= F``: ``v`` is the flow a registration of ``M`` onto ``F``
should find (``medseg.registration`` conventions: voxels, ``(D, *spatial)``, channel ``d``
along array axis ``d``, warping pulls back).

Layout (nnU-Net v2, read by ``medseg.data.dataset.load_dataset``)::

    OUT/imagesTr/pair_NNN_{fixed,moving}_0000.nii.gz   float32
    OUT/labelsTr/pair_NNN_{fixed,moving}.nii.gz        uint8, 0 / 1 outer / 2 inner
    OUT/flows/pair_NNN_forward.npy    u: warp(F, u) ~= M   (D, *spatial) float32, voxels
    OUT/flows/pair_NNN_inverse.npy    v: warp(M, v) ~= F
    OUT/pairs.json   [{"fixed", "moving", "forward", "inverse"}, ...] (paths relative to OUT)
    OUT/dataset.json (last: a folder with it is complete)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.data.phantoms import clear_generated_outputs
from medseg.errors import ConfigError
from medseg.fileutil import atomic_path, write_json_atomic
from medseg.io import Image, write_image

SHAPES = {2: (64, 64), 3: (32, 32, 32)}
LABELS = {"background": 0, "outer": 1, "inner": 2}
SUBJECT_DISPLACEMENT = 2.0  # voxels: how much cases differ from the template
PAIR_DISPLACEMENT = 3.0  # voxels: the largest displacement of a pair's known warp
CONVENTION = (
    "forward u: warp(fixed, u) ~= moving; inverse v: warp(moving, v) ~= fixed; flows "
    "(D, *spatial) float32 in voxels, channel d along array axis d; warp(x, f)(p) = x(p + f(p))"
)
_OWN = re.compile(r"pair_\d{3}_(fixed|moving)(_0000)?\.nii\.gz|pair_\d{3}_(forward|inverse)\.npy")


def smooth_field(
    shape: tuple[int, ...], amplitude: float, rng: np.random.Generator, *, control: int = 4
) -> np.ndarray:
    """A random smooth displacement ``(D, *shape)``: normal values on a ``control``-point grid
    per axis, zoomed (cubic) to ``shape``, scaled so its largest component is ``amplitude``."""
    dims = len(shape)
    coarse = rng.standard_normal((dims, *([control] * dims)))
    field = np.stack(
        [ndimage.zoom(c, [n / control for n in shape], order=3, mode="nearest") for c in coarse]
    )
    return (field * amplitude / max(np.abs(field).max(), 1e-8)).astype(np.float64)


def pull(array: np.ndarray, flow: np.ndarray, *, order: int) -> np.ndarray:
    """``array(p + flow(p))`` (scipy ``map_coordinates``, edges repeated)."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in array.shape], indexing="ij"))
    return ndimage.map_coordinates(array, grid + flow, order=order, mode="nearest")


def compose_fields(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``second + first o (id + second)``: pulling by ``first`` then by ``second``."""
    return second + np.stack([pull(c, second, order=1) for c in first])


def invert_field(flow: np.ndarray, iterations: int = 40) -> np.ndarray:
    """``v`` with ``v(p) = -flow(p + v(p))`` (fixed point; converges for smooth, small flows)."""
    inverse = -flow
    for _ in range(iterations):
        inverse = -np.stack([pull(c, inverse, order=1) for c in flow])
    return inverse


def template(spatial_dims: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The template image (float) and labels (uint8) on :data:`SHAPES` ``[spatial_dims]``."""
    shape = SHAPES[spatial_dims]
    grid = np.stack(np.meshgrid(*[np.arange(n) / (n - 1) for n in shape], indexing="ij"))
    centre = np.full((spatial_dims, *[1] * spatial_dims), 0.5)
    radii = np.array([0.33, 0.27, 0.3][:spatial_dims]).reshape(-1, *[1] * spatial_dims)
    outer = (((grid - centre) / radii) ** 2).sum(0) <= 1
    inner_centre = centre + np.array([0.08, -0.06, 0.05][:spatial_dims]).reshape(centre.shape)
    inner = (((grid - inner_centre) / (0.45 * radii)) ** 2).sum(0) <= 1
    labels = np.where(inner, 2, np.where(outer, 1, 0)).astype(np.uint8)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    image = np.choose(labels, [0.1, 0.55, 1.0]) + 0.15 * texture / max(texture.std(), 1e-8)
    return image, labels


def _write_case(out: Path, case_id: str, image: np.ndarray, labels: np.ndarray) -> None:
    spacing = (1.0,) * image.ndim
    write_image(
        Image(image.astype(np.float32), spacing), out / "imagesTr" / f"{case_id}_0000.nii.gz"
    )
    write_image(Image(labels.astype(np.uint8), spacing), out / "labelsTr" / f"{case_id}.nii.gz")


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array.astype(np.float32), allow_pickle=False)


def _write_pair(
    out: Path, index: int, seed: int, image: np.ndarray, labels: np.ndarray
) -> dict[str, str]:
    """Deform the template into pair ``index``'s fixed and moving cases; write them and the
    known warp and its inverse; return the pair's ``pairs.json`` record."""
    shape = image.shape
    pair_rng = np.random.default_rng([seed, index])
    subject = smooth_field(shape, SUBJECT_DISPLACEMENT, pair_rng)
    forward = smooth_field(shape, PAIR_DISPLACEMENT, pair_rng)
    to_moving = compose_fields(subject, forward)  # template -> fixed, then fixed -> moving
    name = f"pair_{index:03d}"
    noise = [0.02 * pair_rng.standard_normal(shape) for _ in range(2)]
    for role, field, extra in (("fixed", subject, noise[0]), ("moving", to_moving, noise[1])):
        _write_case(
            out,
            f"{name}_{role}",
            pull(image, field, order=1) + extra,
            pull(labels, field, order=0),
        )
    _save_npy(out / "flows" / f"{name}_forward.npy", forward)
    _save_npy(out / "flows" / f"{name}_inverse.npy", invert_field(forward))
    return {
        "fixed": f"{name}_fixed",
        "moving": f"{name}_moving",
        "forward": f"flows/{name}_forward.npy",
        "inverse": f"flows/{name}_inverse.npy",
    }


def generate_registration_dataset(
    out: str | os.PathLike[str],
    *,
    spatial_dims: int = 3,
    num_cases: int = 20,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write ``num_cases // 2`` phantom pairs (module docstring for the layout).

    Args:
        out: the dataset folder (created).
        spatial_dims: 2 (64 x 64) or 3 (32 x 32 x 32), 1 mm voxels.
        num_cases: images in all, an even number >= 2 (fixed + moving per pair).
        seed: non-negative; the same seed writes the same data.
        overwrite: replace a previous registration phantom in ``out``.

    Raises:
        ConfigError: bad arguments; OverwriteError: ``out`` is not empty (without
            ``overwrite``) or holds files the generator did not write.
    """
    if spatial_dims not in SHAPES:
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if not isinstance(num_cases, int) or num_cases < 2 or num_cases % 2:
        raise ConfigError(f"num_cases must be an even int >= 2 (pairs), got {num_cases!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(out)
    clear_generated_outputs(
        out,
        overwrite=overwrite,
        own_files=("dataset.json", "pairs.json"),
        own_trees=("imagesTr", "labelsTr", "flows"),
        own_name=_OWN,
    )
    rng = np.random.default_rng(seed)
    image, labels = template(spatial_dims, rng)
    records = [_write_pair(out, index, seed, image, labels) for index in range(num_cases // 2)]
    write_json_atomic(out / "pairs.json", {"convention": CONVENTION, "pairs": records})
    write_json_atomic(
        out / "dataset.json",
        {
            "name": f"RegistrationPhantom{spatial_dims}D",
            "description": f"{num_cases // 2} phantom pairs with known smooth warps (seed {seed})",
            "channel_names": {"0": "MRI"},
            "labels": LABELS,
            "numTraining": num_cases,
            "file_ending": ".nii.gz",
        },
    )
    return out
