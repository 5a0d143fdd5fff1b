"""Predict label maps for new images with trained models: one case (``predict_case``) or a
folder (``predict``).

``predict`` finds the input cases (``medseg.inference.inputs``), loads the ensemble of
trained folds/configurations, predicts every case with ``predict_case`` (preprocessing,
sliding window, ensembling and the cascade: ``medseg.inference.ensemble``), post-processes
the label map and writes it (with the probabilities and the uncertainty map, if asked) in the
input's geometry. An interrupted run continues where it stopped (``medseg.inference.resume``).

Uncertainty (``save_uncertainty``): ``uncertainty/CASE<ending>`` is the per-voxel entropy of
the ensemble's mean softmax (over test-time mirrors, tiles and models), divided by ``log K``
so it lies in [0, 1] (``medseg.metrics.uncertainty.entropy_map``); ``OUT/uncertainty.csv``
summarises each case (``summarize_entropy``: mean entropy over the image and over the
predicted foreground plus its 1-voxel dilation, and the foreground volume in voxels).

Results-folder layout read by ``predict``: ``RESULTS/<configuration>/fold_<k>/
checkpoint_<best|latest>.pt`` and, optionally, ``RESULTS/postprocessing.json``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medseg.data.dataset import Case, read_case
from medseg.data.executor import check_executor
from medseg.device import resolve_device
from medseg.errors import ConfigError, MedsegError
from medseg.fileutil import (
    atomic_path,
    remove_stale_temporaries,
    run_lock,
    write_text_atomic,
)
from medseg.inference.checkpoints import find_checkpoints, previous_stage_models
from medseg.inference.crf import apply_crf_decision
from medseg.inference.ensemble import (
    label_values,
    next_stage_segmentation,
    predict_case,
    predict_preprocessed,
)
from medseg.inference.inputs import checked_input, find_input_cases, warn_spacing
from medseg.inference.postprocess import apply_postprocessing, load_postprocessing
from medseg.inference.resume import models_fingerprint, output_problem, outputs_to_verify
from medseg.io import Image, file_ending, grid_mismatches, read_image, write_image
from medseg.metrics.uncertainty import (
    entropy_map,
    summarize_entropy,
    uncertainty_csv,
)
from medseg.planning.plan import Plan
from medseg.training import model_from_checkpoint

log = logging.getLogger(__name__)

#: Sub-folder of the uncertainty maps: kept apart so the prediction folder holds label maps
#: only (``medseg evaluate`` and ``medseg measure`` read every image in it).
UNCERTAINTY_FOLDER = "uncertainty"
UNCERTAINTY_CSV = "uncertainty.csv"


@dataclass(frozen=True)
class _Run:
    """What every case of one ``predict`` call is predicted with: the models (and the cascade's
    previous stage), the post-processing decision and the options."""

    models: list[tuple[nn.Module, Plan]]
    previous: list[tuple[nn.Module, Plan]] | None
    decision: dict[str, Any] | None
    mirror: bool
    overlap: float
    device: torch.device
    save_probabilities: bool
    nan_to_num: bool
    save_uncertainty: bool = False

    @property
    def values(self) -> list[int]:
        """The label value of each probability channel."""
        return label_values(self.models[0][1])

    def identity(self) -> dict[str, Any]:
        """What identifies the outputs (``outputs_to_verify``'s ``run``)."""
        # D: what identifies the outputs; an option that changes them belongs here
        return {
            "models": models_fingerprint([*self.models, *(self.previous or [])]),
            "mirror": self.mirror,
            "overlap": self.overlap,
            "postprocessing": self.decision,
        }


def load_models(
    results: str | os.PathLike[str],
    configurations: Sequence[str] | None,
    folds: Sequence[int | str] | None,
    checkpoint: Literal["best", "latest"],
) -> tuple[list[tuple[nn.Module, Plan]], list[tuple[nn.Module, Plan]] | None]:
    """The chosen checkpoints' models and, for a cascade, its previous stage's models."""
    models = [
        model_from_checkpoint(path)
        for path in find_checkpoints(
            results, configurations=configurations, folds=folds, checkpoint=checkpoint
        )
    ]
    return models, previous_stage_models(results, models, folds=folds, checkpoint=checkpoint)


def _predict_cases(
    run: _Run,
    cases: list[Case],
    targets: list[Path],
    output_dir: Path,
    *,
    overwrite: bool,
    progress: bool,
    cluster: tuple[str, str | None, int | None] = ("local", None, None),
) -> None:
    """Predict every case into its target, keeping what an interrupted same run wrote.
    ``cluster``: ``(executor, address, jobs)``; ``"ray"`` predicts on Ray actors
    (``predict_ray.run_on_ray``), ``"local"`` in this process."""
    runner = None
    if cluster[0] != "local" or cluster[1] is not None:
        from medseg.inference.predict_ray import run_on_ray

        options = {"address": cluster[1], "jobs": cluster[2]}
        runner = partial(run_on_ray, overwrite=overwrite, progress=progress, **options)
    npz = [output_dir / f"{case.case_id}.npz" for case in cases] if run.save_probabilities else []
    maps = (
        [
            uncertainty_path(target, case.case_id)
            for case, target in zip(cases, targets, strict=True)
        ]
        if run.save_uncertainty
        else []
    )
    csv_path = output_dir / UNCERTAINTY_CSV
    extra = [*npz, *maps, *([csv_path] if run.save_uncertainty else [])]
    rows: list[dict[str, Any]] = []
    kept = 0
    with run_lock(output_dir, "written"):
        remove_stale_temporaries(output_dir)
        if run.save_uncertainty:
            remove_stale_temporaries(output_dir / UNCERTAINTY_FOLDER)
        existing = outputs_to_verify(
            output_dir, [*targets, *extra], run.identity(), overwrite=overwrite
        )
        error = None
        if runner is not None:
            kept, rows, error = runner(run, cases, targets, existing)
        for case, target in tqdm(
            list(zip(cases, targets, strict=True)) if runner is None else [],
            desc="predict",
            disable=not progress,
        ):
            was_kept, row = predict_or_keep(run, case, target, existing, overwrite=overwrite)
            kept += was_kept
            if row is not None:
                rows.append({"case": case.case_id, **row})
        if run.save_uncertainty:
            write_text_atomic(csv_path, uncertainty_csv(rows))
        if error is not None:
            raise error
    if kept:
        log.info(
            "%d of %d case(s) were already predicted in %s by the same models and options: "
            "kept (--overwrite predicts them again)",
            kept,
            len(cases),
            output_dir,
        )


def predict_or_keep(
    run: _Run, case: Case, target: Path, existing: set[Path], *, overwrite: bool
) -> tuple[bool, dict[str, Any] | None]:
    """Keep ``case``'s output when ``existing`` holds it and it verifies, else predict it.

    Returns:
        ``(kept, uncertainty row or None)``.
    """
    probabilities_path = target.parent / f"{case.case_id}.npz"
    image, _ = read_case(case)
    if target in existing:  # D: an interrupted run of the same models wrote it
        npz = probabilities_path if run.save_probabilities else None
        problem = output_problem(target, image, run.values, npz)
        row: dict[str, Any] = {}
        if problem is None and run.save_uncertainty:
            problem, row = _kept_uncertainty(target, uncertainty_path(target, case.case_id))
        if problem is None:
            return True, (row if run.save_uncertainty else None)
        log.warning("%s: %s; predicting case %s again", target, problem, case.case_id)
    return False, _predict_one(
        run,
        case,
        image,
        target,
        probabilities_path,
        overwrite=overwrite or target in existing,
        overwrite_map=overwrite or uncertainty_path(target, case.case_id) in existing,
    )


def uncertainty_path(target: Path, case_id: str) -> Path:
    """``OUT/uncertainty/CASE<ending>`` for the label map ``target`` (``OUT/CASE<ending>``)."""
    return target.parent / UNCERTAINTY_FOLDER / target.name


def _kept_uncertainty(target: Path, path: Path) -> tuple[str | None, dict[str, Any]]:
    """Why a kept case's uncertainty map cannot be kept (None if it can), and its CSV row
    recomputed from the map and the label map already written."""
    name = f"{UNCERTAINTY_FOLDER}/{path.name}"
    if not path.is_file():
        return f"{name} is missing", {}
    try:
        entropy, label = read_image(path), read_image(target)
    except MedsegError as err:
        return f"{name} cannot be read ({err})", {}
    mismatches = grid_mismatches(entropy, label)
    if mismatches or entropy.num_channels != 1:
        return f"{name}'s grid differs from the label map's", {}
    return None, summarize_entropy(entropy.array, label.array)


def _predict_one(
    run: _Run,
    case: Case,
    image: Image,
    target: Path,
    probabilities_path: Path,
    *,
    overwrite: bool,
    overwrite_map: bool = False,
) -> dict[str, Any] | None:
    """Check ``case``'s ``image``, predict it and write its (post-processed) label map, and
    its uncertainty map when asked (then return its ``summarize_entropy`` row, else None).
    ``overwrite``/``overwrite_map``: replace an existing label map / uncertainty map (one this
    run's record owns, or ``--overwrite``)."""
    image = checked_input(
        case,
        image,
        run.models[0][1].image_channels,  # A: input checks
        nan_to_num=run.nan_to_num,
    )
    for plan in {m[1].configuration: m[1] for m in run.models}.values():
        warn_spacing(case.case_id, image, plan)
    try:
        probs, label = predict_case(
            run.models,
            image,
            overlap=run.overlap,
            mirror=run.mirror,
            device=run.device,
            previous_stage=run.previous,
        )
    except MedsegError as err:
        raise type(err)(f"case {case.case_id}: {err}") from err
    crf = apply_crf_decision(probs, image.channels_first(), image.spacing, run.values, run.decision)
    if crf is not None:  # cross-validation chose a dense CRF (RESULTS/postprocessing.json)
        probs, label = crf[0], label.with_array(crf[1].astype(label.array.dtype))
    if run.decision is not None:
        label = label.with_array(apply_postprocessing(label.array, run.decision))
    write_image(label, target, overwrite=overwrite)
    if run.save_probabilities:
        _write_probabilities(probabilities_path, probs, run.values, image)
    if not run.save_uncertainty:
        return None
    entropy = entropy_map(probs)
    write_image(
        label.with_array(entropy),
        uncertainty_path(target, case.case_id),
        overwrite=overwrite_map,
    )
    return summarize_entropy(entropy, label.array)


def _write_probabilities(path: Path, probs: np.ndarray, values: list[int], image: Image) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            probabilities=probs.astype(np.float32),
            label_values=np.asarray(values),
            spacing=np.asarray(image.spacing),
        )


