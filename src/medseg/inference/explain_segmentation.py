"""Explain a segmentation: where the network looks when it predicts one label.

The classifier tools of ``medseg.inference.explain`` (Grad-CAM, saliency) explain a ``(B, K)``
score. For a segmentation the score is the label's **logit summed over its predicted
region** (``RegionScore``): "why did the network call these voxels liver?". When nothing was
predicted for the label, the score is the logit summed over the whole image (with a warning):
"what speaks for liver anywhere?".

Steps (:func:`explain_prediction`), with one fold's model:

1. the image is preprocessed exactly as for prediction (crop to the non-zero box, resample to
   the plan's spacing, normalise: ``medseg.inference.ensemble``);
2. the label's region is the argmax of that model's sliding-window probabilities on the
   preprocessed grid (``predict_preprocessed``);
3. the whole preprocessed image (zero-padded to a multiple of the network's
   ``required_divisor``) goes through the network once; Grad-CAM and saliency of the region
   score are taken (``grad_cam``, ``saliency``);
4. both maps (each divided by its maximum, in [0, 1]) are mapped back to the input's grid:
   resampled linearly to the crop box and zero outside it.

Grad-CAM's layer: by default the feature map that feeds the network's output head, i.e. the
last decoder stage's output at full resolution (for medseg's U-Nets ``decoder.stages.<n-2>``
with ``n`` encoder stages: the decoder runs deepest first). It is found by hooks
(``medseg.inference.explain_region.segmentation_cam_layer``): the head is the last convolution
to run whose output has the logits' shape; the layer is the outermost module that returned the
head's input. Earlier decoder stages (``layer="decoder.stages.0"``, the deepest) are coarser
but more semantic.

The whole image runs through the network at once (not by tiles), so memory grows with the
image: fine for the CPU on small volumes, use a GPU (``device="cuda"``) for full CT volumes.
A ``2d`` plan on 3D images and cascade stages are not supported yet (a clear error says so).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from medseg.data.preprocess import resample_probabilities
from medseg.device import resolve_device
from medseg.errors import ConfigError, DatasetError
from medseg.fileutil import check_writable
from medseg.inference.ensemble import (
    _preprocessed_group,
    label_values,
    predict_preprocessed,
)
from medseg.inference.explain import grad_cam, saliency, save_overlay
from medseg.inference.explain_region import RegionScore, segmentation_cam_layer
from medseg.inference.onnx_export import single_checkpoint
from medseg.io import Image, file_ending, read_image, write_image
from medseg.planning.plan import Plan
from medseg.training import model_from_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentationExplanation:
    """What :func:`explain_prediction` returns; every image is on the input's grid.

    Attributes:
        gradcam: Grad-CAM heatmap in [0, 1] (float32).
        saliency: input-gradient saliency in [0, 1] (float32).
        region: the predicted region of the label (uint8 0/1).
        label_value: the explained label value.
        layer: the network layer Grad-CAM explained.
        whole_image: True when the region was empty and the whole image was scored.
    """

    gradcam: Image
    saliency: Image
    region: Image
    label_value: int
    layer: str
    whole_image: bool


def label_value_of(plan: Plan, name: str) -> int:
    """The value of the foreground label called ``name`` in the plan.

    Raises:
        ConfigError: ``name`` is not a foreground label of the plan (lists the names).
    """
    classes = set(label_values(plan)) - {0}  # not the ``ignore`` label
    values = {
        n: v
        for n, v in plan.labels.items()
        if isinstance(v, int) and not isinstance(v, bool) and v in classes
    }
    if name not in values:
        raise ConfigError(
            f"label {name!r} is not a foreground label of the {plan.name} model; "
            f"its labels are: {', '.join(sorted(values, key=values.get)) or '(none)'}"
        )
    return int(values[name])


def _padded(array: np.ndarray, divisor: Sequence[int]) -> np.ndarray:
    pads = [(0, -n % d) for n, d in zip(array.shape[1:], divisor, strict=True)]
    return np.pad(array, [(0, 0), *pads])


def _on_input_grid(heat: np.ndarray, props: dict[str, Any]) -> np.ndarray:
    """A ``(*preprocessed)`` map on the input grid: resampled linearly to the crop box, zero
    outside it, clipped to [0, 1]."""
    crop = resample_probabilities(
        heat[None].astype(np.float32),
        tuple(props["shape_after_crop"]),
        separate_z=props.get("separate_z"),
    )[0]
    full = np.zeros(props["original_shape"], dtype=np.float32)
    box = tuple(slice(a, b) for a, b in zip(props["crop_start"], props["crop_stop"], strict=True))
    full[box] = crop
    return np.clip(full, 0.0, 1.0)


def _explained_channel(plan: Plan, image: Image, label_value: int) -> int:
    """The output channel of ``label_value``, once the plan and image are checked explainable.

    Raises:
        ConfigError: a label value not in the plan; a cascade or ``2d``-on-3D plan.
        DatasetError: the image's channel count differs from the plan's.
    """
    values = label_values(plan)
    if label_value not in values or label_value == 0:
        raise ConfigError(f"label value {label_value} is not a foreground label of {plan.labels}")
    if plan.previous_stage:
        raise ConfigError(
            f"explaining a cascade stage ({plan.name}) is not supported; explain its "
            f"{plan.previous_stage} model or a single-stage configuration"
        )
    if plan.spatial_dims != image.spatial_dims:
        raise ConfigError(
            f"the {plan.name} model is {plan.spatial_dims}D and the image {image.spatial_dims}D; "
            "explain a 3D configuration (2d-on-3D explanations are not supported yet)"
        )
    if image.num_channels != plan.image_channels:
        raise DatasetError(
            f"the image has {image.num_channels} channel(s), the {plan.name} model expects "
            f"{plan.image_channels}"
        )
    return values.index(label_value)


def explain_prediction(
    model: nn.Module,
    plan: Plan,
    image: Image,
    label_value: int,
    *,
    layer: str | None = None,
    mirror: bool = True,
    overlap: float = 0.5,
    device: torch.device | str | None = None,
) -> SegmentationExplanation:
    """Grad-CAM and saliency of one label's predicted region (see the module docstring).

    Args:
        model: one fold's network (from ``model_from_checkpoint``).
        plan: its plan.
        image: ``(*spatial)`` or ``(C, *spatial)`` input with its geometry (not preprocessed).
        label_value: the label to explain (a foreground value of ``plan.labels``).
        layer: the network module Grad-CAM explains (dotted name, e.g.
            ``"decoder.stages.0"``); None: the map feeding the output head.
        mirror, overlap: of the sliding-window prediction that defines the region.
        device: where the network runs (default: CUDA when available).

    Returns:
        :class:`SegmentationExplanation` on the input's grid.

    Raises:
        ConfigError: a label value not in the plan; a cascade or ``2d``-on-3D plan; a bad
            ``layer``.
        DatasetError: the image's channel count differs from the plan's.
    """
    channel = _explained_channel(plan, image, label_value)
    dev = resolve_device(device)
    channels = image.channels_first().astype(np.float32, copy=False)
    group = _preprocessed_group(channels, image, plan)
    probs = predict_preprocessed(
        model, plan, group.array, overlap=overlap, mirror=mirror, device=dev
    )
    region = probs.argmax(axis=0) == channel
    whole_image = not region.any()
    if whole_image:
        warnings.warn(
            f"nothing predicted for label {label_value}: explaining its logit summed over the "
            "whole image",
            stacklevel=2,
        )
        region = np.ones_like(region)
    divisor = tuple(getattr(model, "required_divisor", (1,) * plan.spatial_dims))
    x = torch.from_numpy(_padded(group.array, divisor))[None].to(dev)
    mask = torch.from_numpy(_padded(region[None], divisor)[0]).to(dev)
    scorer = RegionScore(model.to(dev), channel, mask)
    name = layer or segmentation_cam_layer(model.eval(), x)
    crop = (slice(None), *(slice(0, n) for n in group.array.shape[1:]))
    cam = grad_cam(scorer, x, target=0, layer=f"network.{name}")[crop][0].cpu().numpy()
    sal = saliency(scorer, x, target=0)[crop][0].cpu().numpy()
    # the region on the input grid: the label's channel of the one-hot region, mapped back
    region_in = _on_input_grid(region.astype(np.float32), group.props) >= 0.5
    return SegmentationExplanation(
        gradcam=image_like(image, _on_input_grid(cam, group.props)),
        saliency=image_like(image, _on_input_grid(sal, group.props)),
        region=image_like(image, (region_in & (not whole_image)).astype(np.uint8)),
        label_value=int(label_value),
        layer=name,
        whole_image=whole_image,
    )


def image_like(image: Image, array: np.ndarray) -> Image:
    """``array`` ``(*spatial)`` with ``image``'s spacing, origin and direction."""
    return Image(array, image.spacing, image.origin, image.direction)


