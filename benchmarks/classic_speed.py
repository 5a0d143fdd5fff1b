"""Speed of the classical wrappers against their libraries called directly (issue 19 targets).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/classic_speed.py [--repeats 5]``. Prints one
table: each wrapper's time, the same work done by calling its library directly, the ratio
(target <= 1.2), and the absolute targets: a 128^3 graph cut < 5 s, the forest predicting a
512^2 image < 2 s. Times are the best of ``--repeats`` runs (the least disturbed by other
processes on a shared machine); the load average is printed beside them. The direct calls do
the same work the wrapper promises: Otsu threshold and mask (scikit-image), SimpleITK's
ConnectedThreshold / ConfidenceConnected on the same seeds, scikit-image's
morphological_chan_vese with the same iterations, and PyMaxflow's grid API on the same
Boykov-Jolly graph built with numpy.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_of  # noqa: E402  (benchmarks/timing.py, beside this script)


def _blob(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright ellipsoid in noise, and its mask."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    centre = np.asarray(shape).reshape(-1, *([1] * len(shape))) / 2
    radius = np.asarray(shape).reshape(-1, *([1] * len(shape))) / 4
    mask = (((grid - centre) / radius) ** 2).sum(axis=0) <= 1
    return (mask * 1.0 + rng.normal(0, 0.4, shape)).astype(np.float64), mask


def direct_graph_cut(array, fg, bg, spacing, smoothness=1.0, bins=32):
    """The Boykov-Jolly cut written directly on PyMaxflow's grid API (face neighbours)."""
    import maxflow

    face = [np.diff(array, axis=a).ravel() for a in range(array.ndim)]
    sigma = float(np.std(np.concatenate(face))) or 1.0
    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes(array.shape)
    for axis in range(array.ndim):
        weights = np.zeros(array.shape)
        lead = [slice(None)] * array.ndim
        lead[axis] = slice(0, -1)
        diff = np.diff(array, axis=axis)
        weights[tuple(lead)] = smoothness * np.exp(-(diff**2) / (2 * sigma**2)) / spacing[axis]
        structure = np.zeros((3,) * array.ndim)
        structure[tuple(2 if a == axis else 1 for a in range(array.ndim))] = 1
        graph.add_grid_edges(nodes, weights=weights, structure=structure, symmetric=True)
    low, high = array.min(), array.max()
    index = np.clip(((array - low) * bins / (high - low)).astype(np.int64), 0, bins - 1)

    def cost(seeds):
        counts = np.bincount(index[tuple(seeds.T)], minlength=bins)
        return -np.log((counts + 1.0) / (len(seeds) + bins))[index]

    source, sink = cost(bg), cost(fg)
    hard = 1 + 4 * array.ndim * smoothness / min(spacing) + max(source.max(), sink.max())
    source[tuple(fg.T)], sink[tuple(fg.T)] = hard, 0
    source[tuple(bg.T)], sink[tuple(bg.T)] = 0, hard
    graph.add_grid_tedges(nodes, source, sink)
    graph.maxflow()
    return ~graph.get_grid_segments(nodes)


