"""Beating-heart phantoms: 3D+t and 2D+t cine series with known volumes and ejection fraction.

``cine_phantom`` draws a left ventricle: a blood pool (label 1, bright) inside a myocardium
shell (label 2, dark) in a background with a static bright structure (an unlabelled
"right ventricle") and Gaussian noise. In 3D the blood pool is an ellipsoid elongated along
the slice axis (half-length ``1.2 x`` its in-plane radius), in 2D a disc. Its radius follows
a cardiac cycle: largest at end-diastole (ED, frame ``ed_index``), smallest at end-systole
(ES, ``es_fraction`` of the cycle later), cosine contraction then cosine filling; the
myocardium keeps its volume (its outer radius ``R`` satisfies ``R^3 - r^3`` constant in 3D,
``R^2 - r^2`` in 2D), so it thickens in systole. Labels are exact at voxel centres and the
true volumes are their voxel counts (``medseg.metrics.temporal.volume_curve``).

``write_cine_dataset`` writes them in the nnU-Net v2 layout with a time axis
(``docs/time_series.md``): ``imagesTr/cine_NNN_0000.nii.gz`` and ``labelsTr/cine_NNN.nii.gz``
4D NIfTI with the frame interval, ``dataset.json`` with ``"time_axis": true`` and
``cine.json`` with each case's ED/ES frames, LV volume curve and ejection fraction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.data.phantoms import clear_generated_outputs
from medseg.errors import ConfigError
from medseg.fileutil import write_json_atomic
from medseg.io.formats import write_image
from medseg.io.image import Image

LV, MYO = 1, 2
LABELS = {"background": 0, "lv": LV, "myocardium": MYO}
IGNORE_VALUE = 3  # unlabelled frames of an ED/ES-only dataset
_OWN_FILE = re.compile(r"^cine_\d{3}(_0000)?\.nii\.gz$")


@dataclass(frozen=True)
class CinePhantom:
    """One phantom series and its truth.

    Attributes:
        image: float32 time series ``(T, *spatial)`` with ``time_interval``.
        label: uint8 time series ``(T, *spatial)``: 0 background, 1 LV blood pool, 2 myocardium.
        ed_index / es_index: the end-diastolic / end-systolic frames.
        volumes: ``(T,)`` LV blood-pool volume per frame in mL (label voxel counts).
        ejection_fraction: ``(EDV - ESV) / EDV * 100`` of ``volumes``.
    """

    image: Image
    label: Image
    ed_index: int
    es_index: int
    volumes: np.ndarray
    ejection_fraction: float


def cardiac_cycle(frames: int, ed_index: int, es_frames: int) -> np.ndarray:
    """``(T,)`` filling in [0, 1]: 1 at ED, 0 at ED + ``es_frames``; cosine ramps between.

    Example:
        >>> cardiac_cycle(4, 0, 2).round(3).tolist()
        [1.0, 0.5, 0.0, 0.5]
    """
    if not 0 < es_frames < frames:
        raise ConfigError(f"end-systole must be 1..{frames - 1} frames after ED, got {es_frames}")
    phase = (np.arange(frames) - ed_index) % frames
    systole = 0.5 * (1 + np.cos(np.pi * phase / es_frames))
    diastole = 0.5 * (1 - np.cos(np.pi * (phase - es_frames) / (frames - es_frames)))
    return np.where(phase <= es_frames, systole, diastole)


def cine_phantom(
    frames: int = 20,
    shape: tuple[int, ...] = (10, 64, 64),
    spacing: tuple[float, ...] = (6.0, 1.5, 1.5),
    *,
    seed: int = 0,
    noise_std: float = 0.25,
    time_interval: float = 0.04,
    es_fraction: float = 0.35,
) -> CinePhantom:
    """A beating left ventricle, 3D+t (``len(shape) == 3``) or 2D+t (``len(shape) == 2``).

    Args:
        frames: number of frames ``T`` (at least 4).
        shape / spacing: spatial grid (array order, mm).
        seed: draws the ED frame, the ED radius, the ejection fraction (45-70 %), the centre.
        noise_std: Gaussian noise (blood 1.0, myocardium 0.3, background 0.1).
        time_interval: seconds between frames (0.04 s x 20 frames: an 0.8 s cycle).
        es_fraction: share of the cycle from ED to ES (systole).
    """
    d = len(shape)
    if d not in (2, 3) or len(spacing) != d:
        raise ConfigError(f"shape {shape} / spacing {spacing}: give 2 or 3 axes, the same count")
    if frames < 4:
        raise ConfigError(f"a cine phantom needs at least 4 frames, got {frames}")
    rng = np.random.default_rng(seed)
    extent = np.asarray(shape) * np.asarray(spacing)
    ed = int(rng.integers(0, frames))
    es_frames = int(np.clip(round(es_fraction * frames), 1, frames - 1))
    fill = cardiac_cycle(frames, ed, es_frames)
    r_ed = float(rng.uniform(0.17, 0.21) * extent[-1])
    ef = float(rng.uniform(0.45, 0.70))
    r_es = r_ed * (1 - ef) ** (1 / d)
    radii = r_es + (r_ed - r_es) * fill
    shell = (1.3**d - 1) * r_ed**d  # myocardium volume, up to a constant factor
    centre = extent / 2 + rng.uniform(-0.05, 0.05, d) * extent
    axes = np.meshgrid(
        *[(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij"
    )
    stretch = [1.2] + [1.0] * (d - 1) if d == 3 else [1.0] * d
    rho = np.sqrt(sum(((a - c) / k) ** 2 for a, c, k in zip(axes, centre, stretch, strict=True)))
    rv_centre = centre.copy()
    rv_centre[-1] -= 1.9 * r_ed
    rv = np.sqrt(sum(((a - c) / k) ** 2 for a, c, k in zip(axes, rv_centre, stretch, strict=True)))
    labels = np.zeros((frames, *shape), np.uint8)
    for t, r in enumerate(radii):
        outer = (r**d + shell) ** (1 / d)
        labels[t][rho <= outer] = MYO
        labels[t][rho <= r] = LV
    tissue = np.array([0.1, 1.0, 0.3], np.float32)[labels]
    tissue[:, (rv <= 0.8 * r_ed) & (rho > (r_ed**d + shell) ** (1 / d))] = 0.8
    image = tissue + rng.normal(0.0, noise_std, labels.shape).astype(np.float32)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    volumes = (labels == LV).reshape(frames, -1).sum(axis=1) * voxel_ml
    ed_index, es_index = int(np.argmax(volumes)), int(np.argmin(volumes))
    return CinePhantom(
        image=Image(image, spacing, time_interval=time_interval),
        label=Image(labels, spacing, time_interval=time_interval),
        ed_index=ed_index,
        es_index=es_index,
        volumes=volumes,
        ejection_fraction=float((volumes[ed_index] - volumes[es_index]) / volumes[ed_index] * 100),
    )


def write_cine_dataset(
    out_dir: str | Path,
    *,
    num_cases: int = 6,
    frames: int = 20,
    shape: tuple[int, ...] = (10, 64, 64),
    spacing: tuple[float, ...] = (6.0, 1.5, 1.5),
    noise_std: float = 0.25,
    labelled_frames: str = "all",
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write ``num_cases`` cine phantoms as a time-axis dataset (module docstring).

    Args:
        labelled_frames: ``"all"`` (every frame labelled) or ``"ed_es"`` (ACDC-style: only the
            ED and ES frames; the other frames of the label file hold the ``ignore`` value 3).
        seed: case ``i`` uses seed ``seed * 1000 + i``.

    Raises:
        ConfigError: bad arguments. OverwriteError: ``out_dir`` holds files and not ``overwrite``.
    """
    if labelled_frames not in ("all", "ed_es"):
        raise ConfigError(f"labelled_frames must be 'all' or 'ed_es', got {labelled_frames!r}")
    if num_cases < 1:
        raise ConfigError(f"num_cases must be at least 1, got {num_cases}")
    out = Path(out_dir)
    clear_generated_outputs(
        out,
        overwrite=overwrite,
        own_files=("dataset.json", "cine.json"),
        own_trees=("imagesTr", "labelsTr"),
        own_name=_OWN_FILE,
    )
    records = {}
    for i in range(num_cases):
        case_id = f"cine_{i:03d}"
        phantom = cine_phantom(frames, shape, spacing, seed=seed * 1000 + i, noise_std=noise_std)
        label = phantom.label.array.copy()
        if labelled_frames == "ed_es":
            keep = np.zeros(frames, bool)
            keep[[phantom.ed_index, phantom.es_index]] = True
            label[~keep] = IGNORE_VALUE
        write_image(phantom.image, out / "imagesTr" / f"{case_id}_0000.nii.gz", overwrite=True)
        write_image(
            phantom.label.with_array(label), out / "labelsTr" / f"{case_id}.nii.gz", overwrite=True
        )
        records[case_id] = {
            "ed_index": phantom.ed_index,
            "es_index": phantom.es_index,
            "lv_volumes_ml": [round(float(v), 6) for v in phantom.volumes],
            "ejection_fraction": phantom.ejection_fraction,
        }
    labels = dict(LABELS) | ({"ignore": IGNORE_VALUE} if labelled_frames == "ed_es" else {})
    write_json_atomic(out / "cine.json", {"seed": seed, "noise_std": noise_std, "cases": records})
    write_json_atomic(
        out / "dataset.json",
        {
            "name": "cine_phantoms",
            "description": f"Synthetic beating LV (medseg.data.phantoms_cine, seed {seed})",
            "channel_names": {"0": "MRI"},
            "labels": labels,
            "numTraining": num_cases,
            "file_ending": ".nii.gz",
            "time_axis": True,
            "labelled_frames": labelled_frames,
        },
    )
    return out