def predict(
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    results: str | os.PathLike[str],
    *,
    configurations: Sequence[str] | None = None,
    folds: Sequence[int | str] | None = None,
    checkpoint: Literal["best", "latest"] = "best",
    mirror: bool = True,
    overlap: float = 0.5,
    save_probabilities: bool = False,
    save_uncertainty: bool = False,
    postprocess: bool = True,
    device: torch.device | str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    nan_to_num: bool = False,
    executor: str = "local",
    address: str | None = None,
    jobs: int | None = None,
) -> list[Path]:
    """Predict every case of a folder with the ensemble of trained folds/configurations.

    Args:
        input_dir: images as ``CASE_0000<ending>`` (+ ``_0001``... per channel), or a
            dataset folder (its ``imagesTs``); see ``find_input_cases``.
        output_dir: where ``CASE<ending>`` label maps are written (created; not input_dir).
        results: the results folder with the trained folds.
        configurations, folds, checkpoint: which models (see ``find_checkpoints``). A cascade
            configuration (``3d_cascade_fullres``) also loads its previous stage's models
            (``previous_stage_models``: the same folds where trained, else all its folds).
        mirror, overlap: test-time mirroring along the plan's mirror_axes (every axis by
            default); the sliding-window overlap in ``[0, 1)``.
        save_probabilities: also write ``CASE.npz`` with ``probabilities`` ``(K, *spatial)``
            float32 on the input grid, ``label_values`` and ``spacing``.
        save_uncertainty: also write ``uncertainty/CASE<ending>`` (float32, input geometry: the
            mean softmax's entropy / ``log K``) and ``OUT/uncertainty.csv`` (module docstring);
            not in the run's identity: a kept case whose map fails to verify is redone.
        postprocess: apply ``RESULTS/postprocessing.json`` when it exists.
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available).
        overwrite: predict every case again, replacing existing outputs. Without it, an
            interrupted run continues: outputs of the same models and options that verify
            are kept (``medseg.inference.resume``), the other cases are predicted.
        progress: show a progress bar over cases.
        nan_to_num: replace NaN/inf voxels by 0 (with a warning) instead of refusing the case.
        executor, address, jobs: ``"local"`` (this process) or ``"ray"``: Ray actors, at most
            ``jobs`` (``medseg.inference.predict_ray``; failed cases go to ``failures.csv``).

    Returns:
        The label-map paths of every case (predicted now or kept), in case order.

    Raises:
        ConfigError: missing checkpoints (lists what exists) or bad options.
        DatasetError: no input images, a case whose channel count differs from the models'
            (named with its file), or with NaN/inf voxels without ``nan_to_num``.
        ImageIOError: an image is unreadable, declares more voxel data than the memory budget
            (``MEDSEG_MAX_IMAGE_GB``) or has a zero, negative, NaN, inf or > 100 mm spacing.
        OverwriteError: an output exists, ``overwrite`` is False and the folder was not
            written by this same run (other models or options, or not by ``predict``).
        LockedError: another process is writing ``output_dir``.
    """
    check_executor(executor, address)
    cases, targets, output_dir = _cases_and_targets(Path(input_dir), Path(output_dir))
    models, previous = load_models(results, configurations, folds, checkpoint)
    run = _Run(
        models=models,
        previous=previous,
        decision=load_postprocessing(results) if postprocess else None,
        mirror=mirror,
        overlap=overlap,
        device=resolve_device(device),
        save_probabilities=save_probabilities,
        nan_to_num=nan_to_num,
        save_uncertainty=save_uncertainty,
    )
    cluster = (executor, address, jobs)
    _predict_cases(
        run, cases, targets, output_dir, overwrite=overwrite, progress=progress, cluster=cluster
    )
    return targets


def _cases_and_targets(input_dir: Path, output_dir: Path) -> tuple[list[Case], list[Path], Path]:
    """The input cases, their label-map paths in ``output_dir``, and ``output_dir``."""
    cases = find_input_cases(input_dir)
    if output_dir.resolve() == input_dir.resolve():
        raise ConfigError(f"{output_dir}: the output folder must differ from the input folder")
    targets = [output_dir / f"{case.case_id}{file_ending(case.image_paths[0])}" for case in cases]
    return cases, targets, output_dir


__all__ = [
    "checked_input",
    "find_input_cases",
    "label_values",
    "next_stage_segmentation",
    "predict",
    "predict_case",
    "predict_preprocessed",
]
