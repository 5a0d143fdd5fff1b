"""Synthetic survival data with a known log-risk: the lesion's size sets the hazard.

Every image is a noisy background with one bright ball-shaped lesion at a random place. Its
radius ``r`` (uniform, 8-22 % of the image size) is the risk factor: the true log-risk is

    ``eta = beta * z``,   ``z = (r / size - 0.15) / (0.14 / sqrt(12))``   (``z``: mean 0, sd 1)

and the event time is exponential with hazard ``exp(eta)`` (a Cox model with a constant
baseline hazard 1): ``T = E / exp(eta)``, ``E ~ Exp(1)``. Censoring is independent,
exponential with the rate that censors the share ``censoring`` of cases on average; the
observed time is ``min(T, C)`` and ``event = T <= C``. The lesion's brightness (+0.35 to
+0.60) varies independently of its size, so total brightness is not the risk, its extent is.

A model can learn ``eta`` from the image; the C-index of the true ``eta`` on the observed
times is the ceiling any model can reach on the same cases (``true_c_index`` in the demo).

Determinism: case ``i`` of split ``s`` is drawn from ``SeedSequence([seed, s, i])`` (``s`` 0:
train, 1: test), so the first cases of a larger set equal a smaller set's. 2D images are
quantised to steps of 1/255 exactly as their uint8 PNG files are (so reading the files gives
the same arrays); 3D images are written as float32 NIfTI.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg import __version__
from medseg.data.phantoms import clear_generated_outputs
from medseg.errors import ConfigError
from medseg.fileutil import write_json_atomic, write_text_atomic
from medseg.io import Image, write_image

__all__ = [
    "DEFAULT_SIZE",
    "SurvivalPhantoms",
    "make_survival_phantoms",
    "survival_phantom_arrays",
]

#: Default image edge per spatial dimension.
DEFAULT_SIZE = {2: 32, 3: 24}
_SPLIT_STREAM = {"train": 0, "test": 1}
_RADIUS = (0.08, 0.22)  # share of the image size, uniform
_RADIUS_MEAN, _RADIUS_SD = 0.15, 0.14 / math.sqrt(12.0)


@dataclass
class SurvivalPhantoms:
    """Phantom cases in memory.

    Attributes:
        images: ``(N, 1, *spatial)`` float32 in ``[0, 1]``.
        time: ``(N,)`` observed times ``min(T, C)``.
        event: ``(N,)`` int64, 1 when the event was observed (``T <= C``), 0 when censored.
        log_risk: ``(N,)`` the true log-risk ``beta * z``.
        radius: ``(N,)`` lesion radius in voxels.
        cases: case names ``<split>_<i>`` (4 digits).
    """

    images: np.ndarray
    time: np.ndarray
    event: np.ndarray
    log_risk: np.ndarray
    radius: np.ndarray
    cases: list[str]


def survival_phantom_arrays(
    n: int,
    *,
    spatial_dims: int = 2,
    size: int | None = None,
    beta: float = 2.0,
    censoring: float = 0.3,
    seed: int = 0,
    split: str = "train",
) -> SurvivalPhantoms:
    """``n`` phantom cases (see the module docstring).

    Args:
        n: number of cases (>= 1).
        spatial_dims: 2 or 3.
        size: image edge in voxels (>= 16); default 32 (2D) or 24 (3D).
        beta: log-hazard ratio per standard deviation of the lesion radius (finite).
        censoring: expected share of censored cases, in ``[0, 0.9]`` (0: every event observed).
        seed: non-negative integer.
        split: ``"train"`` or ``"test"`` (independent streams of cases).

    Raises:
        ConfigError: invalid arguments.

    Example:
        >>> p = survival_phantom_arrays(4, size=16)
        >>> p.images.shape, p.event.dtype.name
        ((4, 1, 16, 16), 'int64')
    """
    shape = _check_args(n, spatial_dims, size, beta, censoring, seed, split)
    censor_rate = _censoring_rate(beta, censoring)
    images = np.empty((n, 1, *shape), dtype=np.float32)
    columns = np.empty((5, n), dtype=np.float64)  # radius, eta, T, C, time
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_STREAM[split], i]))
        fraction = rng.uniform(*_RADIUS)
        radius = fraction * shape[0]
        eta = beta * (fraction - _RADIUS_MEAN) / _RADIUS_SD
        images[i, 0] = _render(rng, shape, radius)
        event_time = rng.exponential(1.0) / math.exp(eta)
        censor_time = rng.exponential(1.0 / censor_rate) if censor_rate > 0 else math.inf
        columns[:, i] = radius, eta, event_time, censor_time, min(event_time, censor_time)
    if spatial_dims == 2:  # as the uint8 PNG files hold them
        images = np.rint(images * 255.0).astype(np.float32) / np.float32(255.0)
    return SurvivalPhantoms(
        images=images,
        time=columns[4],
        event=(columns[2] <= columns[3]).astype(np.int64),
        log_risk=columns[1],
        radius=columns[0],
        cases=[f"{split}_{i:04d}" for i in range(n)],
    )


def _render(rng: np.random.Generator, shape: tuple[int, ...], radius: float) -> np.ndarray:
    """Background 0.2 + a soft-edged bright ball + Gaussian noise, clipped to ``[0, 1]``."""
    contrast = rng.uniform(0.35, 0.60)
    margin = radius + 1.0
    centre = [rng.uniform(margin, s - 1 - margin) for s in shape]
    grid = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
    ball = np.clip(radius + 0.5 - distance, 0.0, 1.0)  # one voxel of soft edge
    image = 0.2 + contrast * ball + rng.normal(0.0, 0.05, size=shape)
    return np.clip(image, 0.0, 1.0)


def _censoring_rate(beta: float, share: float) -> float:
    """The exponential censoring rate ``c`` with mean ``P(C < T) = c / (c + exp(eta))`` over
    the radius distribution equal to ``share`` (bisection on a grid of radii)."""
    if share == 0:
        return 0.0
    fractions = np.linspace(*_RADIUS, 201)
    hazards = np.exp(beta * (fractions - _RADIUS_MEAN) / _RADIUS_SD)
    low, high = 1e-9, 1e9
    for _ in range(200):
        mid = math.sqrt(low * high)
        if float(np.mean(mid / (mid + hazards))) < share:
            low = mid
        else:
            high = mid
    return math.sqrt(low * high)


def make_survival_phantoms(
    out_dir: str | os.PathLike[str],
    *,
    n_train: int = 200,
    n_test: int = 100,
    spatial_dims: int = 2,
    size: int | None = None,
    beta: float = 2.0,
    censoring: float = 0.3,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a survival phantom dataset that ``medseg survival train/predict`` read.

    Layout (``<ending>``: ``.png`` uint8 in 2D, ``.nii.gz`` float32 in 3D)::

        OUT/images/<case><ending>
        OUT/train.csv      case,path,time,event   (n_train rows)
        OUT/test.csv       case,path,time,event   (n_test rows)
        OUT/truth.csv      case,split,log_risk,radius   (the true log-risk; not for training)
        OUT/phantom.json   how it was made

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        OverwriteError: ``out_dir`` is not empty and ``overwrite`` is False, or holds files
            under ``images/`` the generator did not write.
        ConfigError: invalid arguments.
    """
    out = Path(out_dir)
    splits = {}
    for split, count in (("train", n_train), ("test", n_test)):
        splits[split] = survival_phantom_arrays(
            count,
            spatial_dims=spatial_dims,
            size=size,
            beta=beta,
            censoring=censoring,
            seed=seed,
            split=split,
        )
    clear_generated_outputs(
        out,
        overwrite=overwrite,
        own_files=("train.csv", "test.csv", "truth.csv", "phantom.json"),
        own_trees=("images",),
        own_name=re.compile(r"^\.?(train|test)_\d+(\..*)?$"),
    )
    ending = ".png" if spatial_dims == 2 else ".nii.gz"
    truth = [["case", "split", "log_risk", "radius"]]
    for split, data in splits.items():
        rows = [["case", "path", "time", "event"]]
        for k, case in enumerate(data.cases):
            pixels = data.images[k, 0]
            if ending == ".png":
                pixels = np.rint(pixels * 255.0).astype(np.uint8)
            path = f"images/{case}{ending}"
            write_image(Image(pixels, (1.0,) * spatial_dims), out / path)
            rows.append([case, path, f"{data.time[k]:.6g}", str(int(data.event[k]))])
            truth.append([case, split, f"{data.log_risk[k]:.6f}", f"{data.radius[k]:.4f}"])
        write_text_atomic(out / f"{split}.csv", _csv_text(rows))
    write_text_atomic(out / "truth.csv", _csv_text(truth))
    write_json_atomic(
        out / "phantom.json",
        {
            "generator": "medseg.data.phantoms_survival",
            "medseg_version": __version__,
            "spatial_dims": spatial_dims,
            "shape": list(splits["train"].images.shape[2:]),
            "beta": beta,
            "censoring": censoring,
            "seed": seed,
            "cases": {"train": n_train, "test": n_test},
            "events": {s: int(d.event.sum()) for s, d in splits.items()},
        },
    )
    return out


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _check_args(
    n: object,
    spatial_dims: object,
    size: object,
    beta: object,
    censoring: object,
    seed: object,
    split: object,
) -> tuple[int, ...]:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"the number of cases must be a positive integer, got {n!r}")
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    size = DEFAULT_SIZE[int(spatial_dims)] if size is None else size  # type: ignore[call-overload]
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ConfigError(f"size must be an integer >= 16, got {size!r}")
    if not isinstance(beta, (int, float)) or not math.isfinite(beta):
        raise ConfigError(f"beta must be a finite number, got {beta!r}")
    if not isinstance(censoring, (int, float)) or not 0 <= censoring <= 0.9:
        raise ConfigError(f"censoring must be a share in [0, 0.9], got {censoring!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if split not in _SPLIT_STREAM:
        raise ConfigError(f"split must be one of {list(_SPLIT_STREAM)}, got {split!r}")
    return (int(size),) * int(spatial_dims)  # type: ignore[call-overload]
