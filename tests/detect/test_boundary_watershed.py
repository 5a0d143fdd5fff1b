"""The boundary watershed splits cells that a gap in their membrane joins (components merge
them) and merges the pieces of a cell cut by a faint spurious membrane (components split
them); the tuned method is applied from ``watershed.json``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.detect.config import DetectConfig
from medseg.detect.instances import (
    boundary_watershed_instances,
    components_instances,
    merge_regions,
)
from medseg.detect.tune import TUNED_FILE, apply_tuned, label_instances, tune_on_maps
from medseg.errors import ConfigError
from medseg.metrics.detection import panoptic_quality


def _two_cells_with_a_leaky_membrane() -> tuple[np.ndarray, np.ndarray]:
    """Foreground probability of two 18 x 13 cells separated by a 3-voxel membrane (0.1)
    with a 2-voxel gap (0.6), and the true instance map (membrane = background)."""
    prob = np.full((20, 31), 0.9)
    prob[:, 14:17] = 0.1
    prob[9:11, 14:17] = 0.6  # the gap: one connected component at threshold 0.5
    prob[0, :] = prob[-1, :] = prob[:, 0] = prob[:, -1] = 0.05  # outer membrane
    truth = np.zeros(prob.shape, dtype=np.int32)
    truth[1:-1, 1:14], truth[1:-1, 17:-1] = 1, 2
    return prob, truth


def test_boundary_watershed_splits_what_components_merge() -> None:
    prob, truth = _two_cells_with_a_leaky_membrane()
    assert components_instances(prob > 0.5, connectivity=4).max() == 1
    labels = boundary_watershed_instances(prob, sigma=1.0, h=0.1, merge_threshold=0.5)
    assert labels.max() == 2 and labels.dtype == np.int32
    assert labels[10, 5] != labels[10, 25]
    assert panoptic_quality(labels, truth)["PQ"] > 0.95
    assert panoptic_quality(components_instances(prob > 0.5), truth)["PQ"] == 0.0
    # merging every contact (threshold 1): one instance again
    assert boundary_watershed_instances(prob, sigma=1.0, h=0.1, merge_threshold=1.0).max() == 1


def test_a_faint_inner_membrane_is_merged_away() -> None:
    prob = np.full((16, 31), 0.9)
    prob[:, 15] = 0.45  # a faint line (an organelle's rim) cuts the cell in two components
    prob[0, :] = prob[-1, :] = prob[:, 0] = prob[:, -1] = 0.05
    assert components_instances(prob > 0.5, connectivity=4).max() == 2
    merged = boundary_watershed_instances(prob, sigma=0.0, h=0.1, merge_threshold=0.6)
    assert merged.max() == 1 and (merged > 0).sum() == (prob > 0.5).sum()
    kept = boundary_watershed_instances(prob, sigma=0.0, h=0.1, merge_threshold=0.5)
    assert kept.max() == 2  # the same line counts as a membrane below its mean 0.55


def test_boundary_watershed_seeds_from_the_distance_in_3d_and_drops_small() -> None:
    zz, yy, xx = np.mgrid[:12, :12, :24]
    balls = [((zz - 6) ** 2 + (yy - 6) ** 2 + (xx - c) ** 2) <= 25 for c in (6, 15)]
    prob = np.where(balls[0] | balls[1], 0.9, 0.05)
    distance = np.maximum(
        *[
            np.where(b, 5.0 - np.sqrt((xx - c) ** 2 + (yy - 6) ** 2 + (zz - 6) ** 2), 0)
            for b, c in zip(balls, (6, 15), strict=True)
        ]
    )
    prob[0, 0, 0] = 0.9  # a one-voxel speck
    labels = boundary_watershed_instances(prob, distance, h=0.5, merge_threshold=0.5, min_size=5)
    assert labels.max() == 2 and labels[0, 0, 0] == 0
    assert not boundary_watershed_instances(np.zeros((4, 4)), sigma=0).any()


def test_merge_regions_is_average_linkage() -> None:
    # 1|2 contact 0.2, 2|3 contact 0.9: only 1 and 2 merge; pooled contacts decide later
    labels = np.array([[1, 1, 2, 2, 3, 3]])
    boundary = np.array([[0.0, 0.2, 0.2, 0.9, 0.9, 0.0]])
    assert merge_regions(labels, boundary, 0.5).tolist() == [[1, 1, 1, 1, 3, 3]]
    assert merge_regions(labels, boundary, 1.0).tolist() == [[1, 1, 1, 1, 1, 1]]
    assert merge_regions(labels, boundary, 0.0).tolist() == labels.tolist()
    # region 3 touches 1 (mean 0.4) and 2 (mean 0.8); after 1 and 2 merge at 0.1 the pooled
    # contact of {1, 2} with 3 is (0.4 + 0.8) / 2 = 0.6: merged at 0.65, not at 0.55
    labels = np.array([[1, 2], [3, 3]])
    boundary = np.array([[0.1, 0.1], [0.4, 0.8]])
    assert merge_regions(labels, boundary, 0.55).tolist() == [[1, 1], [3, 3]]
    assert merge_regions(labels, boundary, 0.65).tolist() == [[1, 1], [1, 1]]
    assert merge_regions(np.zeros((3, 3), dtype=int), np.zeros((3, 3)), 0.5).sum() == 0


def test_boundary_watershed_bad_options_are_refused() -> None:
    prob = np.zeros((4, 4))
    with pytest.raises(ConfigError, match="merge_threshold"):
        boundary_watershed_instances(prob, merge_threshold=1.5)
    with pytest.raises(ConfigError, match="sigma"):
        boundary_watershed_instances(prob, sigma=-1)
    with pytest.raises(ConfigError, match="h must"):
        boundary_watershed_instances(prob, h=-0.1)
    with pytest.raises(ConfigError, match="instance_method"):
        DetectConfig("ds", head="watershed", instance_method="magic")
    with pytest.raises(ConfigError, match="merge_threshold"):
        DetectConfig("ds", head="watershed", merge_threshold=2.0)


def test_tuning_picks_the_boundary_method_where_it_wins(tmp_path: Path) -> None:
    prob, truth = _two_cells_with_a_leaky_membrane()
    distance = (prob > 0.5).astype(float)  # flat over the component: no split by distance
    config = DetectConfig("ds", head="watershed", instance_method="auto", min_size=5)
    best = tune_on_maps(config, [(prob, distance)], [truth], tmp_path)
    assert best["method"] == "boundary" and best["val_pq"] > 0.95
    assert set(best["methods"]) == {"distance", "boundary"}
    assert best["methods"]["distance"]["val_pq"] < best["val_pq"]
    tuned = apply_tuned(config, tmp_path)
    assert tuned.instance_method == "boundary" and tuned.merge_threshold == best["merge_threshold"]
    assert label_instances(tuned, prob, distance).max() == 2
    # an older file without a method is the distance method; an unknown method is refused
    (tmp_path / TUNED_FILE).write_text('{"h": 0.5, "min_distance": 6}')
    assert apply_tuned(config, tmp_path).instance_method == "distance"
    (tmp_path / TUNED_FILE).write_text('{"method": "magic", "h": 0.5, "min_distance": 6}')
    with pytest.raises(ConfigError, match="method"):
        apply_tuned(config, tmp_path)
