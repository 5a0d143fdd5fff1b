"""Instance phantoms: exact counts, boxes that match the label maps, touching cells that
connected components merge, the nnU-Net-like layout, determinism and the overwrite rule."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import cc3d
import numpy as np
import pytest

from medseg.data import phantoms_instances
from medseg.data.dataset import load_dataset, read_case
from medseg.data.phantoms_instances import generate_instances_dataset, instance_phantom
from medseg.detect.instances import components_instances, distance_target, watershed_instances
from medseg.errors import ConfigError, OverwriteError
from medseg.metrics.boxes import boxes_from_labels
from medseg.metrics.detection import counting_error


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(phantoms_instances, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_every_cell_is_one_whole_component_and_clumps_touch(spatial_dims: int) -> None:
    merged = 0
    for seed in range(3):
        image, instances, record = instance_phantom(seed, spatial_dims=spatial_dims)
        count = len(record["radii"])
        assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
        assert np.unique(instances).tolist() == list(range(count + 1))
        for i in range(1, count + 1):  # each cell connected, holding its centre
            assert cc3d.connected_components(instances == i).max() == 1
            centre = tuple(int(round(c)) for c in record["centres"][i - 1])
            assert instances[centre] == i
        merged += count - int(components_instances(instances > 0).max())
        # cells are brighter than the background
        assert image[instances > 0].mean() > image[instances == 0].mean() + 0.3
    assert merged >= 3  # touching cells exist: components undercount


def test_dataset_layout_counts_and_boxes(tmp_path: Path) -> None:
    out = generate_instances_dataset(tmp_path / "cells", num_cases=3, seed=1)
    dataset = load_dataset(out)
    assert [c.case_id for c in dataset.cases] == ["cells_000", "cells_001", "cells_002"]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["instance_labels"] is True and meta["labels"] == {"background": 0, "cell": 1}
    records = json.loads((out / "instances.json").read_text())["cases"]
    for case, record in zip(dataset.cases, records, strict=True):
        image, label = read_case(case)
        assert image.array.shape == (1, 96, 96)
        boxes, ids = boxes_from_labels(label.array.astype(np.int64), 2)
        assert record["count"] == len(ids) == int(label.array.max())
        assert record["boxes"] == boxes.tolist() and record["ids"] == ids.tolist()
        # same arrays as the in-memory generator
        expected = instance_phantom(np.random.SeedSequence([1, int(case.case_id[-3:])]))
        np.testing.assert_array_equal(label.array, expected[1])


def test_oracle_watershed_counts_within_five_percent() -> None:
    errors = []
    for seed in range(4):
        _, instances, _ = instance_phantom(seed)
        found = watershed_instances(
            (instances > 0).astype(np.float32), distance_target(instances), min_distance=2
        )
        errors.append(counting_error(found, instances))
    assert np.mean(errors) < 0.05


def test_first_cases_do_not_depend_on_dataset_size(tmp_path: Path) -> None:
    small = generate_instances_dataset(tmp_path / "a", num_cases=1, spatial_dims=3, seed=4)
    large = generate_instances_dataset(tmp_path / "b", num_cases=2, spatial_dims=3, seed=4)
    name = "labelsTr/cells_000.nii.gz"
    assert (small / name).read_bytes() == (large / name).read_bytes()


def test_overwrite_rule(tmp_path: Path) -> None:
    out = generate_instances_dataset(tmp_path / "cells", num_cases=2)
    with pytest.raises(OverwriteError, match="not empty"):
        generate_instances_dataset(out, num_cases=1)
    (out / "notes.txt").write_text("keep me")
    generate_instances_dataset(out, num_cases=1, overwrite=True)
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == ["cells_000.nii.gz"]
    assert (out / "notes.txt").read_text() == "keep me"
    (out / "labelsTr" / "mine.nii.gz").write_bytes(b"")
    with pytest.raises(OverwriteError, match="did not write"):
        generate_instances_dataset(out, num_cases=1, overwrite=True)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="spatial_dims"):
        generate_instances_dataset(tmp_path / "x", spatial_dims=4)
    with pytest.raises(ConfigError, match="num_cases"):
        generate_instances_dataset(tmp_path / "x", num_cases=0)
    with pytest.raises(ConfigError, match="seed"):
        instance_phantom(-1)
