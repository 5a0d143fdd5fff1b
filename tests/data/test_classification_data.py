"""Classification / regression data: folder, CSV and MedMNIST sources, weights, folds, phantoms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.data.classification import (
    ClassificationSet,
    available_splits,
    balanced_sample_weights,
    class_weights,
    load_classification,
    stratified_folds,
)
from medseg.data.phantoms_classification import (
    classification_phantom_arrays,
    make_classification_phantoms,
)
from medseg.errors import ConfigError, DatasetError, OverwriteError
from medseg.io import Image, read_image, write_image


def _png(path: Path, value: int, shape: tuple[int, ...] = (6, 5), channels: int = 0) -> Path:
    array = np.full(shape, value, dtype=np.uint8)
    array[0, 0] = 255  # not constant, so z-scoring is defined
    if channels:
        array = np.stack([array] * channels)
    write_image(Image(array, (1.0, 1.0)), path)
    return path


def _nii(path: Path, value: float, shape: tuple[int, ...] = (3, 4, 5)) -> Path:
    array = np.full(shape, value, dtype=np.float32)
    write_image(Image(array, (2.0, 1.0, 1.0)), path)
    return path


def _csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- the container


def test_container_properties_and_subset() -> None:
    data = ClassificationSet(
        np.zeros((5, 2, 3, 4, 6)),
        np.array([2, 0, 2, 2, 0]),
        ["a", "b", "c"],
        list("vwxyz"),
        folds=np.arange(5),
    )
    assert data.images.dtype == np.float32 and data.labels.dtype == np.int64
    assert (data.spatial_dims, data.num_channels, data.num_classes, len(data)) == (3, 2, 3, 5)
    assert data.class_counts().tolist() == [2, 0, 3]
    part = data.subset([4, 0])
    assert (
        part.ids == ["z", "v"] and part.labels.tolist() == [0, 2] and part.folds.tolist() == [4, 0]
    )
    assert data.subset(data.labels == 2).ids == ["v", "x", "y"]
    reg = ClassificationSet(
        np.zeros((2, 1, 4, 4)), np.array([0.5, 1.5]), [], ["a", "b"], task="regression"
    )
    assert reg.labels.shape == (2, 1) and reg.labels.dtype == np.float32 and reg.num_classes == 0
    with pytest.raises(ConfigError, match="regression"):
        reg.class_counts()
    with pytest.raises(DatasetError, match="lengths differ"):
        ClassificationSet(np.zeros((2, 1, 4, 4)), np.array([0, 1, 1]), ["a", "b"], ["a", "b"])
    with pytest.raises(DatasetError, match="does not fit"):
        ClassificationSet(np.zeros((2, 1, 4, 4)), np.array([0, 2]), ["a", "b"], ["a", "b"])


# ---------------------------------------------------------------- folder of class folders


def test_folder_with_splits_round_trips(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _png(root / "train" / "pneumonia" / "p1.png", 10)
    _png(root / "train" / "normal" / "n1.png", 20)
    _png(root / "train" / "normal" / "n2.png", 30)
    _png(root / "test" / "normal" / "n3.png", 40)  # test has no 'pneumonia' folder
    (root / "train" / "normal" / "notes.txt").write_text("skipped", encoding="utf-8")
    assert available_splits(root) == ["train", "test"]
    train = load_classification(root, "train")
    assert train.class_names == ["normal", "pneumonia"]
    assert train.ids == ["train/normal/n1.png", "train/normal/n2.png", "train/pneumonia/p1.png"]
    assert train.labels.tolist() == [0, 0, 1]
    assert train.images.shape == (3, 1, 6, 5) and train.images.dtype == np.float32
    assert train.images[0, 0, 1, 1] == pytest.approx(20 / 255) and train.images.max() == 1.0
    assert train.folds is None and train.task == "classification"
    test = load_classification(root, "test")
    assert test.class_names == ["normal", "pneumonia"] and test.labels.tolist() == [0]
    raw = load_classification(root, "train", normalize=None)
    assert raw.images[0, 0, 1, 1] == 20.0
    z = load_classification(root, "train", normalize="zscore")
    assert np.allclose(z.images.mean(axis=(2, 3)), 0, atol=1e-5)
    assert np.allclose(z.images.std(axis=(2, 3)), 1, atol=1e-4)


def test_flat_folder_is_train_split_and_rgb_has_three_channels(tmp_path: Path) -> None:
    for cls in ("b", "a"):
        _png(tmp_path / cls / f"{cls}.png", 50, channels=3)
    assert available_splits(tmp_path) == ["train"]
    data = load_classification(tmp_path)
    assert data.class_names == ["a", "b"] and data.images.shape == (2, 3, 6, 5)
    with pytest.raises(DatasetError, match=r"no split 'val'; available: train"):
        load_classification(tmp_path, "val")


def test_folder_errors_name_the_file(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "1.png", 1)
    bad = _png(tmp_path / "a" / "2.png", 1, shape=(7, 5))
    with pytest.raises(
        DatasetError, match=r"2\.png: image size \(7, 5\) differs from \(6, 5\) of .*1\.png"
    ):
        load_classification(tmp_path)
    bad.unlink()
    _png(tmp_path / "a" / "3.png", 1, channels=3)
    with pytest.raises(DatasetError, match=r"3\.png: 3 channel\(s\) but .*1\.png has 1"):
        load_classification(tmp_path)
    (tmp_path / "a" / "3.png").unlink()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: class folder 'empty' holds no images"):
        load_classification(tmp_path)
    with pytest.raises(ConfigError, match="CSV for regression"):
        load_classification(tmp_path, task="regression")
    with pytest.raises(DatasetError, match="no class folders"):
        load_classification(tmp_path / "empty")


# ---------------------------------------------------------------- CSV


def test_csv_integer_labels_folds_and_splits(tmp_path: Path) -> None:
    for i in range(4):
        _png(tmp_path / "img" / f"{i}.png", 10 * i)
    csv = _csv(
        tmp_path / "labels.csv",
        """
