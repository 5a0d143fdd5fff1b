"""Simulated hospitals: split one dataset into sites, each with its scanner's shift.

:func:`split_sites` writes ``SITES/site_<k>/`` (one nnU-Net v2 dataset per site) and
``SITES/sites.json`` (per site: its case count and shift). A site's shift (:class:`SiteShift`,
as scanners and protocols differ) is applied to its images in this order: resampling to
another spacing, a smooth multiplicative bias field, gamma on the intensity range, gain and
offset, Gaussian noise (a share of the image's standard deviation). Label imbalance drops a
share of the site's cases that contain a label; quantity skew draws the sites' case counts
from a Dirichlet distribution. :func:`check_sites` refuses, before round 1 and naming the
site, a site with no cases or other channels or labels than the first.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.case import read_case
from medseg.data.dataset import Dataset, load_dataset
from medseg.data.preprocess import resample_image, resample_label
from medseg.errors import ConfigError, DatasetError, OverwriteError
from medseg.federated.aggregate import FederatedError
from medseg.fileutil import check_writable, write_json_atomic
from medseg.io.formats import write_image
from medseg.io.image import Image

SITES_JSON = "sites.json"


@dataclass(frozen=True)
class SiteShift:
    """One site's acquisition shift (the defaults change nothing).

    Attributes:
        gain, offset: ``x * gain + offset`` on every image channel.
        gamma: ``lo + (hi - lo) * ((x - lo) / (hi - lo)) ** gamma`` on each case's range.
        bias_field: amplitude of a smooth multiplicative field ``exp(a * f)``, ``f`` a random
            linear-plus-quadratic ramp in ``[-1, 1]`` (0: none).
        noise: Gaussian noise with this share of each channel's standard deviation.
        spacing: resample to this spacing in mm (array axis order; None: keep).
        drop_label: a label value whose cases this site loses (label imbalance).
        drop_share: the share of those cases dropped (1: the site has none).
        share: the site's relative share of the cases (quantity skew; used when no
            ``dirichlet`` is given).
    """

    gain: float = 1.0
    offset: float = 0.0
    gamma: float = 1.0
    bias_field: float = 0.0
    noise: float = 0.0
    spacing: tuple[float, ...] | None = None
    drop_label: int | None = None
    drop_share: float = 1.0
    share: float = 1.0

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str) -> SiteShift:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown shift key(s) {unknown}; known: {sorted(names)}")
        shift = cls(**{**data, "spacing": tuple(data["spacing"]) if data.get("spacing") else None})
        if shift.gamma <= 0 or shift.noise < 0 or shift.share <= 0:
            raise ConfigError(f"{source}: gamma and share must be > 0 and noise >= 0: {data}")
        if not 0 <= shift.drop_share <= 1:
            raise ConfigError(f"{source}: drop_share must be in [0, 1], got {shift.drop_share}")
        return shift


def read_shifts(
    path: str | os.PathLike[str] | None, sites: int
) -> tuple[list[SiteShift], float | None]:
    """``{"dirichlet": alpha?, "sites": [{shift}, ...]}`` -> one shift per site and alpha."""
    if path is None:
        return [SiteShift()] * sites, None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read the shift file ({err})") from None
    entries = data.get("sites", []) if isinstance(data, dict) else None
    if not isinstance(entries, list) or len(entries) > sites:
        raise ConfigError(f"{path}: expected {{'sites': [<= {sites} shift objects]}}")
    shifts = [SiteShift.from_dict(e, source=f"{path} site {i}") for i, e in enumerate(entries)]
    alpha = data.get("dirichlet")
    if alpha is not None and not (isinstance(alpha, int | float) and alpha > 0):
        raise ConfigError(f"{path}: dirichlet must be a positive number, got {alpha!r}")
    return shifts + [SiteShift()] * (sites - len(shifts)), alpha


def assign_cases(
    case_ids: list[str],
    sites: int,
    *,
    by: str = "random",
    shares: list[float] | None = None,
    dirichlet: float | None = None,
    seed: int = 0,
) -> list[list[str]]:
    """Case ids per site: by id prefix (the text before the last ``_``: one site per
    prefix) or at random, in proportion to ``shares`` or Dirichlet(``alpha``) draws; every
    random site gets at least 2 cases (one to train, one to validate)."""
    if by == "prefix":
        prefixes = sorted({c.rsplit("_", 1)[0] for c in case_ids})
        return [[c for c in case_ids if c.rsplit("_", 1)[0] == p] for p in prefixes]
    if by != "random":
        raise ConfigError(f"by must be 'random' or 'prefix', got {by!r}")
    if len(case_ids) < 2 * sites:
        raise ConfigError(f"{len(case_ids)} cases cannot make {sites} sites of >= 2 cases")
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([dirichlet] * sites) if dirichlet else np.asarray(shares or [1.0] * sites)
    spare = len(case_ids) - 2 * sites
    counts = 2 + np.floor(p / p.sum() * spare).astype(int)
    counts[np.argmax(p)] += len(case_ids) - counts.sum()
    order = [case_ids[i] for i in rng.permutation(len(case_ids))]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [sorted(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def bias_field(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A smooth field in ``[-1, 1]``: random linear and quadratic ramps along each axis."""
    field = np.zeros(shape)
    for axis, n in enumerate(shape):
        t = np.linspace(-1, 1, n).reshape([-1 if a == axis else 1 for a in range(len(shape))])
        field = field + rng.uniform(-1, 1) * t + rng.uniform(-1, 1) * (t**2 - 0.5)
    return field / max(np.abs(field).max(), 1e-12)


