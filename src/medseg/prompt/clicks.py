"""Simulated clicks for interactive segmentation, and the NoC metrics (RITM, SAM, MedSAM).

A simulated user clicks at the centre of the largest error region: the connected component
(face connectivity) with the most voxels among the false negatives and the false positives
of the current mask. A false-negative region gets a positive click, a false-positive region
a negative one. The centre is the voxel farthest from the region's border (the maximum of
its Euclidean distance transform; the image edge counts as border), the first one in array
order on a tie. The first click is the centre of the whole object (``first="center"``), or a
random voxel of it (``first="random"``).

Quality is measured by IoU and Dice after each click; NoC@85 / NoC@90 (number of clicks) use
the **IoU**, as RITM and SAM do: the first click count at which IoU >= 0.85 / 0.90, and
``max_clicks`` when it is never reached. Everything works in 2D and 3D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.prompt.everything import Predictor, as_model_input
from medseg.prompt.model import Click

FirstClick = Literal["center", "random"]


@dataclass
class ClickCurve:
    """Quality after each click of one simulated session.

    Attributes:
        iou: IoU after click 1, 2, ...
        dice: Dice after click 1, 2, ...
        clicks: The clicks made.
    """

    iou: list[float] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    clicks: list[Click] = field(default_factory=list)


def iou_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def dice_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    total = pred.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(pred, truth).sum() / total)


def region_center(region: np.ndarray) -> tuple[int, ...]:
    """The voxel of a non-empty region farthest from its border (the image edge included).

    Example:
        >>> region_center(np.pad(np.ones((5, 5), bool), (1, 3)))
        (3, 3)
        >>> region_center(np.ones((3, 3), bool))  # the image edge is border too
        (1, 1)
    """
    distance = ndimage.distance_transform_edt(np.pad(region, 1))
    distance = distance[tuple(slice(1, -1) for _ in region.shape)]
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(distance)), region.shape))


def _largest_component(errors: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest connected component of ``errors`` and its size (0 when empty)."""
    labels, count = ndimage.label(errors)
    if count == 0:
        return errors, 0
    sizes = np.bincount(labels.ravel())[1:]
    best = int(np.argmax(sizes))
    return labels == best + 1, int(sizes[best])


def next_click(pred: np.ndarray, truth: np.ndarray) -> Click | None:
    """The click a user would make next: the centre of the largest error region.

    Args:
        pred: ``(*spatial)`` current mask (bool).
        truth: ``(*spatial)`` reference mask (bool).

    Returns:
        A positive click in the largest false-negative region or a negative click in the
        largest false-positive region (the larger wins, false negatives on a tie), or None
        when the mask is perfect.

    Example:
        >>> truth = np.zeros((5, 7), bool); truth[1:4, 1:4] = True
        >>> next_click(np.zeros((5, 7), bool), truth)
        Click(position=(2, 2), positive=True)
    """
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ConfigError(f"pred has shape {pred.shape}, truth {truth.shape}; they must match")
    missed, missed_size = _largest_component(truth & ~pred)
    extra, extra_size = _largest_component(pred & ~truth)
    if missed_size == 0 and extra_size == 0:
        return None
    if missed_size >= extra_size:
        return Click(region_center(missed), True)
    return Click(region_center(extra), False)


def _first_click(truth: np.ndarray, first: FirstClick, rng: np.random.Generator) -> Click:
    if first == "center":
        return Click(region_center(truth), True)
    if first == "random":
        voxels = np.argwhere(truth)
        return Click(tuple(int(i) for i in voxels[rng.integers(len(voxels))]), True)
    raise ConfigError(f"first={first!r}: choose 'center' or 'random'")


def state_mask(state: Any) -> np.ndarray:
    """The current mask ``(*image_size)`` of a ``RefineState`` after a click: the proposal
    of its ``result`` with the highest predicted IoU, thresholded at logit 0."""
    result = state.result
    if result is None:
        raise ConfigError("the refine state has no mask yet: refine it with a click first")
    best = int(result.iou[0].argmax())
    return (result.logits[0, best] > 0).cpu().numpy()