Path,label,fold,split
img/0.png,0,0,train
img/1.png,2,1,train

img/2.png,1.0,0,test
img/3.png,0,1,train
""",
    )
    assert available_splits(csv) == ["train", "test"]
    data = load_classification(csv)
    assert data.class_names == ["0", "1", "2"]  # from every row, so indices agree across splits
    assert data.labels.tolist() == [0, 2, 0] and data.folds.tolist() == [0, 1, 1]
    assert data.ids == ["img/0.png", "img/1.png", "img/3.png"]
    assert data.images[1, 0, 1, 1] == pytest.approx(10 / 255)
    test = load_classification(csv, "test")
    assert test.labels.tolist() == [1] and test.class_names == ["0", "1", "2"]
    with pytest.raises(DatasetError, match=r"labels\.csv: no split 'val'; available: train, test"):
        load_classification(csv, "val")


def test_csv_class_name_labels_and_absolute_paths(tmp_path: Path) -> None:
    a = _png(tmp_path / "a.png", 1)
    b = _png(tmp_path / "b.png", 2)
    (tmp_path / "sub").mkdir()
    csv = _csv(tmp_path / "sub" / "l.csv", f"path,label\n{a},malignant\n{b},benign\n")
    data = load_classification(csv)
    assert data.class_names == ["benign", "malignant"] and data.labels.tolist() == [1, 0]
    assert data.folds is None and available_splits(csv) == ["train"]


def test_csv_3d_nifti_keeps_float_intensities(tmp_path: Path) -> None:
    _nii(tmp_path / "v" / "a.nii.gz", -1000.0)
    _nii(tmp_path / "v" / "b.nii.gz", 250.5)
    csv = _csv(tmp_path / "x.csv", "path,label\nv/a.nii.gz,1\nv/b.nii.gz,0\n")
    data = load_classification(csv)
    assert data.images.shape == (2, 1, 3, 4, 5) and data.spatial_dims == 3
    assert data.images[0].max() == -1000.0 and data.images[1].min() == 250.5
    assert data.labels.tolist() == [1, 0]


def test_csv_regression(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    multi = load_classification(
        _csv(tmp_path / "m.csv", "path,target_age,target_bmi\na.png,61.5,22\nb.png,40,30.5\n")
    )
    assert multi.task == "regression" and multi.class_names == [] and multi.num_classes == 0
    assert multi.labels.dtype == np.float32 and multi.labels.tolist() == [
        [61.5, 22.0],
        [40.0, 30.5],
    ]
    single = load_classification(
        _csv(tmp_path / "s.csv", "path,label\na.png,1.5\nb.png,-2\n"), task="regression"
    )
    assert single.labels.shape == (2, 1) and single.labels[:, 0].tolist() == [1.5, -2.0]
    with pytest.raises(
        DatasetError, match=r"r\.csv: line 3: target_age 'old' is not a finite number"
    ):
        load_classification(_csv(tmp_path / "r.csv", "path,target_age\na.png,3\nb.png,old\n"))


def test_csv_errors_name_the_file_and_line(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    with pytest.raises(
        DatasetError, match=r"f\.csv: line 3: label '1\.5' is not an integer class index"
    ):
        load_classification(_csv(tmp_path / "f.csv", "path,label\na.png,0\nb.png,1.5\n"))
    with pytest.raises(DatasetError, match=r"h\.csv: no 'path' column"):
        load_classification(_csv(tmp_path / "h.csv", "a.png,0\nb.png,1\n"))
    with pytest.raises(DatasetError, match=r"n\.csv: no 'label' column"):
        load_classification(_csv(tmp_path / "n.csv", "path,fold\na.png,0\n"))
    with pytest.raises(DatasetError, match=r"m\.csv: line 3: image 'missing\.png' does not exist"):
        load_classification(_csv(tmp_path / "m.csv", "path,label\na.png,0\nmissing.png,1\n"))
    with pytest.raises(DatasetError, match=r"k\.csv: line 2: fold 'x' is not an integer"):
        load_classification(_csv(tmp_path / "k.csv", "path,label,fold\na.png,0,x\n"))
    with pytest.raises(
        DatasetError, match=r"s\.csv: line 2: split 'training' is not one of train, val, test"
    ):
        load_classification(_csv(tmp_path / "s.csv", "path,label,split\na.png,0,training\n"))
    with pytest.raises(DatasetError, match=r"c\.csv: line 3 has 2 cells, the header has 3"):
        load_classification(_csv(tmp_path / "c.csv", "path,label,fold\na.png,0,1\nb.png,1\n"))


def test_csv_is_read_as_utf8_with_or_without_bom_and_latin1_is_refused(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    text = "path,label\na.png,Ödem\nb.png,Ärger\n"
    (tmp_path / "plain.csv").write_bytes(text.encode("utf-8"))
    (tmp_path / "bom.csv").write_bytes(text.encode("utf-8-sig"))
    for name in ("plain.csv", "bom.csv"):
        data = load_classification(tmp_path / name)
        assert data.class_names == ["Ärger", "Ödem"] and data.labels.tolist() == [1, 0]
    (tmp_path / "latin1.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin1\.csv: cannot read CSV"):
        load_classification(tmp_path / "latin1.csv")


def test_nan_voxels_are_rejected(tmp_path: Path) -> None:
    _nii(tmp_path / "ok.nii.gz", 1.0)
    bad = np.ones((3, 4, 5), dtype=np.float32)
    bad[1, 2, 3] = np.nan
    write_image(Image(bad, (1.0, 1.0, 1.0)), tmp_path / "bad.nii.gz")
    assert np.isnan(read_image(tmp_path / "bad.nii.gz").array).any()
    csv = _csv(tmp_path / "n.csv", "path,label\nok.nii.gz,0\nbad.nii.gz,1\n")
    with pytest.raises(DatasetError, match=r"bad\.nii\.gz: image holds NaN voxels"):
        load_classification(csv)


# ---------------------------------------------------------------- MedMNIST .npz


def _medmnist(
    path: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray], **extra
) -> Path:
    arrays = {f"{s}_images": a for s, a in images.items()} | {
        f"{s}_labels": a for s, a in labels.items()
    }
    np.savez(path, **arrays, **extra)
    return path


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((4, 5, 6), (1, 5, 6)), ((4, 5, 6, 3), (3, 5, 6)), ((4, 3, 5, 6), (1, 3, 5, 6))],
    ids=["2d-grey", "2d-rgb", "3d"],
)
def test_npz_layouts(tmp_path: Path, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    path = _medmnist(
        tmp_path / "m.npz",
        {"train": images, "test": images[:2]},
        {"train": np.array([[0], [1], [1], [0]], np.uint8), "test": np.array([[3], [0]], np.uint8)},
    )
    assert available_splits(path) == ["train", "test"]
    data = load_classification(path, "train")
    assert data.images.shape == (4, *expected) and data.images.dtype == np.float32
    moved = np.moveaxis(images, -1, 1) if shape[-1] == 3 else images[:, None]
    np.testing.assert_allclose(data.images, moved / 255.0, rtol=1e-6)
    assert data.labels.tolist() == [0, 1, 1, 0] and data.labels.dtype == np.int64
    assert data.class_names == ["0", "1", "2", "3"]  # the largest label of any split
    assert data.ids[:2] == ["npz:train:0", "npz:train:1"]


def test_npz_class_names_and_errors(tmp_path: Path) -> None:
    images = np.zeros((2, 4, 4), np.uint8)
    named = _medmnist(
        tmp_path / "n.npz",
        {"train": images},
        {"train": np.array([[1], [0]])},
        class_names=np.array(["normal", "mass"]),
    )
    assert load_classification(named).class_names == ["normal", "mass"]
    missing = _medmnist(
        tmp_path / "k.npz", {"train": images, "val": images}, {"val": np.array([0, 1])}
    )
    with pytest.raises(
        DatasetError, match=r"k\.npz: missing key 'train_labels' \(keys present: .*val_images"
    ):
        load_classification(missing, "train")
    with pytest.raises(DatasetError, match=r"k\.npz: no split 'test'; available: train, val"):
        load_classification(missing, "test")
    empty = tmp_path / "e.npz"
    np.savez(empty, x=images)
    with pytest.raises(DatasetError, match=r"e\.npz: no '<split>_images'.*keys present: x"):
        load_classification(empty)
    nan = np.zeros((3, 4, 4), np.float32)
    nan[2, 1, 1] = np.nan
    with pytest.raises(
        DatasetError, match=r"f\.npz: 'train_images' image 2 \(npz:train:2\) holds NaN"
    ):
        load_classification(
            _medmnist(tmp_path / "f.npz", {"train": nan}, {"train": np.array([0, 1, 0])})
        )
    with pytest.raises(
        DatasetError, match=r"c\.npz: 'train_images' holds 2 images but 'train_labels' 3"
    ):
        load_classification(
            _medmnist(tmp_path / "c.npz", {"train": images}, {"train": np.array([0, 1, 0])})
        )
    with pytest.raises(DatasetError, match="not a classification source"):
        load_classification(_png(tmp_path / "x.png", 1))
    with pytest.raises(DatasetError, match="no such file"):
        load_classification(tmp_path / "absent.npz")


# ---------------------------------------------------------------- weights and folds


def test_class_weights_and_sample_weights() -> None:
    labels = np.array([0] * 6 + [1] * 3 + [3] * 1)
    w = class_weights(labels, 4)
    assert w[2] == 0 and w[[0, 1, 3]].mean() == pytest.approx(1.0)
    assert w[0] * 6 == pytest.approx(w[1] * 3) == pytest.approx(w[3] * 1)
    s = balanced_sample_weights(labels)
    assert s.shape == (10,) and s.mean() == pytest.approx(1.0)
    totals = [s[labels == k].sum() for k in (0, 1, 3)]
    assert np.allclose(totals, totals[0])
    with pytest.raises(ConfigError, match="out of range"):
        class_weights(labels, 3)
    with pytest.raises(ConfigError, match="integer class indices"):
        balanced_sample_weights(np.array([0.5, 1.0]))


def test_stratified_folds_are_balanced_and_deterministic() -> None:
    rng = np.random.default_rng(3)
    labels = rng.choice(3, size=103, p=[0.6, 0.3, 0.1])
    folds = stratified_folds(labels, n_folds=5, seed=0)
    assert folds.shape == (103,) and set(folds.tolist()) == set(range(5))
    for k in range(3):
        expected = (labels == k).sum() / 5
        for f in range(5):
            assert abs(((folds == f) & (labels == k)).sum() - expected) < 1.0
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1
    assert np.array_equal(folds, stratified_folds(labels, n_folds=5, seed=0))
    assert not np.array_equal(folds, stratified_folds(labels, n_folds=5, seed=1))
    with pytest.raises(ConfigError, match="n_folds"):
        stratified_folds(labels, n_folds=1)


# ---------------------------------------------------------------- phantoms


def test_phantom_arrays_deterministic_with_masks() -> None:
    data, masks = classification_phantom_arrays(10, seed=4, return_masks=True)
    again = classification_phantom_arrays(10, seed=4)
    assert np.array_equal(data.images, again.images) and np.array_equal(data.labels, again.labels)
    assert (
        data.images.shape == (20, 1, 64, 64) and masks.shape == (20, 64, 64) and masks.dtype == bool
    )
    assert data.class_names == ["absent", "present"] and data.class_counts().tolist() == [10, 10]
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    has_lesion = masks.reshape(20, -1).any(axis=1)
    assert np.array_equal(has_lesion, data.labels == 1)
    # the lesion is bright inside its mask: above the image's organ-level intensities there
    for i in np.flatnonzero(data.labels == 1):
        assert data.images[i, 0][masks[i]].mean() > np.percentile(data.images[i, 0], 90)
    smaller = classification_phantom_arrays(3, seed=4)
    assert np.array_equal(smaller.images, data.images[:6])
    assert not np.array_equal(classification_phantom_arrays(3, seed=5).images, smaller.images)
    assert not np.array_equal(
        classification_phantom_arrays(3, seed=4, split="test").images, smaller.images
    )


def test_phantom_mean_intensity_does_not_separate_classes() -> None:
    data = classification_phantom_arrays(100, seed=0)
    means = data.images.reshape(len(data), -1).mean(axis=1)
    pos, neg = means[data.labels == 1], means[data.labels == 0]
    auc = (pos[:, None] > neg[None, :]).mean()
    assert 0.35 < auc < 0.65


def test_shape_phantoms_and_3d() -> None:
    data, masks = classification_phantom_arrays(4, kind="shape", return_masks=True)
    assert data.class_names == ["benign", "malignant"]
    assert masks.reshape(8, -1).any(axis=1).all()  # both classes have the deciding lesion
    vol, vmasks = classification_phantom_arrays(2, spatial_dims=3, size=16, return_masks=True)
    assert vol.images.shape == (4, 1, 16, 16, 16) and vmasks.shape == (4, 16, 16, 16)
    assert np.array_equal(vmasks.reshape(4, -1).any(axis=1), vol.labels == 1)
    with pytest.raises(ConfigError, match="kind"):
        classification_phantom_arrays(2, kind="texture")  # type: ignore[arg-type]


def test_phantom_folder_round_trips_and_overwrite_rule(tmp_path: Path) -> None:
    out = make_classification_phantoms(tmp_path / "ph", n_per_class=4, n_test_per_class=2, seed=1)
    assert available_splits(out) == ["train", "test"]
    train = load_classification(out, "train")
    memory, masks = classification_phantom_arrays(4, seed=1, return_masks=True)
    assert train.class_names == ["absent", "present"] and train.class_counts().tolist() == [4, 4]
    order = np.argsort(memory.ids)  # folders list class by class, each sorted by name
    by_id = {Path(i).name.removesuffix(".png"): k for k, i in enumerate(train.ids)}
    for k in order:
        j = by_id[memory.ids[k]]
        assert (
            np.array_equal(train.images[j], memory.images[k])
            and train.labels[j] == memory.labels[k]
        )
    mask_file = out / "masks" / "train" / "present" / "phantom_train_0001.png"
    assert np.array_equal(read_image(mask_file).array.astype(bool), masks[1])
    assert len(load_classification(out, "test")) == 4
    with pytest.raises(OverwriteError, match="not empty"):
        make_classification_phantoms(out, n_per_class=2)
    make_classification_phantoms(out, n_per_class=2, n_test_per_class=1, overwrite=True)
    assert (
        len(load_classification(out, "train")) == 4 and len(load_classification(out, "test")) == 2
    )
    (out / "train" / "absent" / "mine.png").write_bytes(b"")
    with pytest.raises(OverwriteError, match="did not write"):
        make_classification_phantoms(out, n_per_class=2, overwrite=True)


def test_phantom_folder_3d(tmp_path: Path) -> None:
    out = make_classification_phantoms(
        tmp_path / "v", n_per_class=1, n_test_per_class=1, spatial_dims=3, size=16
    )
    data = load_classification(out, "train")
    memory = classification_phantom_arrays(1, spatial_dims=3, size=16)
    assert data.images.shape == (2, 1, 16, 16, 16)
    assert np.array_equal(data.images, memory.images)  # absent/ then present/ = labels 0, 1


# ---------------------------------------------------------------- real MedMNIST files


@pytest.mark.realdata
def test_real_adrenalmnist3d(shared_data: Path) -> None:
    path = shared_data / "adrenalmnist3d" / "adrenalmnist3d.npz"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    assert available_splits(path) == ["train", "val", "test"]
    train = load_classification(path, "train")
    assert train.images.shape == (1188, 1, 28, 28, 28) and train.spatial_dims == 3
    assert set(np.unique(train.labels).tolist()) == {0, 1} and train.class_counts().tolist() == [
        929,
        259,
    ]
    assert train.images.min() == 0.0 and train.images.max() == 1.0
    assert load_classification(path, "test").class_counts().tolist() == [229, 69]


@pytest.mark.realdata
def test_real_pneumoniamnist(shared_data: Path) -> None:
    path = shared_data / "pneumoniamnist_balanced" / "pneumoniamnist.npz"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    val = load_classification(path, "val")
    assert val.images.shape == (270, 1, 28, 28) and val.class_counts().tolist() == [135, 135]
    assert len(load_classification(path, "train")) == 2428


def test_empty_split_folder_does_not_block_other_splits(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "a" / "1.png", 1)
    (tmp_path / "val").mkdir()
    assert len(load_classification(tmp_path, "train")) == 1
    with pytest.raises(DatasetError, match=r"val: no class folders in split 'val'"):
        load_classification(tmp_path, "val")
