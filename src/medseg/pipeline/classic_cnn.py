"""The CNN's row of the classical benchmark: medseg's U-Net on the same split.

:func:`run_cnn` trains the pipeline's network (``plan`` with a time budget, ``preprocess``,
``train`` on fold ``all``) on exactly the benchmark's training cases and predicts exactly its
evaluated cases with ``medseg predict``, so the CNN's row describes the same cases as the
classical rows. The training cases are linked (not copied) into a small dataset folder.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.data.dataset import Dataset
from medseg.errors import ConfigError, OverwriteError

CNN_FOLD = "all"
"""The fold trained: every training case (the benchmark's split, not cross-validation)."""


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    try:
        os.symlink(source.resolve(), target)
    except OSError:  # no symlinks (some file systems): copy
        shutil.copyfile(source, target)


def subset_dataset(data: Dataset, case_ids: Sequence[str], root: Path) -> Path:
    """A nnU-Net v2 dataset folder at ``root`` holding only ``case_ids`` of ``data`` (linked).

    Returns:
        ``root``, with ``imagesTr/CASE_000k<ending>``, ``labelsTr/CASE<ending>`` and a
        ``dataset.json`` (the source's channel names, labels and file ending).
    """
    ending = data.file_ending
    for case_id in case_ids:
        case = data.case(case_id)
        for index, path in enumerate(case.image_paths):
            _link(Path(path), root / "imagesTr" / f"{case_id}_{index:04d}{ending}")
        _link(Path(case.label_path), root / "labelsTr" / f"{case_id}{ending}")
    meta = {
        "name": f"{data.name} (benchmark training cases)",
        "channel_names": dict(data.channel_names),
        "labels": dict(data.labels),
        "numTraining": len(case_ids),
        "file_ending": ending,
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return root


def _input_folder(data: Dataset, case_ids: Sequence[str], folder: Path) -> Path:
    """``folder/CASE_000k<ending>`` links to the evaluated cases' images (``predict``'s input)."""
    for case_id in case_ids:
        for index, path in enumerate(data.case(case_id).image_paths):
            _link(Path(path), folder / f"{case_id}_{index:04d}{data.file_ending}")
    return folder


def run_cnn(
    data: Dataset,
    train_ids: Sequence[str],
    eval_ids: Sequence[str],
    pred_dir: Path,
    work: Path,
    *,
    minutes: float,
    device: str | None = "cpu",
    configuration: str = "2d",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train the U-Net on ``train_ids`` for ``minutes``, predict ``eval_ids`` into ``pred_dir``.

    The planner's plan for ``configuration`` (default ``2d``: the most steps in a few CPU
    minutes; ``3d_fullres`` where planned for 3D), trained until ``minutes`` run out: the
    learning-rate schedule follows the time budget (``medseg.training.schedule``), so it has
    decayed when training stops, without measuring step times first (a loaded machine
    measures badly). The network sees every channel of the images (the classical methods
    see one). Prediction without test-time mirroring.

    Returns:
        The row's extra fields: ``configuration``, ``budget_min``, ``fit_s`` (training
        seconds), ``epochs``, ``steps``, ``stopped_by`` and ``seconds`` (prediction seconds per
        evaluated case: the whole ``predict`` call divided by the cases, I/O included).

    Raises:
        ConfigError: ``minutes`` not positive, or ``configuration`` not planned.
        OverwriteError: ``work`` holds a previous run and ``overwrite`` is False.
    """
    from medseg.pipeline.steps import train
    from medseg.planning.preprocessing import preprocess
    from medseg.planning.steps import plan

    if not minutes > 0:
        raise ConfigError(f"cnn_minutes must be positive, got {minutes}")
    results = work / "results"
    if results.exists():  # a previous run's checkpoints would stop training
        if not overwrite:
            raise OverwriteError(f"{results}: a previous CNN run; pass overwrite=True")
        shutil.rmtree(results)
    dataset = subset_dataset(data, train_ids, work / "dataset")
    budget_s = 60.0 * minutes
    plans = plan(dataset, results, device=device or "cpu", overwrite=True, progress=False)
    if configuration not in plans.configurations:
        raise ConfigError(
            f"cnn: configuration {configuration!r} was not planned for {data.name}; planned: "
            f"{', '.join(plans.configurations)}"
        )
    preprocess(results, configurations=[configuration], jobs=1, progress=False)
    trained = train(
        results,
        configuration,
        CNN_FOLD,
        device=device,
        validate=False,
        progress=False,
        time_budget_s=budget_s,
        num_workers=0,
    )
    fit = trained["fit"]
    spent = _predict_cases(
        data, eval_ids, pred_dir, work, results, configuration, device, overwrite
    )
    return {
        "configuration": configuration,
        "budget_min": float(minutes),
        "fit_s": round(float(fit["seconds"]), 1),
        "epochs": int(fit["epochs"]),
        "steps": int(fit["steps"]),
        "stopped_by": str(fit["stopped_by"]),
        "seconds": [spent] * len(eval_ids),
    }


def _predict_cases(
    data: Dataset,
    eval_ids: Sequence[str],
    pred_dir: Path,
    work: Path,
    results: Path,
    configuration: str,
    device: str | None,
    overwrite: bool,
) -> float:
    """``medseg predict`` of the evaluated cases with the trained fold; seconds per case."""
    from medseg.inference.predict import predict

    inputs = _input_folder(data, eval_ids, work / "inputs")
    start = time.perf_counter()
    predict(
        inputs,
        pred_dir,
        results,
        configurations=[configuration],
        folds=[CNN_FOLD],
        mirror=False,
        device=device,
        overwrite=overwrite,
        jobs=1,
    )
    return (time.perf_counter() - start) / max(len(eval_ids), 1)