def shift_case(
    image: Image, label: Image, shift: SiteShift, rng: np.random.Generator
) -> tuple[Image, Image]:
    """Apply ``shift`` to one case (``image``: ``(C, *spatial)`` or ``(*spatial)``)."""
    array = image.channels_first().astype(np.float32)
    seg, spacing = label.array, image.spacing
    if shift.spacing is not None and tuple(shift.spacing) != tuple(spacing):
        if len(shift.spacing) != image.spatial_dims:
            raise ConfigError(f"shift spacing {shift.spacing} is not {image.spatial_dims}D")
        shape = tuple(
            max(1, round(n * s / t))
            for n, s, t in zip(image.spatial_shape, spacing, shift.spacing, strict=True)
        )
        array, seg, spacing = (
            resample_image(array, shape),
            resample_label(seg, shape),
            shift.spacing,
        )
    out = []
    for channel in array.astype(np.float64):
        lo, hi = float(channel.min()), float(channel.max())
        if shift.bias_field:
            channel = channel * np.exp(shift.bias_field * bias_field(channel.shape, rng))
        if shift.gamma != 1.0 and hi > lo:
            unit = np.clip((channel - lo) / (hi - lo), 0, None)
            channel = lo + (hi - lo) * unit**shift.gamma
        channel = channel * shift.gain + shift.offset
        if shift.noise:
            channel = channel + rng.normal(0, shift.noise * channel.std(), channel.shape)
        out.append(channel.astype(np.float32))
    grid = Image(np.zeros(seg.shape), spacing, image.origin, image.direction)
    return grid.with_array(np.stack(out)), grid.with_array(seg.astype(np.uint8))


