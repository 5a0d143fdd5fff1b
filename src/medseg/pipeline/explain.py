"""``medseg classify explain``: where a classifier looks.

``classify_explain`` draws Grad-CAM (or saliency) overlays for a few images of each class;
``gradcam_localisation`` scores them where the truth is known: how much of the Grad-CAM mass
falls inside the region that decides the class (the classification demo's lesions).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from medseg.data.classification import ClassificationSet, load_classification
from medseg.device import resolve_device
from medseg.errors import ConfigError
from medseg.inference.classify import find_classifier_checkpoints
from medseg.inference.explain import grad_cam, mass_inside, saliency, save_overlay
from medseg.planning.classifier import normalize_images
from medseg.training import load_classifier


def classify_explain(
    run: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    split: str = "test",
    out: str | os.PathLike[str] | None = None,
    count: int = 8,
    method: str = "auto",
    layer: str | None = None,
    device: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Overlays of where the first model of ``run`` looks, for ``count`` images of ``split``.

    Images are picked round-robin over the reference classes (so every class is shown).
    ``method``: ``gradcam``, ``saliency`` or ``auto`` (Grad-CAM where the network has
    convolutions, saliency for a ViT). ``layer``: the module Grad-CAM explains (default the
    last feature map; an earlier one, e.g. ``backbone.layer3``, is sharper on small images).
    """
    if method not in ("auto", "gradcam", "saliency"):
        raise ConfigError(f"method must be auto, gradcam or saliency, got {method!r}")
    model, config, _ = load_classifier(find_classifier_checkpoints(run)[0])
    dataset = load_classification(data, split, task=config.task)  # type: ignore[arg-type]
    out_dir = Path(out) if out is not None else Path(run) / "explain"
    picks = _round_robin(dataset, count)
    dev = resolve_device(device)
    model.to(dev)
    if method == "auto":
        method = "saliency" if config.network in ("vit", "capsnet") else "gradcam"
    paths = []
    for i in picks:
        x = normalize_images(dataset.images[i : i + 1], config).to(dev)
        heat = grad_cam(model, x, layer=layer) if method == "gradcam" else saliency(model, x)
        with torch.no_grad():
            probs = (
                model(x).float().softmax(1)[0]
                if config.task == "classification"
                else model(x).float()[0]
            )
        predicted = int(probs.argmax()) if config.task == "classification" else None
        truth = (
            dataset.class_names[int(dataset.labels[i])] if config.task == "classification" else ""
        )
        label = (
            f"reference {truth}, predicted {config.class_names[predicted]} "
            f"({float(probs[predicted]):.2f})"
            if predicted is not None
            else "regression"
        )
        name = f"{len(paths):02d}_{Path(dataset.ids[i]).stem.replace(':', '_')}.png"
        paths.append(
            save_overlay(
                dataset.images[i],
                heat[0].cpu(),
                out_dir / name,
                title=f"{method}: {label}",
                overwrite=overwrite,
            )
        )
    return paths


def _round_robin(dataset: ClassificationSet, count: int) -> list[int]:
    if dataset.task != "classification":
        return list(range(min(count, len(dataset))))
    queues = [list(np.flatnonzero(dataset.labels == k)) for k in range(dataset.num_classes)]
    picks: list[int] = []
    while len(picks) < min(count, len(dataset)):
        for queue in queues:
            if queue and len(picks) < count:
                picks.append(int(queue.pop(0)))
    return picks


def gradcam_localisation(
    run: str | os.PathLike[str],
    images: np.ndarray,
    masks: np.ndarray,
    *,
    target: int = 1,
    dilation: int = 2,
    device: str | None = None,
) -> dict[str, Any]:
    """How much of the Grad-CAM mass of the first model of ``run`` falls inside known regions.

    Each mask is dilated by ``dilation`` pixels first (Grad-CAM maps are coarse). The mean
    share inside is compared with the mean area the dilated masks cover, which is what a map
    spread uniformly over the image would score.

    Args:
        run: a ``classify_train`` run folder.
        images: ``(N, C, *spatial)`` images as stored (normalised here like the model's input).
        masks: ``(N, *spatial)`` bool, the region of each image that shows class ``target``.
        target: the class whose Grad-CAM is measured.
        dilation: pixels (voxels) added around each mask.
        device: where the model runs (None: CUDA when available).

    Returns:
        ``gradcam_mass_inside_lesion`` (mean share inside, over the images whose heatmap is
        not all zero), ``lesion_area_fraction`` (mean share of the image inside),
        ``enrichment`` (their ratio: 1 is no better than a uniform map) and ``images`` (how
        many had a heatmap to measure).
    """
    model, config, _ = load_classifier(find_classifier_checkpoints(run)[0])
    dev = resolve_device(device)
    model.to(dev)
    inside, area = [], []
    for i in range(len(images)):
        x = normalize_images(images[i : i + 1], config).to(dev)
        heat = grad_cam(model, x, target=target)[0].cpu().numpy()
        region = ndimage.binary_dilation(masks[i], iterations=dilation)
        inside.append(mass_inside(heat, region))
        area.append(float(region.mean()))
    share, fraction = float(np.nanmean(inside)), float(np.mean(area))
    return {
        "gradcam_mass_inside_lesion": share,
        "lesion_area_fraction": fraction,
        "enrichment": share / fraction,
        "images": int(np.isfinite(inside).sum()),
    }
