"""Optimisers and learning-rate schedules, registered by name.

``OPTIMIZERS``: ``sgd`` (Nesterov momentum; nnU-Net: lr 0.01, momentum 0.99, wd 3e-5),
``adamw`` and ``adam``, each built as ``OPTIMIZERS.build(name, params, lr=...,
weight_decay=..., momentum=...)`` (Adam ignores ``momentum``). ``SCHEDULES``: the learning-rate
factor at the fraction ``t`` of training done: ``poly`` (nnU-Net), ``cosine``, ``constant``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from medseg.planning.plan import Plan
from medseg.registry import Registry

OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("LR schedule")


@OPTIMIZERS.register("sgd", description="SGD with Nesterov momentum (nnU-Net's on CUDA)")
def sgd(
    params: Iterable[Any], *, lr: float, weight_decay: float = 0.0, momentum: float = 0.99
) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True
    )


@OPTIMIZERS.register("adamw", description="AdamW, decoupled weight decay (medseg's default on CPU)")
def adamw(
    params: Iterable[Any], *, lr: float, weight_decay: float = 0.0, momentum: float = 0.0
) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adam", description="Adam with L2 weight decay")
def adam(
    params: Iterable[Any], *, lr: float, weight_decay: float = 0.0, momentum: float = 0.0
) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@SCHEDULES.register("poly", description="(1 - t)^0.9 (nnU-Net)")
def poly(t: float) -> float:
    return (1 - t) ** 0.9


@SCHEDULES.register("cosine", description="0.5 (1 + cos(pi t))")
def cosine(t: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register("constant", description="1")
def constant(t: float) -> float:
    return 1.0


def build_optimizer(model: nn.Module, plan: Plan) -> torch.optim.Optimizer:
    """The plan's optimiser over every parameter of ``model``."""
    return OPTIMIZERS.build(
        plan.optimizer,
        model.parameters(),
        lr=plan.learning_rate,
        weight_decay=plan.weight_decay,
        momentum=plan.momentum,
    )


def lr_factor(step: int, total_steps: int, schedule: str, *, warmup: int = 0) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total_steps``.

    A linear warm-up over ``warmup`` steps is applied first.

    Raises:
        ConfigError: an unknown schedule (listing the valid ones).

    Example:
        >>> lr_factor(0, 100, "poly"), round(lr_factor(50, 100, "cosine"), 3)
        (1.0, 0.5)
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    t = min(max(step, 0) / max(total_steps, 1), 1.0)
    return SCHEDULES.get(schedule)(t)


def run_lr_factor(
    step: int,
    total_steps: int,
    schedule: str,
    budget_fraction: float | None,
    *,
    warmup: int = 0,
) -> float:
    """:func:`lr_factor` of a run that ends at its last step or, sooner, at its time budget:
    the schedule follows whichever is further along (``budget_fraction``: share of the time
    budget used, None without one), so it has decayed when training stops. The first
    ``warmup`` steps ramp linearly up to the base rate, whatever the clock says.

    Example:
        >>> run_lr_factor(10, 100, "cosine", None), run_lr_factor(10, 100, "cosine", 1.0)
        (0.9755282581475768, 0.0)
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if budget_fraction is not None and budget_fraction > step / max(total_steps, 1):
        return lr_factor(int(budget_fraction * 1_000_000), 1_000_000, schedule)
    return lr_factor(step, total_steps, schedule)


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    """Set every parameter group's learning rate to ``base_lr * factor``; returns it."""
    lr = base_lr * factor
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
