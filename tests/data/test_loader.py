"""Case store and batch loader: format, memory maps, shapes, workers, reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.data.loader import (
    PatchBatches,
    ThreadedBatches,
    list_cases,
    load_case,
    make_loader,
    write_case,
)
from medseg.data.sampling import PatchSampler
from medseg.errors import DatasetError, OverwriteError
from medseg.transforms import RandomFlip


def make_store(
    folder: Path, *, dims: int = 3, num_cases: int = 3, channels: int = 2, labelled: bool = True
) -> Path:
    rng = np.random.default_rng(0)
    for i in range(num_cases):
        shape = (10 + i, 12, 14)[:dims] if dims == 3 else (20 + i, 24)
        image = rng.normal(size=(channels, *shape)).astype(np.float32)
        label = np.zeros(shape, dtype=np.uint8)
        label[(slice(2, 5),) * dims] = 1
        label[(slice(6, 7),) * dims] = 2
        write_case(
            folder, f"case_{i:03d}", image, label if labelled else None, properties={"index": i}
        )
    return folder


def test_written_case_follows_the_store_format(tmp_path: Path) -> None:
    make_store(tmp_path, num_cases=1)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["case_000.json", "case_000.npy", "case_000_seg.npy"]
    image, label = np.load(tmp_path / "case_000.npy"), np.load(tmp_path / "case_000_seg.npy")
    assert image.dtype == np.float32 and image.shape == (2, 10, 12, 14)
    assert label.dtype == np.int8 and label.shape == (1, 10, 12, 14)
    props = json.loads((tmp_path / "case_000.json").read_text(encoding="utf-8"))
    assert props["index"] == 0 and sorted(props["class_locations"]) == ["1", "2"]
    assert len(props["class_locations"]["2"]) == 1


def test_labels_beyond_int8_are_stored_as_int16(tmp_path: Path) -> None:
    write_case(tmp_path, "big", np.zeros((1, 4, 4)), np.full((4, 4), 300))
    assert np.load(tmp_path / "big_seg.npy").dtype == np.int16


def test_loaded_case_is_memory_mapped(tmp_path: Path) -> None:
    make_store(tmp_path, num_cases=1)
    case = load_case(tmp_path, "case_000")
    assert isinstance(case.image, np.memmap) and isinstance(case.label, np.memmap)
    assert not case.image.flags.writeable
    assert case.locations[2].tolist() == [[6, 6, 6]]


def test_class_locations_are_computed_when_the_json_lacks_them(tmp_path: Path) -> None:
    make_store(tmp_path, num_cases=1)
    (tmp_path / "case_000.json").write_text("{}", encoding="utf-8")
    assert load_case(tmp_path, "case_000").locations[2].tolist() == [[6, 6, 6]]


def test_existing_case_is_not_overwritten_without_permission(tmp_path: Path) -> None:
    make_store(tmp_path, num_cases=1)
    with pytest.raises(OverwriteError):
        write_case(tmp_path, "case_000", np.zeros((1, 4, 4)))
    write_case(tmp_path, "case_000", np.zeros((1, 4, 4)), overwrite=True)
    assert load_case(tmp_path, "case_000").image.shape == (1, 4, 4)


def test_missing_or_empty_store_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        list_cases(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no cases"):
        make_loader(tmp_path, patch_size=(4, 4), batch_size=2)
    with pytest.raises(DatasetError, match="missing"):
        load_case(tmp_path, "ghost")


@pytest.mark.parametrize("dims", [2, 3])
def test_batches_have_the_planned_shapes_and_dtypes(tmp_path: Path, dims: int) -> None:
    make_store(tmp_path, dims=dims)
    patch = (8, 8, 8) if dims == 3 else (16, 16)
    loader = make_loader(tmp_path, patch_size=patch, batch_size=3, num_batches=4, num_workers=0)
    batches = list(loader)
    assert len(batches) == 4
    for image, label in batches:
        assert image.shape == (3, 2, *patch) and image.dtype == torch.float32
        assert label.shape == (3, 1, *patch) and label.dtype == torch.int64
        assert set(label.unique().tolist()) <= {0, 1, 2}


def test_batch_content_depends_only_on_seed_and_index(tmp_path: Path) -> None:
    make_store(tmp_path)
    options = dict(patch_size=(8, 8, 8), batch_size=2, num_batches=6, seed=5)
    serial = list(make_loader(tmp_path, num_workers=0, **options))
    threaded = list(make_loader(tmp_path, num_workers=2, backend="thread", **options))
    other_seed = next(iter(make_loader(tmp_path, num_workers=0, **{**options, "seed": 6})))
    assert len(threaded) == 6
    for (a, la), (b, lb) in zip(serial, threaded, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(serial[0][0], other_seed[0])


def test_process_workers_produce_the_same_augmented_batches_in_order(tmp_path: Path) -> None:
    make_store(tmp_path)
    options = dict(
        patch_size=(8, 8, 8), batch_size=2, num_batches=4, seed=1, transform=RandomFlip(p=0.5)
    )
    serial = list(make_loader(tmp_path, num_workers=0, **options))
    workers = list(make_loader(tmp_path, num_workers=2, backend="process", **options))
    assert len(workers) == 4
    assert all(
        torch.equal(a, b) and torch.equal(la, lb)
        for (a, la), (b, lb) in zip(serial, workers, strict=True)
    )


def test_transform_runs_in_the_workers_and_is_repeatable(tmp_path: Path) -> None:
    make_store(tmp_path)
    options = dict(patch_size=(8, 8, 8), batch_size=4, num_batches=2, seed=0)
    plain = list(make_loader(tmp_path, num_workers=0, **options))
    flipped = list(make_loader(tmp_path, num_workers=0, transform=RandomFlip(p=1.0), **options))
    again = list(
        make_loader(
            tmp_path, num_workers=2, backend="thread", transform=RandomFlip(p=1.0), **options
        )
    )
    assert torch.equal(flipped[0][0], plain[0][0].flip([2, 3, 4]))
    assert torch.equal(flipped[1][1], again[1][1])


def test_foreground_oversampling_reaches_the_loader(tmp_path: Path) -> None:
    make_store(tmp_path)
    loader = make_loader(
        tmp_path,
        patch_size=(4, 4, 4),
        batch_size=4,
        num_batches=30,
        num_workers=0,
        oversample_foreground=1.0,
        keep_inside=False,
    )
    with_foreground = [bool((label[b] > 0).any()) for _, label in loader for b in range(4)]
    assert all(with_foreground)


def test_unlabelled_store_gives_label_none(tmp_path: Path) -> None:
    make_store(tmp_path, labelled=False)
    image, label = next(
        iter(make_loader(tmp_path, patch_size=(8, 8, 8), batch_size=2, num_workers=0))
    )
    assert image.shape == (2, 2, 8, 8, 8) and label is None


def test_endless_threaded_loader_stops_cleanly_when_abandoned(tmp_path: Path) -> None:
    make_store(tmp_path)
    dataset = PatchBatches(tmp_path, PatchSampler((8, 8, 8)), 2)
    iterator = iter(ThreadedBatches(dataset, num_workers=2, prefetch=1))
    first = [next(iterator) for _ in range(5)]
    iterator.close()
    assert len(first) == 5 and dataset.num_batches is None


def test_case_subset_restricts_the_cases_drawn(tmp_path: Path) -> None:
    make_store(tmp_path)
    dataset = PatchBatches(
        tmp_path, PatchSampler((8, 8, 8)), 2, case_ids=["case_002"], num_batches=1
    )
    assert len(dataset.cases) == 1 and dataset.cases[0].case_id == "case_002"
    assert len(list(dataset)) == 1