def _rows(repeats: int) -> list[tuple[str, float, float | None, str]]:
    """(what, wrapper s, direct s, target) per wrapper compared with its library."""
    import maxflow  # noqa: F401 - fail early without PyMaxflow
    import SimpleITK as sitk
    from skimage import filters, segmentation

    from medseg.classic.graph_cut import graph_cut
    from medseg.classic.level_set import level_set
    from medseg.classic.region import region_grow
    from medseg.classic.threshold import otsu
    from medseg.io import Image

    rows = []
    image2d, mask2d = _blob((512, 512))
    volume, mask3d = _blob((96, 96, 96))
    img2d, img3d = Image(image2d, (1.0, 1.0)), Image(volume, (1.0, 1.0, 1.0))

    def skimage_otsu():
        return volume > filters.threshold_otsu(volume)

    rows.append(
        (
            "otsu 96^3 vs skimage threshold_otsu",
            best_of(lambda: otsu(img3d), repeats),
            best_of(skimage_otsu, repeats),
            "1.2x",
        )
    )
    seed = (48, 48, 48)

    def itk_threshold():  # numpy in, numpy out, as the wrapper
        itk = sitk.GetImageFromArray(volume)
        out = sitk.ConnectedThreshold(itk, seedList=[seed[::-1]], lower=0.5, upper=2.0)
        return sitk.GetArrayFromImage(out)

    def itk_confidence():
        itk = sitk.GetImageFromArray(volume)
        out = sitk.ConfidenceConnected(
            itk,
            seedList=[seed[::-1]],
            numberOfIterations=4,
            multiplier=2.5,
            initialNeighborhoodRadius=1,
            replaceValue=1,
        )
        return sitk.GetArrayFromImage(out)

    rows.append(
        (
            "region_grow threshold 96^3 vs sitk.ConnectedThreshold",
            best_of(lambda: region_grow(img3d, [seed], lower=0.5, upper=2.0), repeats),
            best_of(itk_threshold, repeats),
            "1.2x",
        )
    )
    rows.append(
        (
            "region_grow confidence 96^3 vs sitk.ConfidenceConnected",
            best_of(lambda: region_grow(img3d, [seed], mode="confidence"), repeats),
            best_of(itk_confidence, repeats),
            "1.2x",
        )
    )
    box = np.zeros(image2d.shape, bool)
    box[64:448, 64:448] = True

    def skimage_chan_vese():
        return segmentation.morphological_chan_vese(image2d, 50, init_level_set=box, smoothing=1)

    rows.append(
        (
            "level_set chan_vese 512^2 x50 vs skimage morphological_chan_vese",
            best_of(lambda: level_set(img2d, box, iterations=50), repeats),
            best_of(skimage_chan_vese, repeats),
            "1.2x",
        )
    )
    fg = np.argwhere(mask3d)[::500]
    bg = np.argwhere(~mask3d)[::2000]
    rows.append(
        (
            "graph_cut 96^3 vs PyMaxflow grid directly",
            best_of(lambda: graph_cut(img3d, fg, bg), repeats),
            best_of(lambda: direct_graph_cut(volume, fg, bg, (1.0, 1.0, 1.0)), repeats),
            "1.2x",
        )
    )
    return rows


def _absolute_rows(repeats: int) -> list[tuple[str, float, float | None, str]]:
    """The absolute targets: a 128^3 graph cut, the forest predicting a 512^2 image."""
    from medseg.classic.forest import RandomForestSegmenter
    from medseg.classic.graph_cut import graph_cut
    from medseg.io import Image

    rows = []
    image2d, mask2d = _blob((512, 512))
    img2d = Image(image2d, (1.0, 1.0))
    big, big_mask = _blob((128, 128, 128), seed=1)
    fg, bg = np.argwhere(big_mask)[::500], np.argwhere(~big_mask)[::2000]
    rows.append(
        (
            "graph_cut 128^3 (absolute)",
            best_of(lambda: graph_cut(Image(big, (1.0,) * 3), fg, bg), min(repeats, 2)),
            None,
            "< 5 s",
        )
    )
    for trees in (30, 100):
        model = RandomForestSegmenter(trees, max_voxels=20_000).fit(
            [img2d], [Image(mask2d.astype(np.uint8), (1.0, 1.0))]
        )
        rows.append(
            (
                f"forest predict 512^2, {trees} trees (absolute)",
                best_of(lambda model=model: model.predict(img2d), min(repeats, 3)),
                None,
                "< 2 s",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per timing (best is kept)")
    args = parser.parse_args()
    print(
        f"load average before: {tuple(round(v, 2) for v in os.getloadavg())}, {os.cpu_count()} CPUs"
    )
    print("| what | medseg s | direct s | ratio | target |")
    print("|---|---|---|---|---|")
    for what, wrapper, direct, target in _rows(args.repeats) + _absolute_rows(args.repeats):
        ratio = "" if direct is None else f"{wrapper / direct:.2f}"
        direct_text = "" if direct is None else f"{direct:.4f}"
        print(f"| {what} | {wrapper:.4f} | {direct_text} | {ratio} | {target} |", flush=True)
    print(f"load average after: {tuple(round(v, 2) for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
