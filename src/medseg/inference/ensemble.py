"""Ensemble prediction of one image with trained models, in the image's own geometry
(``predict_case``); ``medseg.inference.predict`` runs it over a folder.

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
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.data.cascade import foreground_one_hot
from medseg.data.preprocess import class_values, resample_probabilities
from medseg.device import resolve_device
from medseg.errors import ConfigError, DatasetError, MedsegError
from medseg.inference.export import label_image, probabilities_to_label, probabilities_to_original
from medseg.inference.sliding_window import sliding_window_inference
from medseg.io import Image
from medseg.planning.plan import Plan
from medseg.planning.preprocessing import case_target_spacing, preprocess_arrays


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


def _check_previous_stage(
    models: Sequence[tuple[nn.Module, Plan]],
    image: Image,
    previous_stage: Sequence[tuple[nn.Module, Plan]] | None,
    previous_segmentation: np.ndarray | None,
) -> None:
    """Cascade models need the previous stage's models (fit for ``image``) or its segmentation."""
    if any(plan.previous_stage for _, plan in models) and previous_segmentation is None:
        if not previous_stage:
            stages = sorted({plan.previous_stage for _, plan in models if plan.previous_stage})
            raise ConfigError(
                f"cascade models need the previous stage's models ({', '.join(stages)}): "
                "pass previous_stage=[(network, plan), ...]"
            )
        _check_models([*previous_stage, models[0]], image)


def _preprocessing_key(plan: Plan, spacing: tuple[float, ...]) -> str:
    """Equal keys mean identical preprocessing (same target spacing, intensity corrections and
    normalisation)."""
    parts = [
        case_target_spacing(plan, spacing),
        plan.normalization,
        plan.intensity,
        plan.n4_channels,
        plan.histogram_landmarks,
    ]
    return json.dumps(parts, sort_keys=True, default=list)


def tta_mirror_axes(plan: Plan) -> tuple[int, ...]:
    """The patch axes test-time augmentation mirrors: those training mirrored (the plan's
    ``mirror_axes``; every axis when the plan names none). A structure never seen mirrored
    in training (left/right labels) is never mirrored at test time either."""
    return tuple(range(plan.spatial_dims)) if plan.mirror_axes is None else plan.mirror_axes


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
        mirror: average over mirroring along the plan's ``mirror_axes`` (the axes training
            mirrored; every axis of the network by default).
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
    axes = tta_mirror_axes(plan) if mirror else None
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


@dataclass
class _Group:
    """Models sharing one preprocessing: the preprocessed image, its properties (with the
    input's geometry), the previous stage's one-hot channels once needed, and the running
    sum of the members' probabilities on the group's grid."""

    array: np.ndarray
    props: dict[str, Any]
    previous: np.ndarray | None = None
    probs_sum: np.ndarray | None = None
    count: int = 0

    def add(self, probs: np.ndarray) -> None:
        self.probs_sum = probs if self.probs_sum is None else self.probs_sum + probs
        self.count += 1

    def on_original_grid(self) -> np.ndarray:
        """The group's summed probabilities (its mean times its count) on the input's grid."""
        assert self.probs_sum is not None  # a group is made for a model, which adds to it
        return probabilities_to_original(self.probs_sum / self.count, self.props) * self.count


def _preprocessed_group(channels: np.ndarray, image: Image, plan: Plan) -> _Group:
    """``image`` (``channels``: its ``(C, *spatial)`` float32 array) preprocessed for ``plan``."""
    array, _, props = preprocess_arrays(channels, None, image.spacing, plan)
    geometry = {
        "original_shape": list(image.spatial_shape),
        "original_spacing": list(image.spacing),
        "origin": list(image.origin),
        "direction": list(image.direction),
    }
    return _Group(array, {**props, **geometry})


def _previous_channels(
    plan: Plan,
    group: _Group,
    channels: np.ndarray,
    spacing: tuple[float, ...],
    previous_stage: Sequence[tuple[nn.Module, Plan]] | None,
    previous_segmentation: np.ndarray | None,
    **kwargs: Any,
) -> np.ndarray:
    """The cascade's extra input channels on ``group``'s grid: the one-hot foreground of the
    given ``previous_segmentation``, else of the ``previous_stage`` ensemble's prediction."""
    if previous_segmentation is not None:
        indices = np.asarray(previous_segmentation)
        indices = indices[0] if indices.ndim == group.array.ndim else indices
        if indices.shape != group.array.shape[1:]:
            raise ConfigError(
                f"previous_segmentation {indices.shape} is not on the "
                f"{plan.configuration} grid {group.array.shape[1:]}"
            )
    else:
        assert previous_stage is not None
        indices = _previous_on_grid(previous_stage, channels, spacing, group.props, **kwargs)
    one_hot = torch.as_tensor(np.array(indices))[None, None]
    return foreground_one_hot(one_hot, plan.num_classes)[0].numpy()


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
        mirror: test-time mirroring along the plan's mirror_axes (every axis by default).
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
    _check_previous_stage(models, image, previous_stage, previous_segmentation)
    options = {
        "overlap": overlap,
        "mirror": mirror,
        "device": device,
        "sw_batch_size": sw_batch_size,
    }
    channels = image.channels_first().astype(np.float32, copy=False)
    # each model's probabilities on its group's grid (a group: one preprocessing)
    groups: dict[str, _Group] = {}
    for model, plan in models:
        key = _preprocessing_key(plan, image.spacing)
        if key not in groups:
            groups[key] = _preprocessed_group(channels, image, plan)
        group = groups[key]
        net_input = group.array
        if plan.previous_stage:
            if group.previous is None:
                group.previous = _previous_channels(
                    plan,
                    group,
                    channels,
                    image.spacing,
                    previous_stage,
                    previous_segmentation,
                    **options,
                )
            net_input = np.concatenate([net_input, group.previous])
        group.add(predict_preprocessed(model, plan, net_input, patch_size=patch_size, **options))
    # the groups back on the input's grid, weighted by their number of models
    total = np.zeros((models[0][1].num_classes, *image.spatial_shape), dtype=np.float32)
    for group in groups.values():
        total += group.on_original_grid()
    total /= len(models)
    label = probabilities_to_label(total, label_values(models[0][1]))
    return total, label_image(label, next(iter(groups.values())).props)
