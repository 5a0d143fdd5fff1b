"""``prepare_cascade``: the step between the two stages of the cascade.

After the ``3d_lowres`` folds are trained it predicts every training case with the lowres model
of the fold that held the case out, resampled to the full-resolution grid, into
``preprocessed/3d_cascade_fullres/<case>_prev.npy`` (what ``3d_cascade_fullres`` trains on).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medseg.data.cascade import PREVIOUS_STAGE_FILE, previous_stage_dir, write_previous
from medseg.data.dataset import load_dataset, read_case
from medseg.data.loader import list_cases
from medseg.device import resolve_device
from medseg.errors import ConfigError
from medseg.fileutil import check_writable, write_json_atomic
from medseg.inference.checkpoints import trained_folds
from medseg.inference.predict import next_stage_segmentation
from medseg.planning.plan import Plan, Plans
from medseg.planning.preprocessing import preprocess_arrays
from medseg.training import fold_dir, load_or_make_splits, model_from_checkpoint

log = logging.getLogger(__name__)


def prepare_cascade(
    results: str | os.PathLike[str],
    configuration: str = "3d_cascade_fullres",
    *,
    checkpoint: str = "best",
    mirror: bool = True,
    overlap: float = 0.5,
    device: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict every training case with the previous stage, for training a cascade stage.

    Each case is predicted by the previous stage's (``3d_lowres``) model of the fold where it
    was a validation case (``splits.json``), so the cascade trains on segmentations as
    imperfect as at test time (nnU-Net). A case whose fold is not trained falls back to fold
    ``all`` if trained, else to the lowest trained fold, with a warning (that model saw the
    case in training, so its segmentation is too good). The prediction is made on the
    previous stage's preprocessed case (``preprocessed/3d_lowres/``, else the dataset image
    preprocessed anew), its probabilities resampled linearly to the case's grid in the
    cascade's store (``preprocessed/3d_fullres/``), and the argmax written as
    ``preprocessed/<configuration>/<case>_prev.npy`` (int8 class indices, ``(1, *spatial)``),
    with ``previous_stage.json`` recording which fold and checkpoint made each case.

    Args:
        results: the results folder.
        configuration: the cascade stage (a plan with ``previous_stage``).
        checkpoint: ``"best"`` or ``"latest"`` previous-stage checkpoints.
        mirror, overlap, device: inference options (as ``predict``).
        overwrite: replace existing ``<case>_prev.npy`` files (checked before any work).

    Returns:
        ``{"folder", "cases", "folds" (fold -> number of cases), "fallback" (case ids)}``.

    Raises:
        ConfigError: the configuration is no cascade stage, or no previous-stage fold is trained.
        OverwriteError: a prediction exists and ``overwrite`` is False.
    """
    # check: a cascade stage, a trained previous stage, nothing to overwrite
    results = Path(results)
    plans = Plans.from_json(results / "plans.json")
    cascade, previous = _stage_plans(plans, configuration)
    stage = cascade.previous_stage
    store = results / "preprocessed" / cascade.store_configuration
    low_store = results / "preprocessed" / previous.store_configuration
    case_ids = list_cases(store)
    splits = load_or_make_splits(results, case_ids)
    trained = _trained_previous_folds(results, stage, checkpoint)
    out = previous_stage_dir(results, cascade.configuration)
    for case_id in case_ids:
        check_writable(out / f"{case_id}_prev.npy", overwrite=overwrite)

    # predict each case with the model of the fold that held it out
    assignment, fallback = _assign_folds(splits, trained, stage)
    dev = resolve_device(device)
    models, checkpoints = _load_models(results, stage, set(assignment.values()), checkpoint, dev)
    inference = {"overlap": overlap, "mirror": mirror, "device": dev}
    out.mkdir(parents=True, exist_ok=True)
    for case_id in tqdm(case_ids, desc=f"prepare {configuration}", disable=not progress):
        model = models[assignment[case_id]]
        array, target, props = _case_input(case_id, store, low_store, model[1], plans, cascade)
        segmentation = next_stage_segmentation(
            [model], array, target, separate_z=props.get("separate_z"), **inference
        )
        write_previous(out, case_id, segmentation, overwrite=True)

    # record which fold and checkpoint made each case
    write_json_atomic(
        out / PREVIOUS_STAGE_FILE,
        {
            "previous_stage": stage,
            "checkpoint": checkpoint,
            "mirror": mirror,
            "cases": assignment,
            "fallback": fallback,
            "checkpoints": checkpoints,
        },
    )
    counts = dict(sorted(Counter(assignment.values()).items()))  # fold -> its number of cases
    return {"folder": str(out), "cases": len(case_ids), "folds": counts, "fallback": fallback}


