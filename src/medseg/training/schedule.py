"""Optimisers and learning-rate schedules built from a Plan."""

from __future__ import annotations

import math

import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.planning.plan import Plan


def build_optimizer(model: nn.Module, plan: Plan) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (nnU-Net: lr 0.01, momentum 0.99, wd 3e-5) or AdamW."""
    if plan.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=plan.learning_rate, momentum=plan.momentum,
            weight_decay=plan.weight_decay, nesterov=True,
        )
    if plan.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=plan.learning_rate, weight_decay=plan.weight_decay)
    if plan.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=plan.learning_rate, weight_decay=plan.weight_decay)
    raise ConfigError(f"unknown optimizer '{plan.optimizer}'; valid: sgd, adamw, adam")


def lr_factor(step: int, total_steps: int, schedule: str, *, warmup: int = 0) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total_steps``.

    ``poly``: (1 - t)^0.9 (nnU-Net); ``cosine``: 0.5 (1 + cos(pi t)); ``constant``: 1.
    A linear warm-up over ``warmup`` steps is applied first.

    Example:
        >>> lr_factor(0, 100, "poly"), round(lr_factor(50, 100, "cosine"), 3)
        (1.0, 0.5)
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    t = min(max(step, 0) / max(total_steps, 1), 1.0)
    if schedule == "poly":
        return (1 - t) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "constant":
        return 1.0
    raise ConfigError(f"unknown lr_schedule '{schedule}'; valid: poly, cosine, constant")


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    lr = base_lr * factor
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def grad_norm(model: nn.Module) -> float:
    """Global L2 norm of the gradients (the seeds' vanishing-gradient check)."""
    norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
