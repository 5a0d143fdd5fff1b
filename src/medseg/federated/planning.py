"""Federated planning: one plan for all sites from aggregates each site computes locally.

A site never sends a case: :func:`site_summary` computes its fingerprint
(``medseg.data.fingerprint``) where the data is and returns only aggregates: its case count,
spacing quantiles and median shape, class voxel totals, and per channel the foreground
intensity moments (count, sum, sum of squares, min, max) plus a histogram on the edges the
server chose from every site's range (:func:`intensity_edges`). :func:`merge_summaries`
turns them into one :class:`~medseg.data.fingerprint.Fingerprint` (its ``cases`` are
synthetic, ``"<site>:<k>"``, spacings drawn from each site's quantiles), which
``medseg.planning.planner.plan_dataset`` plans like any other.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from medseg.data.case import read_case
from medseg.data.dataset import Dataset
from medseg.data.fingerprint import Fingerprint, compute_fingerprint
from medseg.planning.plan import Plans
from medseg.planning.planner import plan_dataset

QUANTILES = (5, 10, 50, 90, 95)
BINS = 2048


def site_ranges(ds: Dataset) -> list[tuple[float, float]]:
    """Per channel the (min, max) foreground intensity of a site (sent to set the edges)."""
    lo = np.full(ds.num_channels, np.inf)
    hi = np.full(ds.num_channels, -np.inf)
    for values in _foreground(ds):
        for c, v in enumerate(values):
            if v.size:
                lo[c], hi[c] = min(lo[c], float(v.min())), max(hi[c], float(v.max()))
    return [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]


def intensity_edges(ranges: list[list[tuple[float, float]]]) -> list[np.ndarray]:
    """Per channel ``BINS + 1`` histogram edges spanning every site's range."""
    channels = len(ranges[0])
    edges = []
    for c in range(channels):
        lo = min(r[c][0] for r in ranges)
        hi = max(r[c][1] for r in ranges)
        edges.append(np.linspace(lo, hi if hi > lo else lo + 1.0, BINS + 1))
    return edges


def _foreground(ds: Dataset):
    """Each case's finite foreground intensities per channel (never leaves the site)."""
    for case in ds.cases:
        image, label = read_case(case, num_channels=ds.num_channels)
        mask = label.array > 0 if label is not None else np.ones(image.spatial_shape, bool)
        if not mask.any():
            mask = np.ones(image.spatial_shape, bool)
        values = [ch[mask].astype(np.float64) for ch in image.channels_first()]
        yield [v[np.isfinite(v)] for v in values]


def site_summary(ds: Dataset, edges: list[np.ndarray]) -> dict[str, Any]:
    """A site's aggregates (module docstring): numbers and histograms, no case."""
    fp = compute_fingerprint(ds, jobs=1, progress=False)
    spacings = np.array([c["spacing"] for c in fp.cases.values()], dtype=float)
    shapes = np.array([c["shape"] for c in fp.cases.values()], dtype=float)
    counts = [np.zeros(BINS, dtype=np.int64) for _ in edges]
    moments = np.zeros((len(edges), 3))
    for values in _foreground(ds):
        for c, v in enumerate(values):
            counts[c] += np.histogram(v, bins=edges[c])[0]
            moments[c] += (v.size, v.sum(), np.square(v).sum())
    class_voxels: dict[str, int] = {}
    for case in fp.cases.values():
        for k, n in case["class_voxels"].items():
            class_voxels[k] = class_voxels.get(k, 0) + int(n)
    return {
        "num_cases": len(fp.cases),
        "spatial_dims": fp.spatial_dims,
        "channel_names": fp.channel_names,
        "labels": fp.labels,
        "spacing_quantiles": {
            f"p{q:02d}": np.percentile(spacings, q, axis=0).tolist() for q in QUANTILES
        },
        "median_shape": np.median(shapes, axis=0).tolist(),
        "voxels": float(np.prod(shapes, axis=1).sum()),
        "class_voxels": class_voxels,
        "histograms": [h.tolist() for h in counts],
        "moments": moments.tolist(),
        "minmax": [list(r) for r in site_ranges(ds)],
    }


def _histogram_quantile(counts: np.ndarray, edges: np.ndarray, q: float) -> float:
    """The ``q`` quantile (0..1) of a histogram, linear within a bin."""
    cdf = np.concatenate([[0.0], np.cumsum(counts)]) / max(counts.sum(), 1)
    return float(np.interp(q, cdf, edges))