def _stage_plans(plans: Plans, configuration: str) -> tuple[Plan, Plan]:
    """The plans of the cascade stage ``configuration`` and of its previous stage."""
    cascade = plans[configuration]
    if not cascade.previous_stage:
        raise ConfigError(f"{configuration} is not a cascade stage (no previous_stage in its plan)")
    return cascade, plans[cascade.previous_stage]


def _trained_previous_folds(results: Path, stage: str, checkpoint: str) -> list[str]:
    """The previous stage's folds that have the checkpoint; raises if there are none."""
    trained = trained_folds(results, stage, checkpoint)
    if not trained:
        raise ConfigError(
            f"{results / stage}: no fold has checkpoint_{checkpoint}.pt; "
            "train the previous stage first: "
            f"'medseg train {results} --config {stage} --fold K' for each fold (or --fold all)"
        )
    return trained


def _assign_folds(
    splits: list[dict[str, list[str]]], trained: list[str], stage: str
) -> tuple[dict[str, str], list[str]]:
    """Case id -> the previous-stage fold that predicts it, and the cases that fall back.

    A case goes to the fold that held it out; when that fold is not trained, to fold ``all``
    if trained, else to the lowest trained fold, with a warning.
    """
    fallback_fold = "all" if "all" in trained else trained[0]
    assignment, fallback = {}, []
    for k, split in enumerate(splits):
        for case_id in split["val"]:
            assignment[case_id] = str(k) if str(k) in trained else fallback_fold
            if str(k) not in trained:
                fallback.append(case_id)
    if fallback:
        log.warning(
            "%s folds %s are not trained: %d case(s) are predicted by fold %s, which trained on "
            "them, so their segmentations are better than at test time: %s",
            stage,
            sorted({str(k) for k in range(len(splits))} - set(trained)),
            len(fallback),
            fallback_fold,
            ", ".join(fallback[:10]),
        )
    return assignment, fallback


def _load_models(
    results: Path, stage: str, folds: set[str], checkpoint: str, device: torch.device
) -> tuple[dict[str, tuple[nn.Module, Plan]], dict[str, int]]:
    """Fold -> (model on ``device``, its plan), and checkpoint path -> its mtime in ns."""
    models, checkpoints = {}, {}
    for fold in sorted(folds):
        path = fold_dir(results, stage, fold) / f"checkpoint_{checkpoint}.pt"
        model, plan = model_from_checkpoint(path)
        models[fold] = (model.to(device), plan)
        checkpoints[str(path.resolve())] = path.stat().st_mtime_ns
    return models, checkpoints


def _case_input(
    case_id: str, store: Path, low_store: Path, plan: Plan, plans: Plans, cascade: Plan
) -> tuple[np.ndarray, tuple[int, ...], dict[str, Any]]:
    """One case's input to the previous stage, its shape in the cascade's ``store`` and its
    properties there.

    The input is the case in the previous stage's ``low_store``, else the dataset image
    preprocessed anew with ``plan`` (the previous-stage model's); both stores must have
    cropped the case alike.
    """
    props = json.loads((store / f"{case_id}.json").read_text(encoding="utf-8"))
    target = np.load(store / f"{case_id}.npy", mmap_mode="r").shape[1:]
    if (low_store / f"{case_id}.npy").is_file():
        array = np.load(low_store / f"{case_id}.npy")
        low_props = json.loads((low_store / f"{case_id}.json").read_text(encoding="utf-8"))
    else:  # the previous stage's store is gone: preprocess the case again
        dataset = load_dataset(plans.dataset_path)
        image, _ = read_case(dataset.case(case_id), num_channels=dataset.num_channels)
        array, _, low_props = preprocess_arrays(image.channels_first(), None, image.spacing, plan)
    if (low_props.get("crop_start"), low_props.get("crop_stop")) != (
        props.get("crop_start"),
        props.get("crop_stop"),
    ):
        raise ConfigError(
            f"{case_id}: the {cascade.previous_stage} and {cascade.store_configuration} stores "
            "cropped the case differently; preprocess both again"
        )
    return array, target, props
