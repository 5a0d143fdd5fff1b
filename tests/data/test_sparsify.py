"""``medseg data sparsify``: a copy of a dataset annotated on every n-th slice only, and the
``ignore`` label of ``dataset.json`` (one integer, above every other label)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli.data import app as data_app
from medseg.data import check_dataset, load_dataset
from medseg.data.phantoms import PhantomConfig, generate_dataset
from medseg.data.sparsify import annotated_slices, sparsify_dataset, sparsify_label
from medseg.errors import ConfigError, DatasetError, OverwriteError
from medseg.io import read_image

CONFIG = PhantomConfig(fov_mm=(24.0, 32.0, 32.0), spacing=(3.0, 1.0, 1.0))  # (8, 32, 32)


@pytest.fixture(scope="module")
def dense(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = generate_dataset(
        tmp_path_factory.mktemp("dense") / "ds", spatial_dims=3, num_cases=3, config=CONFIG
    )
    (root / "imagesTs").mkdir()
    source = root / "imagesTr" / "phantom_000_0000.nii.gz"
    (root / "imagesTs" / "extra_0000.nii.gz").write_bytes(source.read_bytes())
    return root


def test_sparsify_label_keeps_slices_0_n_2n_and_widens_the_dtype_when_needed() -> None:
    label = np.arange(5, dtype=np.uint8)[:, None].repeat(2, axis=1)  # row k holds k
    sparse = sparsify_label(label, every_nth_slice=2, axis=0, ignore_label=9)
    assert sparse.tolist() == [[0, 0], [9, 9], [2, 2], [9, 9], [4, 4]]
    assert sparse.dtype == np.uint8
    columns = sparsify_label(label, every_nth_slice=3, axis=1, ignore_label=300)
    assert columns.tolist() == [[k, 300] for k in range(5)] and columns.dtype == np.uint16
    assert annotated_slices(5, 1).all()


def test_sparse_copy_has_every_nth_slice_and_the_ignore_label(dense: Path, tmp_path: Path) -> None:
    out = tmp_path / "sparse"
    summary = sparsify_dataset(dense, out, every_nth_slice=3, axis=0)
    # 8 slices per case: 0, 3, 6 annotated
    assert (summary.num_cases, summary.num_test_cases) == (3, 1)
    assert (summary.annotated_slices, summary.total_slices) == (9, 24)
    assert summary.annotated_share == pytest.approx(3 / 8)
    assert summary.ignore_label == 4  # labels 0..3 (organ, lesion, vessel) + 1
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"]["ignore"] == 4 and meta["sparsified"]["every_nth_slice"] == 3
    for case in load_dataset(dense).cases:
        before = read_image(case.label_path).array
        after = read_image(out / "labelsTr" / case.label_path.name)
        assert after.array.shape == before.shape
        np.testing.assert_array_equal(after.array[[0, 3, 6]], before[[0, 3, 6]])
        assert (after.array[[1, 2, 4, 5, 7]] == 4).all()
        image = out / "imagesTr" / case.image_paths[0].name
        assert os.stat(image).st_ino == os.stat(case.image_paths[0]).st_ino  # hard link
    test_image = out / "imagesTs" / "extra_0000.nii.gz"
    assert test_image.read_bytes() == (dense / "imagesTs" / "extra_0000.nii.gz").read_bytes()
    sparse = load_dataset(out)
    assert sparse.ignore_label == 4
    assert sparse.foreground_labels == {"organ": 1, "lesion": 2, "vessel": 3}
    assert check_dataset(sparse, jobs=1, progress=False) == []  # ignore voxels are accepted


def test_existing_output_needs_overwrite_and_never_the_source(dense: Path, tmp_path: Path) -> None:
    out = tmp_path / "sparse"
    sparsify_dataset(dense, out, every_nth_slice=2, copy_images=True)
    with pytest.raises(OverwriteError, match="not empty; pass --overwrite"):
        sparsify_dataset(dense, out, every_nth_slice=4)
    summary = sparsify_dataset(dense, out, every_nth_slice=4, overwrite=True)
    assert summary.annotated_slices == 3 * 2  # slices 0 and 4 of 8
    assert json.loads((out / "dataset.json").read_text())["sparsified"]["every_nth_slice"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["sparse"]  # no temporary folder left
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("keep")
    with pytest.raises(OverwriteError, match="no dataset.json"):
        sparsify_dataset(dense, other, every_nth_slice=2, overwrite=True)
    with pytest.raises(DatasetError, match="outside the source dataset"):
        sparsify_dataset(dense, dense / "sparse", every_nth_slice=2)
    with pytest.raises(ConfigError, match="every_nth_slice must be >= 1"):
        sparsify_dataset(dense, tmp_path / "x", every_nth_slice=0)
    with pytest.raises(ConfigError, match="axis 3 is not an axis"):
        sparsify_dataset(dense, tmp_path / "x", every_nth_slice=2, axis=3)
    assert not (tmp_path / "x").exists()


def test_cli_prints_the_summary_and_refuses_a_full_folder(dense: Path, tmp_path: Path) -> None:
    out = tmp_path / "sparse"
    args = ["sparsify", str(dense), "-o", str(out), "--every-nth-slice", "5", "--axis", "0"]
    result = CliRunner().invoke(data_app, args)
    assert result.exit_code == 0, result.output
    # slices 0 and 5 of 8 annotated: 25 %
    assert "3 case(s)" in result.output and "(6 of 24 slices, 25.0% of voxels)" in result.output
    assert "'ignore' = 4" in result.output
    again = CliRunner().invoke(data_app, args)
    assert again.exit_code == 1 and "--overwrite" in str(again.exception)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"background": 0, "organ": 1, "ignore": 1}, "has the value 1 of label 'organ'"),
        ({"background": 0, "organ": 1, "ignore": [2]}, "must be one integer value"),
        ({"background": 0, "organ": 3, "ignore": 2}, "must be the highest label value"),
        ({"background": 0, "organ": 1, "ignore": 2.5}, "is not an integer value"),
    ],
)
def test_a_bad_ignore_label_is_one_line_naming_dataset_json(
    tmp_path: Path, labels: dict, message: str
) -> None:
    meta = {"channel_names": {"0": "MRI"}, "labels": labels, "file_ending": ".nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'dataset.json'}: ") and "\n" not in str(
        err.value
    )
