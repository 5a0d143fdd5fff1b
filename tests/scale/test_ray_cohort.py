"""``--executor ray`` against ``local`` on a small phantom cohort: identical outputs for check,
fingerprint, preprocess, predict, evaluate and measure; a killed worker's case retried; a
corrupt case in ``failures.csv`` while the rest finish; an interrupted predict resumed; the
driver's memory flat over the cohort size. One Ray (2 CPUs) for the whole module."""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tracemalloc
from functools import partial
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (the 'cluster' extra)")

from medseg.data import check_dataset, compute_fingerprint, load_dataset  # noqa: E402
from medseg.data.executor import run_cases  # noqa: E402
from medseg.errors import DatasetError  # noqa: E402
from medseg.evaluation import evaluate_folders, measure_folder  # noqa: E402
from medseg.inference.predict import predict  # noqa: E402
from medseg.planning.preprocessing import preprocess  # noqa: E402

pytestmark = pytest.mark.ray

PREDICT = {"configurations": ["3d_fullres"], "folds": [0], "mirror": False, "device": "cpu"}


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    """One local Ray for the module (start-up takes seconds); this module's functions travel
    by value (pytest imports it under a name the workers cannot import)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _results_copy(cohort: dict[str, Path], dest: Path) -> Path:
    dest.mkdir()
    shutil.copyfile(cohort["results"] / "plans.json", dest / "plans.json")
    return dest


def test_check_and_fingerprint_equal_local(cohort, tmp_path):
    dataset = load_dataset(cohort["dataset"])
    assert check_dataset(dataset, executor="ray", progress=False) == check_dataset(
        dataset, jobs=2, progress=False
    )
    compute_fingerprint(dataset, jobs=2, progress=False).to_json(tmp_path / "local.json")
    compute_fingerprint(dataset, executor="ray", progress=False).to_json(tmp_path / "ray.json")
    assert (tmp_path / "ray.json").read_bytes() == (tmp_path / "local.json").read_bytes()


def test_preprocess_files_equal_local(cohort, tmp_path):
    local = _results_copy(cohort, tmp_path / "local")
    on_ray = _results_copy(cohort, tmp_path / "ray")
    preprocess(local, configurations=["3d_fullres"], jobs=2, progress=False)
    summary = preprocess(on_ray, configurations=["3d_fullres"], executor="ray", progress=False)
    assert summary == {"3d_fullres": {"processed": 6, "skipped": 0, "removed": 0}}
    expected = _files(local / "preprocessed")
    assert len(expected) == 6 * 3 + 1  # .npy, _seg.npy, .json per case, and the manifest
    assert _files(on_ray / "preprocessed") == expected


def test_predict_evaluate_measure_equal_local(cohort, tmp_path):
    options = {**PREDICT, "save_uncertainty": True}
    predict(cohort["images"], tmp_path / "local", cohort["results"], **options)
    predict(cohort["images"], tmp_path / "ray", cohort["results"], executor="ray", **options)
    expected = _files(tmp_path / "local")
    assert len(expected) == 6 * 2 + 1  # label and uncertainty maps, uncertainty.csv
    assert _files(tmp_path / "ray") == expected
    labels = cohort["dataset"] / "labelsTr"
    for name, executor in (("eval_local", "local"), ("eval_ray", "ray")):
        where = {"executor": executor, "jobs": 1 if executor == "local" else 2}
        evaluate_folders(tmp_path / "local", labels, tmp_path / name, **where)
        measure_folder(tmp_path / "local", tmp_path / name / "m.csv", **where)
    for name in ("per_case.csv", "m.csv"):
        local_rows = (tmp_path / "eval_local" / name).read_text().splitlines()
        assert (tmp_path / "eval_ray" / name).read_text().splitlines() == local_rows
        assert len(local_rows) > 6


def _die_once(item: int, marker: Path) -> int:
    """``item ** 2``, but the worker dies (no exception: the process ends) the first time
    it meets item 2."""
    if item == 2 and not marker.exists():
        marker.touch()
        os._exit(1)
    return item * item


def test_killed_worker_case_is_retried(tmp_path):
    outcomes = list(
        run_cases(partial(_die_once, marker=tmp_path / "died"), list(range(5)), executor="ray")
    )
    assert (tmp_path / "died").exists()  # the worker did die
    assert [o.value for o in outcomes] == [0, 1, 4, 9, 16]
    assert [o.attempts for o in outcomes] == [1, 1, 2, 1, 1]


class _DyingRun:
    """A predict run whose actor process dies the first time a case reaches its input checks
    (the first process to create ``marker``), as if killed mid-case."""

    def __init__(self, run: object, marker: Path) -> None:
        self.run, self.marker = run, marker

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") or "run" not in self.__dict__:
            raise AttributeError(name)
        if name == "nan_to_num":
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
                os._exit(1)
            except FileExistsError:
                pass
        return getattr(self.run, name)


def test_killed_predict_actor_case_is_retried(cohort, tmp_path, monkeypatch):
    predict_module = sys.modules["medseg.inference.predict"]
    real = predict_module._Run
    marker = tmp_path / "died"
    monkeypatch.setattr(predict_module, "_Run", lambda **kw: _DyingRun(real(**kw), marker))
    predict(cohort["images"], tmp_path / "ray", cohort["results"], executor="ray", **PREDICT)
    monkeypatch.undo()
    assert marker.exists()  # one actor did die mid-case
    assert not (tmp_path / "ray" / "failures.csv").exists()
    predict(cohort["images"], tmp_path / "local", cohort["results"], **PREDICT)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


def _corrupt(path: Path) -> None:
    path.write_bytes(gzip.compress(b"not a nifti file"))


def test_corrupt_case_lands_in_failures_csv(cohort, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(cohort["images"], images)
    _corrupt(images / "phantom_003_0000.nii.gz")
    out = tmp_path / "pred"
    with pytest.raises(DatasetError, match="1 of 6 case"):
        predict(images, out, cohort["results"], executor="ray", **PREDICT)
    rows = (out / "failures.csv").read_text().splitlines()
    assert rows[0] == "case,error,attempts"
    assert len(rows) == 2 and rows[1].startswith("phantom_003,") and rows[1].endswith(",2")
    written = sorted(p.name for p in out.glob("*.nii.gz"))
    assert written == [f"phantom_{i:03d}.nii.gz" for i in (0, 1, 2, 4, 5)]


def test_corrupt_case_in_preprocess_failures(cohort, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(cohort["dataset"], dataset)
    results = _results_copy(cohort, tmp_path / "results")
    plans = (results / "plans.json").read_text()
    (results / "plans.json").write_text(plans.replace(str(cohort["dataset"]), str(dataset)))
    _corrupt(dataset / "imagesTr" / "phantom_001_0000.nii.gz")
    with pytest.raises(DatasetError, match="1 of 6 case"):
        preprocess(results, configurations=["3d_fullres"], executor="ray", progress=False)
    store = results / "preprocessed" / "3d_fullres"
    assert (store / "failures.csv").read_text().splitlines()[1].startswith("phantom_001,")
    assert sorted(p.stem for p in store.glob("*_seg.npy")) == [
        f"phantom_{i:03d}_seg" for i in (0, 2, 3, 4, 5)
    ]


def test_interrupted_predict_resumes(cohort, tmp_path):
    out = tmp_path / "pred"
    one_actor = {"executor": "ray", "jobs": 1, **PREDICT}  # one actor process to start
    predict(cohort["images"], out, cohort["results"], **one_actor)
    (out / "phantom_004.nii.gz").unlink()  # the run stopped before this case
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    predict(cohort["images"], out, cohort["results"], **one_actor)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz") if p.name in stamps} == (
        stamps
    )
    assert (out / "phantom_004.nii.gz").is_file()


def _summary(item: int) -> bytes:
    """A 256 kB per-case result: holding every one would show in the driver's memory."""
    return bytes([item % 256]) * 262_144


