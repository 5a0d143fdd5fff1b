"""Any declared non-negative label values train end to end: labels with gaps ({0, 1, 2, 10})
and values past int16 ({0, 40000, 65536}) go check -> plan -> preprocess -> train -> predict;
the case store holds class indices 0..K-1 and the predicted files hold the declared values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli.data import app as data_app
from medseg.io import Image, read_image, write_image
from medseg.pipeline import plan, predict, preprocess, train
from medseg.training.checkpoint import load_checkpoint, save_checkpoint

SQUARES = (
    (slice(2, 12), slice(2, 12)),
    (slice(14, 22), slice(3, 11)),
    (slice(4, 10), slice(15, 21)),
)


def _dataset(root: Path, values: list[int], *, num_cases: int = 4) -> Path:
    """2D 24x24 cases: one bright square per foreground value, the value ``values[k]`` at
    intensity ``100 k`` so that a couple of training steps can tell them apart."""
    rng = np.random.default_rng(0)
    for i in range(num_cases):
        label = np.zeros((24, 24), np.int64)
        for box, value in zip(SQUARES, values[1:], strict=False):
            label[box] = value
            label[box][0, 0] = value if i % 2 else 0  # cases differ a little
        index = np.searchsorted(values, label)
        image = 100.0 * index + rng.normal(0, 5, label.shape) + 10
        dtype = np.uint8 if max(values) < 256 else np.uint32
        write_image(
            Image(image.astype(np.float32), (1.0, 1.0)), root / "imagesTr" / f"case_{i}_0000.nii.gz"
        )
        write_image(Image(label.astype(dtype), (1.0, 1.0)), root / "labelsTr" / f"case_{i}.nii.gz")
    labels = {"background": 0, **{f"class_{v}": v for v in values[1:]}}
    meta = {
        "name": "gaps",
        "channel_names": {"0": "MRI"},
        "labels": labels,
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def _favour_last_class(checkpoint: Path) -> None:
    """Make the trained network predict its last class everywhere (a large output bias)."""
    data = load_checkpoint(checkpoint)
    for name, tensor in data["network_state"].items():
        if name.startswith("heads.") and name.endswith(".bias"):
            tensor[-1] += 1e4
    save_checkpoint(checkpoint, **data)


@pytest.mark.slow
@pytest.mark.parametrize("values", [[0, 1, 2, 10], [0, 40000, 65536]], ids=["gaps", "past_int16"])
def test_declared_label_values_train_and_come_back_from_predict(
    tmp_path: Path, values: list[int], shrink_2d_plan
) -> None:
    root = _dataset(tmp_path / "ds", values)
    check = CliRunner().invoke(data_app, ["check", str(root), "-j", "1"])
    assert check.exit_code == 0, check.output
    results = tmp_path / "results"
    plan(root, results, progress=False)
    shrink_2d_plan(results, patch_size=(24, 24), learning_rate=0.05)
    preprocess(results, jobs=1, progress=False)
    seg = np.load(results / "preprocessed" / "2d" / "case_1_seg.npy")
    assert seg.dtype == np.int8 and set(np.unique(seg).tolist()) == set(
        range(len(values))
    )  # class indices
    summary = train(
        results, "2d", 0, epochs=1, steps_per_epoch=2, num_workers=0, device="cpu", progress=False
    )
    assert summary["fit"] and summary["validation"] is not None
    written = predict(
        root / "imagesTr",
        tmp_path / "out",
        results,
        configurations=["2d"],
        folds=[0],
        mirror=False,
        device="cpu",
    )
    assert all(set(np.unique(read_image(path).array).tolist()) <= set(values) for path in written)
    _favour_last_class(results / "2d" / "fold_0" / "checkpoint_best.pt")
    written = predict(
        root / "imagesTr",
        tmp_path / "out",
        results,
        configurations=["2d"],
        folds=[0],
        mirror=False,
        device="cpu",
        overwrite=True,
    )
    predicted = read_image(written[0]).array
    assert predicted.dtype == (np.uint8 if values[-1] < 256 else np.uint32)
    assert np.unique(predicted).tolist() == [values[-1]]  # index K-1 written as the declared value
