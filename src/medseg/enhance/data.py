"""Where a denoiser's images come from: a pairs folder or a segmentation dataset folder.

A source answers three questions per case ``i`` (arrays ``(C, *spatial)`` float32):

* ``clean(i)``: the clean image (supervised training and evaluation only);
* ``pair(i)``: two independent noisy realisations (noise2noise training);
* ``source(i)``: the files behind the case, for messages.

Two sources are read from disk by :func:`open_denoise_data`:

* :class:`PairsFolder`: ``noisy1/`` and ``noisy2/`` of same-named image files, optionally
  ``clean/`` (the layout of ``medseg.data.phantoms_denoise``; two real acquisitions of each
  subject also fit). ``pair`` reads only ``noisy1``/``noisy2``.
* :class:`SimulatedPairs`: a dataset folder (nnU-Net v2 / MSD / 2D folder, via
  ``medseg.data.dataset.load_dataset``; images only, labels unused) taken as clean; its pairs
  are two fixed draws of the noise model per case (seeded by case), i.e. simulated
  acquisitions. Its ``pair`` reads the image to simulate them; a trainer in ``n2n`` mode still
  never calls ``clean``.

Any object with ``case_ids``, ``spatial_dims``, ``clean``, ``pair`` (and optionally
``source``) can be given to :func:`medseg.enhance.train.fit_denoiser` instead of a path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from medseg.data.dataset import load_dataset, read_case
from medseg.data.noise_models import NoiseSpec, parse_noise
from medseg.errors import DatasetError, ImageIOError
from medseg.io import file_ending, read_image


class DenoiseData(Protocol):
    case_ids: list[str]
    spatial_dims: int

    def clean(self, index: int) -> np.ndarray: ...

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]: ...


def describe(data: Any, index: int) -> str:
    """The files of case ``index`` (or its id when the source cannot say)."""
    source = getattr(data, "source", None)
    return source(index) if source is not None else f"case '{data.case_ids[index]}'"


def _channels_first(array: np.ndarray, spatial_dims: int) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    return array[None] if array.ndim == spatial_dims else array


def _image_files(folder: Path) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            try:
                ending = file_ending(path)
            except ImageIOError:  # not an image (a note, a checksum list)
                continue
            files[path.name[: -len(ending)]] = path
    return files


class PairsFolder:
    """``ROOT/noisy1``, ``ROOT/noisy2`` (same file names) and optionally ``ROOT/clean``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        first, second = _image_files(self.root / "noisy1"), _image_files(self.root / "noisy2")
        unpaired = sorted(set(first) ^ set(second))
        if unpaired:
            raise DatasetError(
                f"{self.root}: noisy1/ and noisy2/ must hold the same cases; unpaired: "
                f"{', '.join(unpaired[:5])}"
            )
        if not first:
            raise DatasetError(f"{self.root}: noisy1/ holds no images")
        self.case_ids = sorted(first)
        self.files = {"noisy1": first, "noisy2": second}
        clean_dir = self.root / "clean"
        self.files["clean"] = _image_files(clean_dir) if clean_dir.is_dir() else {}
        probe = read_image(first[self.case_ids[0]])
        self.spatial_dims = probe.spatial_dims
        self.spacing = probe.spacing

    def source(self, index: int) -> str:
        case = self.case_ids[index]
        return f"{self.files['noisy1'][case]} and {self.files['noisy2'][case]}"

    def clean(self, index: int) -> np.ndarray:
        case = self.case_ids[index]
        if case not in self.files["clean"]:
            raise DatasetError(
                f"{self.root / 'clean'}: no clean image of case '{case}' (supervised training "
                "and evaluation need one; noise2noise (--mode n2n) does not)"
            )
        return _channels_first(read_image(self.files["clean"][case]).array, self.spatial_dims)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        case = self.case_ids[index]
        a, b = (read_image(self.files[k][case]) for k in ("noisy1", "noisy2"))
        if a.spatial_shape != b.spatial_shape:
            raise DatasetError(
                f"{self.source(index)}: the two realisations differ in shape "
                f"{a.spatial_shape} and {b.spatial_shape}"
            )
        return _channels_first(a.array, self.spatial_dims), _channels_first(
            b.array, self.spatial_dims
        )


class SimulatedPairs:
    """A dataset folder's images as clean images; pairs drawn from the noise model."""

    def __init__(self, root: str | os.PathLike[str], noise: str | NoiseSpec, *, seed: int = 0):
        self.dataset = load_dataset(root)
        if not self.dataset.cases:
            raise DatasetError(f"{root}: the dataset has no cases")
        self.noise = parse_noise(noise) if isinstance(noise, str) else noise
        self.seed = seed
        self.case_ids = [case.case_id for case in self.dataset.cases]
        probe, _ = read_case(self.dataset.cases[0])
        self.spatial_dims = probe.spatial_dims

    def source(self, index: int) -> str:
        return ", ".join(str(p) for p in self.dataset.cases[index].image_paths)

    def clean(self, index: int) -> np.ndarray:
        image, _ = read_case(self.dataset.cases[index])
        return _channels_first(image.array, self.spatial_dims)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        clean = self.clean(index)
        data_range = float(clean.max() - clean.min())
        draws = np.random.SeedSequence([self.seed, index, 2]).spawn(2)
        a, b = (
            self.noise.apply(clean, np.random.default_rng(s), data_range=data_range) for s in draws
        )
        return a, b


def open_denoise_data(data: Any, *, noise: str | NoiseSpec = "rician:0.05", seed: int = 0) -> Any:
    """A source for ``data``: a pairs folder (has ``noisy1/``), a dataset folder, or an
    object that already is a source (returned as is).

    Raises:
        DatasetError: a folder that is neither layout (or an inconsistent one).
    """
    if not isinstance(data, (str, os.PathLike)):
        return data
    root = Path(data)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (give a dataset or a pairs folder)")
    if (root / "noisy1").is_dir():
        return PairsFolder(root)
    return SimulatedPairs(root, noise, seed=seed)
