"""Benchmark: watershed instances vs connected components on ISBI 2012 EM cell interiors.

Run: ``.venv/bin/python benchmarks/instances_isbi.py [--cases 30] [--gaps 60] [--seed 0]``
(about 1 CPU-minute for the 30 labelled images; 2 min wall on a shared core).

Ground truth: ``labelsTr`` holds 1 = membrane, 0 = cell interior (see the data set's
PROVENANCE.md); the instances are the 4-connected components of the interior (about 90 to
140 per 512 x 512 image). Inputs, per image, without a trained model:

* **oracle, broken membranes**: the semantic output a good network makes, simulated from
  the ground truth: the interior mask with ``--gaps`` membrane breaks (discs of radius 2 to 3
  pixels cleared at random membrane pixels, which join neighbouring cells), Gaussian noise
  and a blur, thresholded at 0.5. Connected components merge the cells joined by a break;
  the watershed splits them at the narrow neck, with the plain distance transform of the
  foreground (EDT, h-maxima ``h`` in pixels) or with ``distance_target`` of the ground truth
  (the ideal distance head, ``h`` on its 0-1 scale).
* **boundary watershed** (``boundary_watershed_instances``): seeds = h-maxima (h 3 px) of
  the foreground's EDT, flooding of ``1 - prob`` (sigma 1), regions merged below a mean
  boundary of ``m``.
* **classical**: foreground = Gaussian-smoothed intensity (sigma 2) above Otsu's threshold,
  EDT watershed vs components; no ground truth used.

Columns: PQ, SQ, RQ (``panoptic_quality``), F1 at IoU 0.5, AJI, counting error; means over
the images. The trained-model version (U-Net foreground + distance heads) is run by
``medseg detect``'s benchmark.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cc3d
import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu

from medseg.detect.instances import (
    boundary_watershed_instances,
    components_instances,
    distance_target,
    watershed_instances,
)
from medseg.metrics.detection import (
    aggregated_jaccard_index,
    counting_error,
    instance_f1,
    panoptic_quality,
)

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isbi2012_em"
MIN_SIZE = 20  # pixels; both methods drop smaller predicted instances


def broken_membranes(interior: np.ndarray, rng: np.random.Generator, gaps: int) -> np.ndarray:
    """Foreground probability of a 'good network': the interior with membrane breaks, noise
    and blur."""
    membrane = np.argwhere(~interior)
    fg = interior.copy()
    yy, xx = np.indices(interior.shape)
    for y, x in membrane[rng.choice(len(membrane), size=gaps, replace=False)]:
        fg |= (yy - y) ** 2 + (xx - x) ** 2 <= rng.uniform(2.0, 3.0) ** 2
    noisy = fg.astype(np.float32) + rng.normal(0.0, 0.3, fg.shape).astype(np.float32)
    return np.clip(ndimage.gaussian_filter(noisy, 1.0), 0.0, 1.0)


def scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    pq = panoptic_quality(pred, gt)
    return {
        "PQ": pq["PQ"],
        "SQ": pq["SQ"],
        "RQ": pq["RQ"],
        "F1": instance_f1(pred, gt)["f1"],
        "AJI": aggregated_jaccard_index(pred, gt),
        "count_err": counting_error(pred, gt),
        "n": float(pred.max()),
    }


def components(prob: np.ndarray) -> np.ndarray:
    labels = components_instances(prob > 0.5, connectivity=4)
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < MIN_SIZE] = 0
    return labels


def edt_watershed(prob: np.ndarray, h: float) -> np.ndarray:
    edt = ndimage.gaussian_filter(ndimage.distance_transform_edt(prob > 0.5), 1.0)
    return watershed_instances(prob, edt, min_distance=3, h=h, min_size=MIN_SIZE)


def methods(prob: np.ndarray, gt: np.ndarray, prefix: str, oracle: bool) -> dict[str, np.ndarray]:
    out = {f"{prefix} components": components(prob)}
    for h in (2.0, 3.0, 4.0, 5.0):
        out[f"{prefix} watershed EDT h={h:g}"] = edt_watershed(prob, h)
    edt = ndimage.distance_transform_edt(prob > 0.5)
    for merge in (0.6, 0.7):
        out[f"{prefix} boundary ws EDT h=3 m={merge:g}"] = boundary_watershed_instances(
            prob, edt, h=3.0, merge_threshold=merge, min_size=MIN_SIZE
        )
    if oracle:
        target = distance_target(gt)
        for h in (0.2, 0.3):
            out[f"{prefix} watershed target* h={h:g}"] = watershed_instances(
                prob, target, min_distance=3, h=h, min_size=MIN_SIZE
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--gaps", type=int, default=60, help="membrane breaks per image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (ROOT / "labelsTr").is_dir():
        print(f"{ROOT} not found; nothing to do", file=sys.stderr)
        return 0
    rows: dict[str, list[dict[str, float]]] = {}
    n_gt, start = [], time.perf_counter()
    for i in range(args.cases):
        label = np.array(Image.open(ROOT / "labelsTr" / f"isbi_{i:03d}.png"))
        image = np.array(Image.open(ROOT / "imagesTr" / f"isbi_{i:03d}_0000.png"), np.float32)
        gt = cc3d.connected_components(label == 0, connectivity=4).astype(np.int64)
        n_gt.append(int(gt.max()))
        rng = np.random.default_rng([args.seed, i])
        oracle = broken_membranes(label == 0, rng, args.gaps)
        smooth = ndimage.gaussian_filter(image / 255.0, 2.0)
        classical = (smooth > threshold_otsu(smooth)).astype(np.float32)
        predictions = methods(oracle, gt, "oracle", True) | methods(classical, gt, "classic", False)
        for name, pred in predictions.items():
            rows.setdefault(name, []).append(scores(pred, gt))
    seconds = time.perf_counter() - start
    print(
        f"ISBI 2012 EM, {args.cases} images, {np.mean(n_gt):.0f} cells per image on average "
        f"(4-connected interiors); {args.gaps} membrane breaks per oracle image; "
        f"{seconds:.0f} s. * uses the ground-truth distance target."
    )
    keys = ["PQ", "SQ", "RQ", "F1", "AJI", "count_err", "n"]
    print(f"| {'method':34s} | " + " | ".join(f"{k:>9s}" for k in keys) + " |")
    print(f"|{'-' * 36}|" + "|".join("-" * 11 for _ in keys) + "|")
    for name, values in rows.items():
        means = [np.mean([v[k] for v in values]) for k in keys]
        print(f"| {name:34s} | " + " | ".join(f"{m:9.3f}" for m in means) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
