"""A site's side of federated training, without Flower: local steps on the shared engine.

:func:`local_round` runs a round's local steps through the engine's
:func:`~medseg.training.engine.train_step` (autocast, clipping, a non-finite step skipped),
with FedProx's proximal term added to the task's loss when ``mu > 0``. :class:`SiteTrainer`
is one site: its preprocessed store, the plan's segmentation task
(:func:`~medseg.training.segmentation.segmentation_task`: loss, sampler, augmentation,
learning-rate schedule) and its validation patches; it trains from global weights and
evaluates them on its own validation cases, returning weights and numbers only; with
``dp_clip > 0`` its update is clipped and noised before it leaves (:mod:`~.privacy`).
:func:`check_outgoing` is the privacy hook every reply passes before it leaves the site.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.device import resolve_device
from medseg.federated.aggregate import FederatedError, norm_keys, proximal_term
from medseg.federated.privacy import privatize
from medseg.planning.plan import Plans
from medseg.training.engine import Precision, Task, train_step
from medseg.training.segmentation import FoldData, PatchBatches, segmentation_task


class PrivacyError(FederatedError):
    """A reply would carry data (an image-shaped array, a case id, a path) off its site."""


def load_global(model: torch.nn.Module, state: Mapping[str, Any], keep: set[str]) -> None:
    """Load the global ``state`` into ``model``, except the ``keep`` keys (FedBN: local)."""
    own = model.state_dict()
    merged = {
        k: own[k] if k in keep else torch.as_tensor(np.asarray(v)).to(own[k].dtype)
        for k, v in state.items()
    }
    model.load_state_dict(merged)


def local_round(
    task: Task,
    batches: Iterable[Any],
    precision: Precision,
    *,
    mu: float = 0.0,
    first_step: int = 0,
) -> list[float]:
    """Train ``task.model`` on ``batches`` (one engine step each) from its current weights,
    which are the global model's; ``mu > 0`` adds ``mu / 2 * ||w - w_global||^2``.

    Returns:
        The loss of each step.
    """
    model = task.model
    params = [p for p in model.parameters() if p.requires_grad]
    step_task = task
    if mu > 0:
        anchor = [p.detach().clone() for p in model.parameters()]
        step_task = replace(
            task,
            loss=lambda b: task.loss(b) + proximal_term(model.parameters(), anchor, mu),
        )
    (task.train_mode or task.network.train)()
    losses = []
    for i, batch in enumerate(batches):
        if task.prepare is not None:
            batch = task.prepare(batch)
        task.set_learning_rate(first_step + i, None)
        losses.append(train_step(step_task, batch, precision, params).loss)
    return losses


def state_arrays(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The model's state as numpy arrays (what a site sends)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


class SiteTrainer:
    """One site's training and validation (module docstring).

    Args:
        results: the site's results folder (``plans.json``, ``preprocessed/<configuration>``).
        configuration: the plan to train (``2d``).
        local_steps: optimiser steps per round; rounds: the rounds of the run (for the
            learning-rate schedule over ``rounds * local_steps`` steps).
        fedbn: keep normalisation layers local (they are not loaded from the global model).
        dp_clip, dp_noise: client-side differential privacy: the update (local minus global
            weights) is clipped to L2 norm ``dp_clip`` and Gaussian noise of standard
            deviation ``dp_noise * dp_clip`` is added before it leaves; the training loss is
            then withheld (NaN). ``dp_clip = 0``: off.
    """

    def __init__(
        self,
        results: str | os.PathLike[str],
        configuration: str,
        *,
        local_steps: int,
        rounds: int,
        fedbn: bool = False,
        seed: int = 0,
        device: str | None = "cpu",
        val_batches: int = 2,
        dp_clip: float = 0.0,
        dp_noise: float = 0.0,
    ) -> None:
        results = Path(results)
        self.plan = Plans.from_json(results / "plans.json")[configuration]
        self.data = FoldData.open(results, self.plan, 0)
        dev = resolve_device(device)
        batches = PatchBatches(self.data, self.plan, dev, local_steps, 0, seed, 0)
        self.task = segmentation_task(self.plan, batches, rounds, val_batches=val_batches)
        self.precision = Precision(dev, False)
        self.local_steps = local_steps
        self.keep = norm_keys(self.task.model) if fedbn else set()
        self.local_state: dict[str, torch.Tensor] = {}
        self.dp_clip, self.dp_noise = float(dp_clip), float(dp_noise)
        self.forbidden = forbidden_shapes(self.data, self.plan)
        self.case_ids = list(self.data.train_ids) + list(self.data.val_ids)

    @property
    def num_examples(self) -> int:
        return len(self.data.train_ids)

    def train(
        self, state: Mapping[str, Any], server_round: int, *, mu: float = 0.0
    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Round ``server_round`` (1-based) from the global ``state``: new weights, metrics."""
        model = self.task.model
        load_global(model, state, set())
        if self.keep and self.local_state:
            model.load_state_dict({**model.state_dict(), **self.local_state})
        self.task.optimizer.state.clear()  # momentum restarts from the global model
        first = (server_round - 1) * self.local_steps
        losses = local_round(
            self.task, self.task.batches(server_round - 1), self.precision, mu=mu, first_step=first
        )
        arrays = state_arrays(model)
        self.local_state = {k: torch.from_numpy(arrays[k]) for k in self.keep}
        loss = float(np.mean(losses)) if losses and not self.dp_clip else math.nan
        metrics = {"num-examples": float(self.num_examples), "train_loss": loss}
        if self.dp_clip > 0:  # the noise's seed is fresh entropy: the server cannot redo it
            arrays = privatize(arrays, state, self.dp_clip, self.dp_noise)
        check_outgoing(arrays, metrics, self.forbidden, self.case_ids, self.data.store)
        return arrays, metrics

    def evaluate(self, state: Mapping[str, Any]) -> dict[str, float]:
        """Pseudo Dice of the global ``state`` (local norms under FedBN) on this site's
        validation patches: numbers only."""
        load_global(self.task.model, state, set())
        if self.keep and self.local_state:
            model = self.task.model
            model.load_state_dict({**model.state_dict(), **self.local_state})
        row = self.task.validate(False, [])
        metrics = {
            "num-examples": float(len(self.data.val_ids)),
            **{k: float(v) for k, v in row.items() if k.startswith("val_dice") and "ema" not in k},
        }
        check_outgoing({}, metrics, self.forbidden, self.case_ids, self.data.store)
        return metrics