def _intensity(summaries: list[dict[str, Any]], edges: list[np.ndarray]) -> dict:
    out = {}
    for c, e in enumerate(edges):
        counts = np.sum([np.asarray(s["histograms"][c]) for s in summaries], axis=0)
        n, total, squares = np.sum([s["moments"][c] for s in summaries], axis=0)
        mean = total / max(n, 1)
        out[str(c)] = {
            "mean": float(mean),
            "std": float(np.sqrt(max(squares / max(n, 1) - mean**2, 0.0))),
            "median": _histogram_quantile(counts, e, 0.5),
            "min": float(min(s["minmax"][c][0] for s in summaries)),
            "max": float(max(s["minmax"][c][1] for s in summaries)),
            "percentile_00_5": _histogram_quantile(counts, e, 0.005),
            "percentile_99_5": _histogram_quantile(counts, e, 0.995),
        }
    return out


def _pseudo_cases(summaries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``num_cases`` synthetic cases per site: spacings at evenly spaced probabilities of its
    quantiles, its median shape scaled so the voxels add up to its total."""
    cases = {}
    for name, s in summaries.items():
        n = s["num_cases"]
        qs = np.array([s["spacing_quantiles"][f"p{q:02d}"] for q in QUANTILES])
        probs = (np.arange(n) + 0.5) / n * 100
        shape = np.asarray(s["median_shape"], dtype=float)
        scale = (s["voxels"] / n / max(np.prod(shape), 1.0)) ** (1 / len(shape))
        for k, p in enumerate(probs):
            spacing = [float(np.interp(p, QUANTILES, qs[:, d])) for d in range(qs.shape[1])]
            cases[f"{name}:{k}"] = {
                "shape": [max(1, int(round(v * scale))) for v in shape],
                "spacing": spacing,
                "class_voxels": {},
            }
    return cases


def merge_summaries(
    summaries: dict[str, dict[str, Any]], edges: list[np.ndarray], name: str
) -> Fingerprint:
    """One fingerprint from the sites' aggregates (module docstring)."""
    first = next(iter(summaries.values()))
    cases = _pseudo_cases(summaries)
    spacings = np.array([c["spacing"] for c in cases.values()])
    shapes = np.array([c["shape"] for c in cases.values()], dtype=float)
    voxels: dict[str, int] = {}
    for s in summaries.values():
        for k, n in s["class_voxels"].items():
            voxels[k] = voxels.get(k, 0) + n
    total = max(sum(voxels.values()), 1)
    value_to_name = {str(v): k for k, v in first["labels"].items() if isinstance(v, int)}
    median_spacing = np.median(spacings, axis=0)
    return Fingerprint(
        dataset_name=name,
        spatial_dims=first["spatial_dims"],
        channel_names=dict(first["channel_names"]),
        labels=dict(first["labels"]),
        cases=cases,
        median_spacing=median_spacing.tolist(),
        median_shape=np.median(shapes, axis=0).tolist(),
        spacing_percentiles={
            f"p{q:02d}": np.percentile(spacings, q, axis=0).tolist() for q in QUANTILES
        },
        intensity=_intensity(list(summaries.values()), edges),
        class_fractions={value_to_name.get(k, k): n / total for k, n in voxels.items()},
        anisotropy=float(median_spacing.max() / median_spacing.min()),
    )


def federated_plan(
    sites: dict[str, Dataset], *, device: str = "cpu", memory_gb: float = 4.0
) -> tuple[Plans, Fingerprint, dict[str, dict[str, Any]]]:
    """Plan all ``sites`` together: two rounds of aggregates (ranges, then summaries).

    Returns:
        The plans (``dataset_path`` empty: each site sets its own), the merged
        fingerprint, and what each site sent (for the privacy check and the record).
    """
    ranges = {name: site_ranges(ds) for name, ds in sites.items()}
    edges = intensity_edges(list(ranges.values()))
    summaries = {name: site_summary(ds, edges) for name, ds in sites.items()}
    name = next(iter(sites.values())).name.rsplit("_site_", 1)[0]
    fp = merge_summaries(summaries, edges, name)
    plans = plan_dataset(fp, "", device=device, memory_gb=memory_gb)
    return replace(plans, dataset_name=name), fp, summaries
