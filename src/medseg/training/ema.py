"""Weight EMA: an exponential moving average of a model's weights, for any task on the engine.

After every optimiser step that was not skipped, each floating-point entry of the model's
``state_dict`` (parameters and float buffers such as batch-norm statistics) moves toward the
trained weights::

    ema <- d * ema + (1 - d) * weights,    d = min(decay, (1 + n) / (10 + n))

where ``n`` counts the updates so far. The second term is the usual warm-up of the decay
(TensorFlow's ``ExponentialMovingAverage(num_updates=...)``): early on the average follows the
weights closely, so a short run is not dominated by the random initialisation (with
``decay = 0.99`` the rule reaches 0.99 after 890 updates). Integer entries (batch norm's
``num_batches_tracked``) are copied. ``decay = 0`` gives the plain weights.

The engine (``run_training(ema_decay=...)``) validates and saves with the EMA weights swapped
in: a checkpoint's ``network_state`` holds the EMA (so inference, ``validate_fold`` and transfer
use them unchanged), and ``ema`` holds ``{"decay", "updates", "train_network_state"}``, the
weights the optimiser is training, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.training.checkpoint import load_checkpoint

log = logging.getLogger(__name__)
CHECKPOINT_KEY = "ema"


def check_decay(decay: float) -> float:
    """``decay`` if it is a number in [0, 1).

    Raises:
        ConfigError: otherwise, naming the value.
    """
    if not (isinstance(decay, int | float) and math.isfinite(decay) and 0 <= decay < 1):
        raise ConfigError(f"ema_decay must be a number in [0, 1) (0: off), got {decay!r}")
    return float(decay)


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class WeightEMA:
    """The moving average of ``model``'s weights, started from its current weights."""

    def __init__(self, model: nn.Module, decay: float, *, updates: int = 0) -> None:
        self.decay, self.updates = check_decay(decay), updates
        self.shadow = _copy_state(model)

    def rate(self) -> float:
        """The decay ``d`` of the next update (see the module docstring)."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step toward ``model``'s current weights."""
        d = self.rate()
        for key, value in model.state_dict().items():
            shadow = self.shadow[key]
            if shadow.is_floating_point():
                shadow.mul_(d).add_(value.detach().to(shadow.dtype), alpha=1 - d)
            else:
                shadow.copy_(value)
        self.updates += 1

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
        """``model`` holds the EMA weights inside the block (yields a copy of its training
        weights) and its training weights again after it."""
        trained = _copy_state(model)
        model.load_state_dict(self.shadow)
        try:
            yield trained
        finally:
            model.load_state_dict(trained)

    def checkpoint_entry(self, trained: dict[str, torch.Tensor]) -> dict[str, Any]:
        """What a checkpoint keeps besides the EMA weights (its ``network_state``)."""
        return {"decay": self.decay, "updates": self.updates, "train_network_state": trained}

    @classmethod
    def resume(cls, model: nn.Module, entry: dict[str, Any]) -> WeightEMA:
        """The EMA of a checkpoint whose ``network_state`` (the EMA weights) ``model`` holds;
        loads the checkpoint's training weights into ``model``.

        Raises:
            ConfigError: the entry lacks a key or holds a bad decay.
        """
        try:
            ema = cls(model, entry["decay"], updates=int(entry["updates"]))
            model.load_state_dict(entry["train_network_state"])
        except (KeyError, TypeError) as error:
            raise ConfigError(
                f"checkpoint's '{CHECKPOINT_KEY}' entry is incomplete or malformed ({error})"
            ) from None
        return ema


def start_ema(model: nn.Module, resumed_from: Path | None, decay: float) -> WeightEMA | None:
    """A run's weight EMA: the one in the checkpoint ``resumed_from`` (whose ``network_state``,
    the EMA weights, ``model`` holds; ``model`` gets the training weights back; the recorded
    decay is kept), else a new one over ``model``'s weights when ``decay`` > 0, else None."""
    entry = None
    if resumed_from is not None:
        entry = load_checkpoint(resumed_from, kind="weights").get(CHECKPOINT_KEY)
    if entry is None:
        return WeightEMA(model, decay) if check_decay(decay) > 0 else None
    ema = WeightEMA.resume(model, entry)
    if ema.decay != decay:
        log.warning(
            "%s: resumed with the weight EMA decay it recorded (%g), not %g",
            resumed_from,
            ema.decay,
            decay,
        )
    return ema


@contextlib.contextmanager
def ema_weights(
    model: nn.Module, checkpoint: dict[str, Any], ema: WeightEMA | None
) -> Iterator[None]:
    """Inside the block ``model`` holds the EMA weights and ``checkpoint`` (a task's extra
    checkpoint entries) the :meth:`WeightEMA.checkpoint_entry`; nothing changes without an EMA."""
    if ema is None:
        yield
        return
    with ema.swapped_in(model) as trained:
        checkpoint[CHECKPOINT_KEY] = ema.checkpoint_entry(trained)
        try:
            yield
        finally:
            checkpoint.pop(CHECKPOINT_KEY, None)
