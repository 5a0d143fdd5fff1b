"""Benchmark: ``medseg measure`` (volumes, surfaces, connected components) speed.

Run: ``.venv/bin/python benchmarks/measure.py``. Prints one table:

- ``measure_folder`` on the first 100 label maps of the Hippocampus set in
  ``/work/shared/data/hippocampus`` (about 35x50x35 voxels, labels 1 and 2), with 2 worker
  processes and in-process, without and with the image geometry check (``images=``);
  skipped with a message when the data is absent. Target: < 5 s at jobs=2.
- ``measure_label_map`` on one synthetic 300x512x512 mask with 200 cubes of 4-12 voxels
  spread through the volume. Target: < 2 s.

Times are wall-clock seconds, best of ``--repeats`` runs (default 3).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from medseg.evaluation import measure_folder
from medseg.metrics import measure_label_map

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_of  # noqa: E402  (benchmarks/timing.py, beside this script)

HIPPOCAMPUS = Path(os.environ.get("MEDSEG_DATA", "/work/shared/data")) / "hippocampus"


def _hippocampus_rows(repeats: int) -> list[tuple[str, str, float]]:
    labels = HIPPOCAMPUS / "labelsTr"
    if not labels.is_dir():
        print(f"skipped the Hippocampus rows: {labels} not found")
        return []
    files = sorted(labels.glob("*.nii.gz"))[:100]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        masks = Path(tmp) / "labels"
        masks.mkdir()
        for path in files:  # links: the benchmark reads the real files, copies nothing
            (masks / path.name).symlink_to(path)
        out = Path(tmp) / "measures.csv"
        what = f"measure_folder, {len(files)} Hippocampus cases"
        for jobs in (2, 1):
            for images in (None, HIPPOCAMPUS / "imagesTr"):
                seconds = best_of(
                    lambda jobs=jobs, images=images: measure_folder(
                        masks, out, jobs=jobs, images=images, overwrite=True
                    ),
                    repeats,
                )
                check = ", geometry checked" if images else ""
                rows.append((what, f"jobs={jobs}{check}", seconds))
    return rows


def _synthetic_mask(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((300, 512, 512), np.uint8)
    placed = 0
    while placed < 200:  # 200 separate cubes (a cube overlapping another is redrawn)
        half = int(rng.integers(2, 7))
        centre = [int(rng.integers(half + 1, n - half - 1)) for n in mask.shape]
        box = tuple(slice(c - half - 1, c + half + 1) for c in centre)
        if mask[box].any():
            continue
        mask[tuple(slice(c - half, c + half) for c in centre)] = 1
        placed += 1
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = _hippocampus_rows(args.repeats)
    mask = _synthetic_mask()
    spacing = (1.0, 0.7, 0.7)
    result = measure_label_map(mask, spacing)
    assert result.labels[0]["n_components"] == 200, result.labels[0]
    seconds = best_of(lambda: measure_label_map(mask, spacing), args.repeats)
    rows.append(("measure_label_map, 300x512x512, 200 components", "labels=None", seconds))
    seconds = best_of(lambda: measure_label_map(mask, spacing, labels=[1]), args.repeats)
    rows.append(("measure_label_map, 300x512x512, 200 components", "labels=[1]", seconds))
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'setting':<28} {'time (s)':>8}")
    for what, setting, seconds in rows:
        print(f"{what:<{width}}  {setting:<28} {seconds:8.3f}")


if __name__ == "__main__":
    main()