def split_sites(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    sites: int = 3,
    by: str = "random",
    shifts: str | os.PathLike[str] | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Split ``dataset`` into ``sites`` simulated hospitals under ``out`` (module docstring).

    Returns:
        The content of ``out/sites.json``: ``{"dataset", "seed", "by", "sites": [{"name",
        "cases", "shift"}]}`` (counts only, no case ids).

    Raises:
        ConfigError: bad arguments or shift file; too few cases.
        OverwriteError: ``out/sites.json`` exists and ``overwrite`` is False.
    """
    if sites < 2:
        raise ConfigError(f"a federation needs >= 2 sites, got {sites}")
    ds = load_dataset(dataset)
    check_writable(Path(out) / SITES_JSON, overwrite=overwrite)
    site_shifts, alpha = read_shifts(shifts, sites)
    ids = [c.case_id for c in ds.cases]
    groups = assign_cases(
        ids, sites, by=by, shares=[s.share for s in site_shifts], dirichlet=alpha, seed=seed
    )
    if by == "prefix":
        if len(groups) < 2:
            raise ConfigError(f"{dataset}: --by prefix found one case-id prefix; need >= 2")
        site_shifts = (site_shifts + [SiteShift()] * len(groups))[: len(groups)]
    for k in range(len(groups)):  # a site folder is ours: refused or replaced whole
        folder = Path(out) / f"site_{k}"
        if folder.exists() and any(folder.iterdir()):
            check_writable(folder, overwrite=overwrite)
            if not (folder / "dataset.json").is_file():
                raise OverwriteError(f"{folder}: not a site folder (no dataset.json); not replaced")
            shutil.rmtree(folder)
    rng = np.random.default_rng(seed)
    entries = []
    for k, (group, shift) in enumerate(zip(groups, site_shifts, strict=True)):
        name = f"site_{k}"
        count = _write_site(ds, group, shift, Path(out) / name, rng)
        entries.append({"name": name, "cases": count, "shift": asdict(shift)})
    record = json.loads(json.dumps({"dataset": ds.name, "seed": seed, "by": by, "sites": entries}))
    write_json_atomic(Path(out) / SITES_JSON, record)
    return record


def _write_site(
    ds: Dataset, case_ids: list[str], shift: SiteShift, root: Path, rng: np.random.Generator
) -> int:
    """Write one site's cases (shifted) and its ``dataset.json``; returns its case count."""
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    ending, written = ".nii.gz", 0
    for case_id in case_ids:
        image, label = read_case(ds.case(case_id), num_channels=ds.num_channels)
        if label is None:
            continue
        has = shift.drop_label is not None and bool((label.array == shift.drop_label).any())
        if has and rng.random() < shift.drop_share:
            continue
        image, label = shift_case(image, label, shift, rng)
        for c, channel in enumerate(image.array):
            path = root / "imagesTr" / f"{case_id}_{c:04d}{ending}"
            write_image(image.with_array(channel), path, overwrite=True)
        write_image(label, root / "labelsTr" / f"{case_id}{ending}", overwrite=True)
        written += 1
    meta = {
        "name": f"{ds.name}_{root.name}",
        "channel_names": ds.channel_names,
        "labels": ds.labels,
        "numTraining": written,
        "file_ending": ending,
    }
    write_json_atomic(root / "dataset.json", meta)
    return written


def check_sites(sites_dir: str | os.PathLike[str]) -> dict[str, Dataset]:
    """The sites of ``sites_dir`` (``site_*`` folders, or those in ``sites.json``), each
    readable, with cases, and the channels and labels of the first; refused naming the site.

    Raises:
        FederatedError: fewer than 2 sites, a site without cases, other channels or labels.
    """
    root = Path(sites_dir)
    record = root / SITES_JSON
    if record.is_file():
        names = [s["name"] for s in json.loads(record.read_text(encoding="utf-8"))["sites"]]
    else:
        names = sorted(p.name for p in root.glob("site_*") if p.is_dir())
    if len(names) < 2:
        raise FederatedError(f"{root}: needs >= 2 sites (site_* folders), found {len(names)}")
    found: dict[str, Dataset] = {}
    for name in names:
        try:
            ds = load_dataset(root / name)
        except (DatasetError, ConfigError, OSError) as err:
            raise FederatedError(f"site {name}: refused: cannot read its dataset ({err})") from None
        if not ds.cases:
            raise FederatedError(f"site {name}: refused: it has no labelled cases ({root / name})")
        if found:
            first_name, first = next(iter(found.items()))
            if ds.num_channels != first.num_channels:
                raise FederatedError(
                    f"site {name}: refused: {ds.num_channels} channel(s), site {first_name} "
                    f"has {first.num_channels}"
                )
            if ds.labels != first.labels:
                raise FederatedError(
                    f"site {name}: refused: labels {ds.labels}, site {first_name} has "
                    f"{first.labels}"
                )
        found[name] = ds
    return found