def case_name(path: str | os.PathLike[str]) -> str:
    """The case id of an image path: the file name without its ending and channel suffix.

    Example:
        >>> case_name("imagesTs/liver_007_0000.nii.gz")
        'liver_007'
    """
    path = Path(path)
    ending = "" if path.is_dir() else file_ending(path)
    stem = path.name[: len(path.name) - len(ending)]
    return re.sub(r"_\d{4}$", "", stem) or stem


def _most_predicted_slice(region: np.ndarray) -> int | None:
    if region.ndim == 2:
        return None
    counts = region.reshape(len(region), -1).sum(axis=1)
    return int(counts.argmax()) if counts.max() > 0 else len(region) // 2


def _save_overlays(
    result: SegmentationExplanation,
    image: Image,
    targets: Sequence[Path],
    *,
    case: str,
    label: str,
    overwrite: bool,
) -> None:
    """Save the Grad-CAM and saliency overlays (``targets`` in that order) on the image's first
    channel, on the axial slice (array axis 0) with the most predicted voxels of the label (the
    middle one when nothing was predicted)."""
    z = _most_predicted_slice(result.region.array)
    picture = image.channels_first()[0]
    reason = "middle: nothing predicted" if result.whole_image else "most predicted voxels"
    where = "" if z is None else f", slice {z} ({reason})"
    for heat, target, kind in (
        (result.gradcam, targets[0], "Grad-CAM"),
        (result.saliency, targets[1], "saliency"),
    ):
        shown_image = picture if z is None else picture[z]
        shown_heat = heat.array if z is None else heat.array[z]
        save_overlay(
            shown_image,
            shown_heat,
            target,
            title=f"{case}: {kind} of {label!r}{where}",
            overwrite=overwrite,
        )


