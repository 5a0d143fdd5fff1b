"""Benchmark: medseg metrics against MONAI, MedPy and DeepMind ``surface-distance``.

Run: ``.venv/bin/python benchmarks/metrics.py`` (a few minutes; MedPy takes about a minute on
the CT-like pair) or ``--quick`` (small sizes, seconds). Prints one table per pair with the
time of each tool, medseg's speed-up over it, and the largest difference from medseg's
value under the matching definition:

- medseg panel = every overlap metric + HD + HD95 + ASSD + MASD + NSD of one label
  (``binary_metrics``), voxel surfaces, ``hd95_mode="max_directed"``.
- MONAI = ``compute_hausdorff_distance`` (HD and HD95), ``compute_average_surface_distance``
  (symmetric) and ``compute_surface_dice``: four calls, compared with the medseg panel.
- MedPy = ``hd95`` + ``assd`` only, compared with medseg ``hd95_mode="pooled"``.
- DeepMind = ``compute_surface_distances`` + robust HD (100, 95) + average distance +
  surface Dice, compared with medseg ``surface="surfel"``.

Timings are the best of several runs (one run for anything slower than 10 s). Peers that are
not installed are skipped.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.metrics import binary_metrics, percentile_hausdorff, surface_distances

warnings.filterwarnings("ignore")


# ---------------------------------------------------------------- test pairs


def _ellipsoid(mask: np.ndarray, centre_mm, radii_mm, spacing) -> None:
    """Set an axis-aligned ellipsoid to True in place, touching only its bounding box."""
    box, grids = [], []
    for c, r, s, n in zip(centre_mm, radii_mm, spacing, mask.shape, strict=True):
        lo, hi = max(0, int((c - r) / s)), min(n, int((c + r) / s) + 2)
        box.append(slice(lo, hi))
        grids.append((np.arange(lo, hi) * s - c) / r)
    inside = (
        sum(
            g.reshape([-1 if i == k else 1 for k in range(mask.ndim)]) ** 2
            for i, g in enumerate(grids)
        )
        <= 1
    )
    mask[tuple(box)] |= inside


def ct_like_pair(shape=(300, 512, 512), spacing=(5.0, 0.7, 0.7)) -> tuple[np.ndarray, np.ndarray]:
    """A liver-sized organ, a prediction that is shifted, reshaped and has a lobe, plus a
    small false-positive blob 15 cm away (as real predictions often have)."""
    ref, pred = np.zeros(shape, bool), np.zeros(shape, bool)
    centre = np.array(shape) * np.array(spacing) / 2
    _ellipsoid(ref, centre, (90, 110, 130), spacing)
    _ellipsoid(pred, centre + (4, 3, -2.5), (85, 115, 125), spacing)
    _ellipsoid(pred, centre + (30, 60, 80), (40, 35, 40), spacing)
    _ellipsoid(pred, centre + (150, 60, 50), (10, 8, 8), spacing)
    return pred, ref


def blob_pair(shape, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random blobs (a reference and a noisy, shifted prediction)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=min(shape) / 12)
    ref = field > np.quantile(field, 0.8)
    pred = np.roll(ref, 2, axis=-1) ^ (ndimage.binary_dilation(ref) & (rng.random(shape) < 0.15))
    return pred, ref


def pairs(quick: bool) -> dict[str, tuple[np.ndarray, np.ndarray, tuple[float, ...]]]:
    if quick:
        return {
            "2D 128x128": (*blob_pair((128, 128)), (1.0, 1.0)),
            "3D 48^3": (*blob_pair((48, 48, 48)), (1.0, 1.0, 1.0)),
            "CT-like 60x128x128": (*ct_like_pair((60, 128, 128), (5.0, 2.8, 2.8)), (5.0, 2.8, 2.8)),
        }
    return {
        "2D 512x512": (*blob_pair((512, 512)), (1.0, 1.0)),
        "3D 128^3": (*blob_pair((128, 128, 128)), (1.0, 1.0, 1.0)),
        "CT-like 512x512x300 (0.7, 0.7, 5.0) mm": (*ct_like_pair(), (5.0, 0.7, 0.7)),
    }


# ---------------------------------------------------------------- tools


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
        if best > 10:  # slow peers run once
            break
    return best, result


def run_medseg(pred, ref, spacing, *, surface="voxel", threads=None) -> dict[str, float]:
    return binary_metrics(pred, ref, spacing, tolerance_mm=2.0, surface=surface, threads=threads)


def medseg_pooled_hd95(pred, ref, spacing) -> float:
    return percentile_hausdorff(surface_distances(pred, ref, spacing), 95, mode="pooled")


def monai_panel(pred, ref, spacing) -> dict[str, float] | None:
    try:
        import torch
        from monai.metrics import (
            compute_average_surface_distance,
            compute_hausdorff_distance,
            compute_surface_dice,
        )
    except ImportError:
        return None
    p, r = torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None]
    y_pred, y = torch.cat([~p, p], 1).float(), torch.cat([~r, r], 1).float()

    def panel() -> dict[str, float]:
        return {
            "hd": compute_hausdorff_distance(y_pred, y, spacing=spacing).item(),
            "hd95": compute_hausdorff_distance(y_pred, y, spacing=spacing, percentile=95).item(),
            "assd": compute_average_surface_distance(
                y_pred, y, symmetric=True, spacing=spacing
            ).item(),
            "nsd": compute_surface_dice(y_pred, y, [2.0], spacing=spacing).item(),
        }

    return panel


def medpy_panel(pred, ref, spacing):
    try:
        from medpy.metric.binary import assd, hd95
    except ImportError:
        return None
    return lambda: {"hd95": hd95(pred, ref, spacing), "assd": assd(pred, ref, spacing)}


def deepmind_panel(pred, ref, spacing):
    try:
        import surface_distance as sd
    except ImportError:
        return None

    def panel() -> dict[str, float]:
        d = sd.compute_surface_distances(ref, pred, spacing)
        return {
            "hd": sd.compute_robust_hausdorff(d, 100),
            "hd95": sd.compute_robust_hausdorff(d, 95),
            "masd": float(np.mean(sd.compute_average_surface_distance(d))),
            "nsd": sd.compute_surface_dice_at_tolerance(d, 2.0),
        }

    return panel


def _max_diff(theirs: dict[str, float], ours: dict[str, float]) -> float:
    return max(abs(theirs[k] - ours[k]) for k in theirs)


def benchmark_pair(
    name: str, pred, ref, spacing, repeats: int
) -> list[tuple[str, str, float, str, str]]:
    """Rows ``(tool, metrics, seconds, medseg speed-up, max |diff|)`` for one pair.

    The speed-up of a peer is its time over the matching medseg panel's (voxel panel for
    MONAI and MedPy, surfel panel for DeepMind, medseg using every CPU).
    """
    t_ours, ours = _timed(lambda: run_medseg(pred, ref, spacing), repeats)
    t_one, _ = _timed(lambda: run_medseg(pred, ref, spacing, threads=1), repeats)
    t_surfel, surfel = _timed(lambda: run_medseg(pred, ref, spacing, surface="surfel"), repeats)
    pooled = {**ours, "hd95": medseg_pooled_hd95(pred, ref, spacing)}
    rows = [
        ("medseg", "full panel (voxel)", t_ours, "-", "-"),
        ("medseg, 1 thread", "full panel (voxel)", t_one, "-", "-"),
        ("medseg", "full panel (surfel)", t_surfel, "-", "-"),
    ]
    for tool, make, reference, t_ref, what in (
        ("MONAI", monai_panel, ours, t_ours, "HD, HD95, ASSD, NSD"),
        ("MedPy", medpy_panel, pooled, t_ours, "HD95 (pooled), ASSD"),
        ("DeepMind", deepmind_panel, surfel, t_surfel, "HD, HD95, MASD, NSD (surfel)"),
    ):
        panel = make(pred, ref, spacing)
        if panel is None:
            rows.append((tool, "not installed", float("nan"), "-", "-"))
            continue
        seconds, values = _timed(panel, repeats)
        rows.append(
            (tool, what, seconds, f"{seconds / t_ref:.1f}x", f"{_max_diff(values, reference):.1e}")
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tool (best is kept)")
    args = parser.parse_args()
    print(
        "CPUs: "
        f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}"
    )
    for name, (pred, ref, spacing) in pairs(args.quick).items():
        print(
            f"\n### {name}: shape {pred.shape}, spacing {spacing} mm, "
            f"{int(ref.sum())} reference / {int(pred.sum())} predicted voxels\n"
        )
        print("| tool | metrics | time (s) | medseg speed-up | max abs diff vs medseg |")
        print("|---|---|---:|---:|---:|")
        for tool, what, seconds, ratio, diff in benchmark_pair(
            name, pred, ref, spacing, args.repeats
        ):
            print(f"| {tool} | {what} | {seconds:.3f} | {ratio} | {diff} |", flush=True)


if __name__ == "__main__":
    main()