def forbidden_shapes(data: FoldData, plan: Any) -> set[tuple[int, ...]]:
    """Spatial shapes a reply must never carry: the patch's, every case's and every slice's
    (any 2 or more of a case's axes, in order: a 2D plan trains on slices of 3D cases)."""
    shapes = {tuple(plan.patch_size)}
    for case_id in data.train_ids + data.val_ids:
        spatial = np.load(data.store / f"{case_id}.npy", mmap_mode="r").shape[1:]
        spatial = tuple(s for s in spatial if s != 1) or spatial
        for k in range(2, len(spatial) + 1):
            shapes.update(itertools.combinations(spatial, k))
    return shapes


def check_outgoing(
    arrays: Mapping[str, np.ndarray],
    metrics: Mapping[str, Any],
    forbidden: set[tuple[int, ...]],
    case_ids: Iterable[str],
    root: str | os.PathLike[str],
) -> int:
    """Refuse a reply that carries more than weights and numbers; returns how many entries
    (arrays and metrics) it checked.

    Raises:
        PrivacyError: an array whose trailing axes have an image's or a patch's spatial
            shape, a metric that is not a finite-or-NaN number, or a text holding a case id or
            a path of the site.
    """
    ids = [c for c in case_ids if c]
    for key, array in arrays.items():
        shape = tuple(np.shape(array))
        for n in range(2, len(shape) + 1):
            if shape[-n:] in forbidden:
                raise PrivacyError(f"reply refused: '{key}' {shape} is shaped like an image")
        _check_text(key, ids, root)
    for key, value in metrics.items():
        _check_text(key, ids, root)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise PrivacyError(f"reply refused: metric '{key}' is a {type(value).__name__}")
    return len(arrays) + len(metrics)


def _check_text(text: str, ids: list[str], root: str | os.PathLike[str]) -> None:
    if str(root) in text or os.sep in text or any(c in text for c in ids):
        raise PrivacyError(f"reply refused: '{text}' names a path or a case")