def explain_segmentation(
    results: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    label: str,
    configuration: str | None = None,
    fold: int | str | None = None,
    checkpoint: Literal["best", "latest"] = "best",
    layer: str | None = None,
    mirror: bool = True,
    device: torch.device | str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Explain one label of one fold's prediction for an image; write maps and overlays.

    Writes, in ``out_dir`` (``<case>`` from the first image's name):

    * ``<case>_gradcam_<label>.nii.gz`` and ``<case>_saliency_<label>.nii.gz``: float32 maps
      in [0, 1] in the input's geometry;
    * ``<case>_gradcam_<label>.png`` and ``<case>_saliency_<label>.png``: the image in grey
      with the map over it, on the axial slice (array axis 0) with the most predicted voxels
      of the label.

    Args:
        results: the results folder.
        images: the image file (or DICOM folder), or one file per channel in channel order.
        out_dir: the output folder (created).
        label: the label's name as in the plan's ``labels`` (dataset.json).
        configuration, fold, checkpoint: the one model to explain (each may be left out when
            only one is trained).
        layer: Grad-CAM layer (default: the map feeding the output head).
        mirror: test-time mirroring for the prediction that defines the region.
        device: where the network runs.
        overwrite: replace existing outputs.

    Returns:
        The four written paths (maps, then overlays).

    Raises:
        ConfigError: unknown label name (lists the plan's names), ambiguous or missing model,
            unsupported plan (see :func:`explain_prediction`).
        DatasetError: the number of images differs from the plan's channels.
        ImageIOError: an unreadable image, or channels on different grids.
        OverwriteError: an output exists and ``overwrite`` is False.
    """
    paths = [Path(images)] if isinstance(images, (str, os.PathLike)) else [Path(p) for p in images]
    if not paths:
        raise ConfigError("no image given")
    model, plan = model_from_checkpoint(single_checkpoint(results, configuration, fold, checkpoint))
    value = label_value_of(plan, label)
    out = Path(out_dir)
    case, safe_label = case_name(paths[0]), re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
    targets = [
        out / f"{case}_{kind}_{safe_label}{ext}"
        for ext in (".nii.gz", ".png")
        for kind in ("gradcam", "saliency")
    ]
    for target in targets:
        check_writable(target, overwrite=overwrite)
    image = _read_channels(paths)
    result = explain_prediction(
        model, plan, image, value, layer=layer, mirror=mirror, device=device
    )
    write_image(result.gradcam, targets[0], overwrite=overwrite)
    write_image(result.saliency, targets[1], overwrite=overwrite)
    _save_overlays(result, image, targets[2:], case=case, label=label, overwrite=overwrite)
    log.info("explained %r of %s with layer %s", label, case, result.layer)
    return targets


def _read_channels(paths: Sequence[Path]) -> Image:
    from medseg.errors import ImageIOError
    from medseg.io import grid_mismatches

    channels = [read_image(p) for p in paths]
    if len(channels) == 1:
        return channels[0]
    for path, other in zip(paths[1:], channels[1:], strict=True):
        problems = grid_mismatches(channels[0], other)
        if problems or other.has_channels:
            raise ImageIOError(
                f"{path}: channel not on the grid of {paths[0]} ({'; '.join(problems)})"
            )
    first = channels[0]
    return first.with_array(np.stack([c.array for c in channels]))


__all__ = [
    "RegionScore",
    "SegmentationExplanation",
    "case_name",
    "explain_prediction",
    "explain_segmentation",
    "label_value_of",
    "segmentation_cam_layer",
]
