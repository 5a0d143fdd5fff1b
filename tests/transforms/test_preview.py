"""Augmentation previews: the figure function and ``medseg augment preview``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from medseg.cli.augment import app
from medseg.errors import OverwriteError
from medseg.io import Image, write_image
from medseg.transforms import nnunet_default
from medseg.transforms.preview import augment_pair, preview_augmentations


def pairs(dims: int, n: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    shape = (24, 24) if dims == 2 else (8, 24, 24)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        label = np.zeros(shape, dtype=np.uint8)
        label[..., 6:18, 8:16] = 1
        out.append((rng.normal(size=(2, *shape)).astype(np.float32) + label, label))
    return out


@pytest.mark.parametrize("dims", [2, 3])
def test_preview_writes_one_row_per_case_and_one_column_per_version(
    tmp_path: Path, dims: int
) -> None:
    small = preview_augmentations(
        pairs(dims, 1), nnunet_default(dims, 1.0), tmp_path / "a.png", n_augmented=2
    )
    large = preview_augmentations(
        pairs(dims, 3), nnunet_default(dims, 1.0), tmp_path / "b.png", n_augmented=4
    )
    with PILImage.open(small) as a, PILImage.open(large) as b:
        assert b.width > a.width and b.height > a.height


def test_augmented_versions_differ_and_keep_label_values() -> None:
    image, label = pairs(2, 1)[0]
    versions = augment_pair(image, label, nnunet_default(2, 1.0), n_augmented=3, seed=0)
    assert len(versions) == 3
    assert not np.array_equal(versions[0][0], versions[1][0])
    assert all(set(np.unique(lab)) <= {0, 1} for _, lab in versions)


def test_preview_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    preview_augmentations(pairs(2, 1), nnunet_default(2), out, n_augmented=1)
    with pytest.raises(OverwriteError, match="--overwrite"):
        preview_augmentations(pairs(2, 1), nnunet_default(2), out, n_augmented=1)
    assert (
        preview_augmentations(pairs(2, 1), nnunet_default(2), out, n_augmented=1, overwrite=True)
        == out
    )


def test_preview_rejects_a_label_of_another_shape(tmp_path: Path) -> None:
    image, label = pairs(2, 1)[0]
    with pytest.raises(ValueError, match="does not match label"):
        preview_augmentations([(image, label[:-1])], nnunet_default(2), tmp_path / "x.png")


def write_tiny_dataset(root: Path, *, num_cases: int = 2) -> Path:
    """nnU-Net layout: imagesTr/case_000_0000.nii.gz, labelsTr/case_000.nii.gz, dataset.json."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(num_cases):
        label = np.zeros((6, 16, 16), dtype=np.uint8)
        label[2:5, 4:12, 5:11] = 1
        image = np.random.default_rng(i).normal(size=label.shape).astype(np.float32) + label
        write_image(Image(image, (2.0, 1.0, 1.0)), root / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
        write_image(Image(label, (2.0, 1.0, 1.0)), root / "labelsTr" / f"case_{i:03d}.nii.gz")
    meta = {
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "fg": 1},
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def test_cli_preview_writes_the_png_of_a_dataset(tmp_path: Path) -> None:
    pytest.importorskip("medseg.data.dataset", reason="load_dataset is not there yet")
    dataset = write_tiny_dataset(tmp_path / "DATASET")
    out = tmp_path / "out.png"
    result = CliRunner().invoke(
        app, ["preview", str(dataset), "-o", str(out), "--augmented", "2", "--p", "1.0"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    with PILImage.open(out) as png:
        assert png.width > png.height > 0  # 2 cases x 3 columns