def _driver_peak(n: int) -> tuple[int, int]:
    tracemalloc.start()
    total = 0
    for outcome in run_cases(_summary, list(range(n)), executor="ray", progress=False):
        total += outcome.value[0]  # merge, then drop the result
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, total


def test_driver_memory_flat_over_cohort_size():
    _driver_peak(4)  # first use: imports and Ray's own caches
    small, total_small = _driver_peak(20)
    large, total_large = _driver_peak(200)
    assert total_small == sum(i % 256 for i in range(20))
    assert total_large == sum(i % 256 for i in range(200))
    # holding every result would add 180 x 256 kB = 45 MB from 20 to 200 cases; in flight
    # are at most 4 (2 x workers), and a few more may wait for the garbage collector
    assert large < 2 * small, (small, large)
    assert large - small < 16 * 262_144, (small, large)


def _preprocess_peak(cohort: dict[str, Path], root: Path, n: int) -> int:
    """The driver's traced peak while Ray preprocesses ``n`` small phantom cases."""
    from medseg.data.phantom_config import PhantomConfig
    from medseg.data.phantoms import generate_dataset

    config = PhantomConfig().sized("small", spatial_dims=3)
    dataset = generate_dataset(root / f"data{n}", num_cases=n, seed=0, config=config)
    results = root / f"results{n}"
    results.mkdir()
    plans = (cohort["results"] / "plans.json").read_text()
    (results / "plans.json").write_text(plans.replace(str(cohort["dataset"]), str(dataset)))
    tracemalloc.start()
    preprocess(results, configurations=["3d_fullres"], executor="ray", progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(list((results / "preprocessed" / "3d_fullres").glob("*_seg.npy"))) == n
    return peak


def test_preprocess_driver_memory_flat(cohort, tmp_path):
    _preprocess_peak(cohort, tmp_path, 3)  # first use
    small = _preprocess_peak(cohort, tmp_path, 10)
    large = _preprocess_peak(cohort, tmp_path, 100)
    assert large < 1.5 * small, (small, large)