@torch.no_grad()
def simulate_clicks(
    model: Predictor,
    image: torch.Tensor | np.ndarray,
    truth: np.ndarray,
    *,
    max_clicks: int = 10,
    first: FirstClick = "center",
    seed: int = 0,
) -> ClickCurve:
    """One simulated interactive session: ``embed`` once, then ``start`` and ``refine``.

    Args:
        model: A predictor (``PromptableModel``), 2D or 3D.
        image: ``(C, *image_size)`` or ``(1, C, *image_size)``, preprocessed.
        truth: ``(*image_size)`` reference mask of the object; must not be empty.
        max_clicks: Number of clicks.
        first: The first click: the object's centre, or a random voxel of it.
        seed: Seed of the random first click.

    Returns:
        IoU and Dice after each click (``max_clicks`` values; once the mask is perfect no
        more clicks are made and the last values repeat).
    """
    if max_clicks < 1:
        raise ConfigError(f"max_clicks={max_clicks}: it must be at least 1")
    if first not in ("center", "random"):
        raise ConfigError(f"first={first!r}: choose 'center' or 'random'")
    batch = as_model_input(model, image)
    truth = np.asarray(truth, bool)
    if truth.shape != tuple(batch.shape[2:]):
        raise ConfigError(f"truth has shape {truth.shape}; the image {tuple(batch.shape[2:])}")
    if not truth.any():
        raise ConfigError("truth is empty: click simulation needs an object to click on")
    state = model.start(model.embed(batch))
    curve = ClickCurve()
    click: Click | None = _first_click(truth, first, np.random.default_rng(seed))
    for _ in range(max_clicks):
        if click is not None:
            state = model.refine(state, click)
            curve.clicks.append(click)
            pred = state_mask(state)
        curve.iou.append(iou_score(pred, truth))
        curve.dice.append(dice_score(pred, truth))
        click = next_click(pred, truth)
    return curve


def noc(curve_values: Sequence[float], threshold: float, max_clicks: int) -> int:
    """Number of clicks to reach ``threshold``: the first 1-based index of a value at least
    ``threshold`` among the first ``max_clicks``, and ``max_clicks`` when none is.

    Example:
        >>> noc([0.5, 0.86, 0.91], 0.85, 3), noc([0.5, 0.86, 0.91], 0.95, 3)
        (2, 3)
    """
    for index, value in enumerate(curve_values[:max_clicks]):
        if value >= threshold:
            return index + 1
    return max_clicks


def evaluate_clicks(
    model: Predictor,
    images: Sequence[torch.Tensor | np.ndarray],
    truths: Sequence[np.ndarray],
    max_clicks: int = 10,
) -> dict[str, Any]:
    """Simulated-click evaluation over cases (IoU-based NoC, as RITM and SAM).

    Args:
        model: A predictor (``PromptableModel``).
        images: Per case ``(C, *image_size)``.
        truths: Per case ``(*image_size)`` reference mask of one object.
        max_clicks: Clicks per case.

    Returns:
        ``mean_iou`` and ``mean_dice`` (lists: the mean after click 1..max_clicks),
        ``noc85`` and ``noc90`` (mean NoC@85 / NoC@90 on IoU), ``nof85`` and ``nof90``
        (cases that never reach the threshold), and ``num_cases``.
    """
    if len(images) != len(truths) or not images:
        raise ConfigError(
            f"got {len(images)} images and {len(truths)} truths; give the same number, at least one"
        )
    curves = [
        simulate_clicks(model, image, truth, max_clicks=max_clicks)
        for image, truth in zip(images, truths, strict=True)
    ]
    summary: dict[str, Any] = {
        "mean_iou": np.mean([c.iou for c in curves], axis=0).tolist(),
        "mean_dice": np.mean([c.dice for c in curves], axis=0).tolist(),
        "num_cases": len(curves),
    }
    for percent in (85, 90):
        threshold = percent / 100
        summary[f"noc{percent}"] = float(
            np.mean([noc(c.iou, threshold, max_clicks) for c in curves])
        )
        summary[f"nof{percent}"] = sum(max(c.iou) < threshold for c in curves)
    return summary
