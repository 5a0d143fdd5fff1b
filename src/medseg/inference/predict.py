"""Predict label maps for new images with trained models: one case (``predict_case``) or a
folder (``predict``).

Per model: the image is preprocessed exactly as in training (``preprocess_arrays``: crop to
the non-zero box, resample to the plan's spacing, normalise), predicted with the sliding
window (Gaussian blending, optional mirroring; a ``2d`` plan on 3D data predicts every slice
along array axis 0 as a 2D image, slices batched), giving softmax probabilities on the
preprocessed grid.

Ensembling: the probabilities of all models (folds and configurations) are averaged. Models
that share a preprocessing (the folds of one configuration) are averaged on their grid and
mapped back once; each such group is then mapped back to the original grid
(``probabilities_to_original``) and the groups are averaged there, weighted by their number
of models. As the mapping back is linear, this equals averaging every model's probabilities
on the original grid. The label map is the argmax, channel ``k`` becoming the ``k``-th
smallest label value of ``plan.labels``, written in the input's geometry.

Cascade (``3d_cascade_fullres``, a plan with ``previous_stage``): the previous stage's models
(``3d_lowres``) predict the case first; their averaged probabilities are resampled linearly
from their grid to the cascade plan's grid of the same crop box, the argmax is taken, and its
one-hot channels (one per foreground class) are appended to the preprocessed image
(``next_stage_segmentation``, ``medseg.data.cascade.foreground_one_hot``). The cascade models are
then ensembled like any others.

Results-folder layout read by ``predict``: ``RESULTS/<configuration>/fold_<k>/
checkpoint_<best|latest>.pt`` and, optionally, ``RESULTS/postprocessing.json``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medseg.data.cascade import foreground_one_hot
from medseg.data.check import nonfinite_problems
from medseg.data.dataset import Case, load_dataset, missing_channel_files, read_case
from medseg.data.preprocess import class_values, resample_probabilities
from medseg.device import resolve_device
from medseg.errors import ConfigError, DatasetError, MedsegError
from medseg.fileutil import atomic_path, remove_stale_temporaries, run_lock
from medseg.inference.checkpoints import find_checkpoints, previous_stage_models
from medseg.inference.export import label_image, probabilities_to_label, probabilities_to_original
from medseg.inference.postprocess import apply_postprocessing, load_postprocessing
from medseg.inference.resume import models_fingerprint, output_problem, outputs_to_verify
from medseg.inference.sliding_window import sliding_window_inference
from medseg.io import IMAGE_EXTENSIONS, Image, file_ending, write_image
from medseg.planning.plan import Plan
from medseg.planning.preprocessing import case_target_spacing, preprocess_arrays
from medseg.training import model_from_checkpoint

log = logging.getLogger(__name__)
SPACING_WARN_RATIO = 2.0


def label_values(plan: Plan) -> list[int]:
    """Label value of each output channel: the plan's integer labels, sorted (region lists
    are not channels); the inverse of the class indices of the case store (``class_values``)."""
    return class_values(plan.labels)


def _check_models(models: Sequence[tuple[nn.Module, Plan]], image: Image) -> None:
    if not models:
        raise ConfigError("no models to predict with")
    first = models[0][1]
    for _, plan in models:
        if plan.num_classes != first.num_classes or label_values(plan) != label_values(first):
            raise ConfigError(
                f"cannot ensemble {first.configuration} and {plan.configuration}: different labels "
                f"({first.labels} vs {plan.labels})"
            )
        if len(plan.spacing) != image.spatial_dims:
            raise ConfigError(
                f"the {plan.configuration} model was planned for {len(plan.spacing)}D images, "
                f"got a {image.spatial_dims}D image"
            )
        if plan.image_channels != image.num_channels:
            raise DatasetError(
                f"the image has {image.num_channels} channel(s), the {plan.configuration} model "
                f"expects {plan.image_channels}"
            )


def _preprocessing_key(plan: Plan, spacing: tuple[float, ...]) -> str:
    """Equal keys mean identical preprocessing (same target spacing and normalisation)."""
    parts = [case_target_spacing(plan, spacing), plan.normalization, plan.intensity]
    return json.dumps(parts, sort_keys=True, default=list)


def predict_preprocessed(
    model: nn.Module,
    plan: Plan,
    array: np.ndarray,
    *,
    overlap: float = 0.5,
    mirror: bool = True,
    device: torch.device | str | None = None,
    patch_size: Sequence[int] | None = None,
    sw_batch_size: int = 4,
) -> np.ndarray:
    """Softmax probabilities of one preprocessed case on its own grid.

    Args:
        model: the plan's network (switched to eval mode and moved to ``device``).
        plan: its plan (``spatial_dims``, ``patch_size``).
        array: ``(C, *spatial)`` preprocessed image; for a ``2d`` plan it may be 3D, then
            every slice along axis 0 is predicted as a 2D image.
        overlap: sliding-window overlap.
        mirror: average over mirroring along every spatial axis of the network.
        device: where the network runs (default: CUDA when available).
        patch_size: tile size (default: the plan's training patch).
        sw_batch_size: tiles (or slices' tiles) per forward pass.

    Returns:
        ``(K, *spatial)`` float32 probabilities.

    Raises:
        ConfigError: the tile size is not a multiple of the network's ``required_divisor``.
    """
    dev = resolve_device(device)
    patch = tuple(int(p) for p in (patch_size or plan.patch_size))
    divisor = tuple(getattr(model, "required_divisor", (1,) * len(patch)))
    if len(patch) != plan.spatial_dims or any(p % d for p, d in zip(patch, divisor, strict=True)):
        raise ConfigError(
            f"tile size {patch} must have {plan.spatial_dims} entries, each a multiple of the "
            f"network's required divisor {divisor}"
        )
    model.eval().to(dev)
    axes = tuple(range(plan.spatial_dims)) if mirror else None
    image = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    slices = plan.spatial_dims == 2 and image.ndim == 4
    batch = image.permute(1, 0, 2, 3) if slices else image[None]  # (Z, C, y, x) or (1, C, *spatial)
    probs = sliding_window_inference(
        batch,
        model,
        patch,
        overlap=overlap,
        mirror_axes=axes,
        device=dev,
        sw_batch_size=sw_batch_size,
        output="probabilities",
    )
    probs = probs.permute(1, 0, 2, 3) if slices else probs[0]
    return probs.contiguous().numpy()


def _resampled_mean(
    models: Sequence[tuple[nn.Module, Plan]],
    array: np.ndarray,
    target_shape: tuple[int, ...],
    separate_z: int | None,
    **kwargs: Any,
) -> np.ndarray:
    """The models' mean probabilities on ``array``'s grid, resampled linearly to
    ``target_shape``."""
    probs = None
    for model, plan in models:
        p = predict_preprocessed(model, plan, array, **kwargs)
        probs = p if probs is None else probs + p
    if probs is None:
        raise ConfigError("no previous-stage models")
    return resample_probabilities(probs / len(models), target_shape, separate_z=separate_z)


def _indices(probs: np.ndarray) -> np.ndarray:
    return np.argmax(probs, axis=0).astype(np.int8 if probs.shape[0] <= 128 else np.int16)


def next_stage_segmentation(
    models: Sequence[tuple[nn.Module, Plan]],
    array: np.ndarray,
    target_shape: Sequence[int],
    *,
    separate_z: int | None = None,
    overlap: float = 0.5,
    mirror: bool = True,
    device: torch.device | str | None = None,
    sw_batch_size: int = 4,
) -> np.ndarray:
    """The previous stage's segmentation on the next stage's grid.

    Args:
        models: previous-stage ``(network, plan)`` pairs sharing one preprocessing.
        array: ``(C, *spatial)`` the case preprocessed with their plan.
        target_shape: the next stage's preprocessed shape of the same crop box.
        separate_z: the coarse axis resampled separately (the next stage's ``separate_z``
            preprocessing property).

    Returns:
        ``(*target_shape)`` int8 class indices (0 background, ``k`` the ``k``-th smallest label
        value): argmax of the models' averaged probabilities after linear resampling.
    """
    target = tuple(int(n) for n in target_shape)
    return _indices(
        _resampled_mean(
            models,
            array,
            target,
            separate_z,
            overlap=overlap,
            mirror=mirror,
            device=device,
            sw_batch_size=sw_batch_size,
        )
    )


def _previous_on_grid(
    previous_stage: Sequence[tuple[nn.Module, Plan]],
    channels: np.ndarray,
    spacing: tuple[float, ...],
    props: dict[str, Any],
    **kwargs: Any,
) -> np.ndarray:
    """Class indices of the previous-stage ensemble on the grid described by ``props``
    (models grouped by preprocessing, groups weighted by their number of models)."""
    groups: dict[str, list[tuple[nn.Module, Plan]]] = {}
    for model, plan in previous_stage:
        groups.setdefault(_preprocessing_key(plan, spacing), []).append((model, plan))
    target = tuple(props["shape_after_resampling"])
    total = np.zeros(0, dtype=np.float32)
    for members in groups.values():
        array, _, low_props = preprocess_arrays(channels, None, spacing, members[0][1])
        if (low_props["crop_start"], low_props["crop_stop"]) != (
            props["crop_start"],
            props["crop_stop"],
        ):
            raise MedsegError(
                "the previous stage cropped the image unlike the cascade"
            )  # same image: cannot happen
        mean = _resampled_mean(members, array, target, props.get("separate_z"), **kwargs) * len(
            members
        )
        total = mean if total.size == 0 else total + mean
    return _indices(total)


def predict_case(
    models: Sequence[tuple[nn.Module, Plan]],
    image: Image,
    *,
    overlap: float = 0.5,
    mirror: bool = True,
    device: torch.device | str | None = None,
    patch_size: Sequence[int] | None = None,
    sw_batch_size: int = 4,
    previous_stage: Sequence[tuple[nn.Module, Plan]] | None = None,
    previous_segmentation: np.ndarray | None = None,
) -> tuple[np.ndarray, Image]:
    """Ensemble prediction of one image in its own geometry (see the module docstring).

    Args:
        models: ``(network, plan)`` pairs, e.g. from ``model_from_checkpoint``; all must
            share the labels. Networks are put in eval mode and moved to ``device``.
        image: the input, ``(C, *spatial)`` or ``(*spatial)``, with its geometry.
        overlap: sliding-window overlap in ``[0, 1)``.
        mirror: test-time mirroring along every spatial axis.
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``, or None (CUDA when available).
        patch_size: tile size for every model (default: each plan's training patch).
        sw_batch_size: tiles per forward pass.
        previous_stage: for cascade models (``plan.previous_stage``): the previous stage's
            ``(network, plan)`` pairs, ensembled first (they run without ``patch_size``).
        previous_segmentation: instead of ``previous_stage``, the previous stage's class
            indices already on the cascade plan's preprocessed grid (e.g. a stored
            ``<case>_prev.npy`` of the training cases).

    Returns:
        ``(probabilities, label)``: ``(K, *spatial)`` float32 probabilities on the input's
        grid (summing to 1 per voxel; outside the non-zero crop box background is 1) and the
        label map as an ``Image`` with the input's shape, spacing, origin and direction.

    Raises:
        ConfigError: no models, models with different labels, or a model planned for
            another dimensionality; cascade models without their previous stage.
        DatasetError: the image's channel count differs from the models'.
    """
    _check_models(models, image)
    if any(plan.previous_stage for _, plan in models) and previous_segmentation is None:
        if not previous_stage:
            stages = sorted({plan.previous_stage for _, plan in models if plan.previous_stage})
            raise ConfigError(
                f"cascade models need the previous stage's models ({', '.join(stages)}): "
                "pass previous_stage=[(network, plan), ...]"
            )
        _check_models([*previous_stage, models[0]], image)
    channels = image.channels_first().astype(np.float32, copy=False)
    geometry = {
        "original_shape": list(image.spatial_shape),
        "original_spacing": list(image.spacing),
        "origin": list(image.origin),
        "direction": list(image.direction),
    }
    groups: dict[str, dict[str, Any]] = {}
    for model, plan in models:
        key = _preprocessing_key(plan, image.spacing)
        if key not in groups:
            array, _, props = preprocess_arrays(channels, None, image.spacing, plan)
            groups[key] = {"array": array, "props": {**props, **geometry}, "sum": None, "count": 0}
        group = groups[key]
        net_input = group["array"]
        if plan.previous_stage:
            if "previous" not in group:
                if previous_segmentation is not None:
                    indices = np.asarray(previous_segmentation)
                    indices = indices[0] if indices.ndim == net_input.ndim else indices
                    if indices.shape != net_input.shape[1:]:
                        raise ConfigError(
                            f"previous_segmentation {indices.shape} is not on the "
                            f"{plan.configuration} grid {net_input.shape[1:]}"
                        )
                else:
                    assert previous_stage is not None
                    indices = _previous_on_grid(
                        previous_stage,
                        channels,
                        image.spacing,
                        group["props"],
                        overlap=overlap,
                        mirror=mirror,
                        device=device,
                        sw_batch_size=sw_batch_size,
                    )
                indices = torch.as_tensor(np.array(indices))[None, None]
                group["previous"] = foreground_one_hot(indices, plan.num_classes)[0].numpy()
            net_input = np.concatenate([net_input, group["previous"]])
        probs = predict_preprocessed(
            model,
            plan,
            net_input,
            overlap=overlap,
            mirror=mirror,
            device=device,
            patch_size=patch_size,
            sw_batch_size=sw_batch_size,
        )
        group["sum"] = probs if group["sum"] is None else group["sum"] + probs
        group["count"] += 1
    total = np.zeros((models[0][1].num_classes, *image.spatial_shape), dtype=np.float32)
    for group in groups.values():
        total += (
            probabilities_to_original(group["sum"] / group["count"], group["props"])
            * group["count"]
        )
    total /= len(models)
    label = probabilities_to_label(total, label_values(models[0][1]))
    return total, label_image(label, next(iter(groups.values()))["props"])


# ---------------------------------------------------------------- inputs


def find_input_cases(input_dir: str | os.PathLike[str]) -> list[Case]:
    """Cases of an input folder: ``CASE_0000<ending>``, ``CASE_0001<ending>``... (one file per
    channel, nnU-Net ``imagesTs`` style; a file without the ``_XXXX`` suffix is a case of its
    own), or a dataset folder with ``dataset.json``, whose ``imagesTs`` is used.

    Raises:
        DatasetError: the folder is missing or holds no images.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise DatasetError(f"{input_dir}: input folder does not exist")
    if (input_dir / "dataset.json").exists():
        cases = list(load_dataset(input_dir).test_cases)
        if not cases:
            raise DatasetError(
                f"{input_dir}: dataset has no imagesTs cases; pass the image folder itself"
            )
        return cases
    channels: dict[str, list[Path]] = {}
    for path in sorted(input_dir.iterdir()):
        ending = file_ending(path)
        if path.name.startswith(".") or not path.is_file() or ending not in IMAGE_EXTENSIONS:
            continue
        stem = path.name[: -len(ending)]
        has_suffix = len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit()
        channels.setdefault(stem[:-5] if has_suffix else stem, []).append(path)
    if not channels:
        raise DatasetError(f"{input_dir}: no images found (expected CASE_0000.nii.gz, ...)")
    return [Case(case_id, tuple(paths)) for case_id, paths in sorted(channels.items())]


def checked_input(case: Case, image: Image, channels: int, *, nan_to_num: bool = False) -> Image:
    """``image`` (read from ``case``'s files) once it is fit to predict on.

    Args:
        channels: the channel count the models expect.
        nan_to_num: replace NaN/inf voxels by 0 with a warning instead of refusing them.

    Raises:
        DatasetError: the channel count differs (naming a missing ``_XXXX`` channel file when
            that is the cause), or the image has NaN/inf voxels and ``nan_to_num`` is False.
    """
    if image.num_channels != channels:
        missing = missing_channel_files(case, channels)
        raise DatasetError(
            f"{missing[0] if missing else case.image_paths[0]}: "
            f"{'channel file missing: ' if missing else ''}case {case.case_id} has "
            f"{image.num_channels} channel(s), the model expects {channels}"
        )
    problems = nonfinite_problems(case.image_paths, image)
    if problems and not nan_to_num:
        raise DatasetError(
            f"{problems[0]}; replace them in the image, or pass --nan-to-num "
            "(nan_to_num=True) to predict with them set to 0"
        )
    if not problems:
        return image
    for problem in problems:
        log.warning("%s; set to 0 (--nan-to-num)", problem)
    return image.with_array(np.nan_to_num(image.array, nan=0.0, posinf=0.0, neginf=0.0))


def _warn_spacing(case_id: str, image: Image, plan: Plan) -> None:
    axes = plan.spatial_dims  # a 2d plan keeps each case's own slice spacing
    ratios = [a / b for a, b in zip(image.spacing[-axes:], plan.spacing[-axes:], strict=True)]
    if any(r > SPACING_WARN_RATIO or r < 1 / SPACING_WARN_RATIO for r in ratios):
        log.warning(
            "case %s: spacing %s differs more than %gx from the %s plan's %s; the model sees data "
            "unlike its training data",
            case_id,
            image.spacing,
            SPACING_WARN_RATIO,
            plan.configuration,
            plan.spacing,
        )


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
    postprocess: bool = True,
    device: torch.device | str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    nan_to_num: bool = False,
) -> list[Path]:
    """Predict every case of a folder with the ensemble of trained folds/configurations.

    Args:
        input_dir: images as ``CASE_0000<ending>`` (+ ``_0001``... per channel), or a
            dataset folder (its ``imagesTs``); see ``find_input_cases``.
        output_dir: where ``CASE<ending>`` label maps are written (created); must differ
            from ``input_dir``.
        results: the results folder with the trained folds.
        configurations, folds, checkpoint: which models (see ``find_checkpoints``). A cascade
            configuration (``3d_cascade_fullres``) also loads its previous stage's models
            (``previous_stage_models``: the same folds where trained, else all its folds).
        mirror: test-time mirroring along every spatial axis.
        overlap: sliding-window overlap in ``[0, 1)``.
        save_probabilities: also write ``CASE.npz`` with ``probabilities`` ``(K, *spatial)``
            float32 on the input grid, ``label_values`` and ``spacing``.
        postprocess: apply ``RESULTS/postprocessing.json`` when it exists.
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available).
        overwrite: predict every case again, replacing existing outputs. Without it, an
            interrupted run continues: outputs of the same models and options that verify
            are kept (``medseg.inference.resume``), the other cases are predicted.
        progress: show a progress bar over cases.
        nan_to_num: replace NaN/inf voxels by 0 (with a warning) instead of refusing the case.

    Returns:
        The label-map paths of every case (predicted now or kept), in case order.

    Raises:
        ConfigError: missing checkpoints (lists what exists) or bad options.
        DatasetError: no input images, a case whose channel count differs from the models'
            (the message names the case and the file, or the missing channel file), or a
            case with NaN/inf voxels without ``nan_to_num``.
        ImageIOError: an image is unreadable, declares more voxel data than the memory budget
            (``MEDSEG_MAX_IMAGE_GB``) or has a zero, negative, NaN, inf or > 100 mm spacing.
        OverwriteError: an output exists, ``overwrite`` is False and the folder was not
            written by this same run (other models or options, or not by ``predict``).
        LockedError: another process is writing ``output_dir``.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    cases = find_input_cases(input_dir)
    if output_dir.resolve() == input_dir.resolve():
        raise ConfigError(f"{output_dir}: the output folder must differ from the input folder")
    models = [
        model_from_checkpoint(path)
        for path in find_checkpoints(
            results, configurations=configurations, folds=folds, checkpoint=checkpoint
        )
    ]
    previous = previous_stage_models(results, models, folds=folds, checkpoint=checkpoint)
    decision = load_postprocessing(results) if postprocess else None
    targets = [output_dir / f"{case.case_id}{file_ending(case.image_paths[0])}" for case in cases]
    npz = [output_dir / f"{case.case_id}.npz" for case in cases] if save_probabilities else []
    # D: what identifies the outputs; an option that changes them belongs here
    run = {
        "models": models_fingerprint([*models, *(previous or [])]),
        "mirror": mirror,
        "overlap": overlap,
        "postprocessing": decision,
    }
    dev = resolve_device(device)
    values = label_values(models[0][1])
    kept = 0
    with run_lock(output_dir, "written"):
        remove_stale_temporaries(output_dir)
        existing = outputs_to_verify(output_dir, [*targets, *npz], run, overwrite=overwrite)
        for case, target in tqdm(
            list(zip(cases, targets, strict=True)), desc="predict", disable=not progress
        ):
            probabilities_path = output_dir / f"{case.case_id}.npz"
            image, _ = read_case(case)
            if target in existing:  # D: an interrupted run of the same models wrote it
                problem = output_problem(
                    target, image, values, probabilities_path if save_probabilities else None
                )
                if problem is None:
                    kept += 1
                    continue
                log.warning("%s: %s; predicting case %s again", target, problem, case.case_id)
            image = checked_input(
                case,
                image,
                models[0][1].image_channels,  # A: input checks
                nan_to_num=nan_to_num,
            )
            for plan in {m[1].configuration: m[1] for m in models}.values():
                _warn_spacing(case.case_id, image, plan)
            try:
                probs, label = predict_case(
                    models,
                    image,
                    overlap=overlap,
                    mirror=mirror,
                    device=dev,
                    previous_stage=previous,
                )
            except MedsegError as err:
                raise type(err)(f"case {case.case_id}: {err}") from err
            if decision is not None:
                label = label.with_array(apply_postprocessing(label.array, decision))
            write_image(label, target, overwrite=overwrite or target in existing)
            if save_probabilities:
                _write_probabilities(probabilities_path, probs, values, image)
    if kept:
        log.info(
            "%d of %d case(s) were already predicted in %s by the same models and options: "
            "kept (--overwrite predicts them again)",
            kept,
            len(cases),
            output_dir,
        )
    return targets
