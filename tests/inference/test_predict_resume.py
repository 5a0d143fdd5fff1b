"""An interrupted ``predict`` continues: verified outputs of the same run are kept, the rest is
predicted; outputs of other models are never replaced without ``overwrite``; one writer at a
time per output folder."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest

from medseg import fileutil
from medseg.errors import LockedError, OverwriteError
from medseg.fileutil import run_lock
from medseg.inference import predict
from medseg.inference.resume import RUN_FILE
from medseg.io import Image, read_image, write_image

FAST = {"configurations": ["3d_fullres"], "mirror": False, "device": "cpu"}


def test_an_interrupted_predict_keeps_verified_outputs_and_predicts_the_rest(
    phantom_results, tmp_path, caplog, monkeypatch
) -> None:
    images, results = phantom_results["images"], phantom_results["results"]
    out = tmp_path / "out"
    written = predict(images, out, results, folds=[0], save_probabilities=True, **FAST)
    expected = {p.name: read_image(p).array for p in written}
    # what an interrupted run leaves: case 2 not done, a temporary of case 2 killed mid-write,
    # case 1 replaced by something that does not verify (another shape)
    (out / "phantom_002.nii.gz").unlink()
    (out / "phantom_002.npz").unlink()
    temporary = out / ".phantom_002.ab12cd34.tmp.nii.gz"
    temporary.write_text("half", encoding="utf-8")
    os.utime(temporary, (time.time() - 120, time.time() - 120))
    write_image(
        Image(np.zeros((4, 4, 4), np.uint8), (4.0, 4.0, 4.0)),
        out / "phantom_001.nii.gz",
        overwrite=True,
    )
    kept = (out / "phantom_000.nii.gz").stat().st_mtime_ns
    monkeypatch.setattr(fileutil, "_PROCESS_START", time.time() + 1)  # a later process
    with caplog.at_level(logging.INFO, logger="medseg.inference.predict"):
        again = predict(images, out, results, folds=[0], save_probabilities=True, **FAST)
    assert again == written
    assert (out / "phantom_000.nii.gz").stat().st_mtime_ns == kept
    assert "phantom_001.nii.gz: its grid differs from the input's (shape" in caplog.text
    assert "1 of 3 case(s) were already predicted" in caplog.text
    for path in written:
        np.testing.assert_array_equal(read_image(path).array, expected[path.name])
    assert sorted(p.name for p in out.glob(".*")) == [".lock", RUN_FILE]  # temporary removed


def test_a_missing_probability_file_is_predicted_again(phantom_results, tmp_path) -> None:
    out = tmp_path / "out"
    predict(phantom_results["images"], out, phantom_results["results"], folds=[0], **FAST)
    predict(
        phantom_results["images"],
        out,
        phantom_results["results"],
        folds=[0],
        save_probabilities=True,
        **FAST,
    )
    assert len(list(out.glob("*.npz"))) == 3


def test_outputs_of_other_models_are_refused_without_overwrite(phantom_results, tmp_path) -> None:
    images, results, out = phantom_results["images"], phantom_results["results"], tmp_path / "out"
    predict(images, out, results, folds=[0], **FAST)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    with pytest.raises(OverwriteError, match="phantom_000.nii.gz: already exists .*other models"):
        predict(images, out, results, folds=[1], **FAST)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")} == before
    predict(images, out, results, folds=[1], overwrite=True, **FAST)
    assert all(p.stat().st_mtime_ns != before[p.name] for p in out.glob("*.nii.gz"))


def test_predict_refuses_a_folder_another_run_is_writing(phantom_results, tmp_path) -> None:
    out = tmp_path / "out"
    with run_lock(out, "written"):
        with pytest.raises(LockedError, match=r"out is being written by pid \d+"):
            predict(phantom_results["images"], out, phantom_results["results"], folds=[0], **FAST)
    assert not list(out.glob("*.nii.gz"))
