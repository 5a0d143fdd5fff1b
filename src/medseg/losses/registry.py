"""Losses by name: ``build_loss("dice_ce", batch_dice=True)``; every registered loss is
called as ``loss(logits, target)`` (logits ``(B, K, *spatial)``, target labels
``(B, 1, *spatial)`` or one-hot ``(B, K, *spatial)``).

Shared option names: ``include_background``, ``smooth`` (0 allowed), ``batch_dice``,
``activation`` (``softmax`` | ``sigmoid``), ``ignore_index``; focal: ``gamma``, ``alpha``
(None: no class weighting); Tversky: ``alpha`` (FP weight), ``beta`` (FN weight).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from medseg.errors import ConfigError
from medseg.losses.boundary import BoundaryLoss
from medseg.losses.compound import DiceCELoss
from medseg.losses.cross_entropy import CrossEntropyLoss, WeightedCrossEntropyLoss
from medseg.losses.dice import DiceLoss, GeneralizedDiceLoss
from medseg.losses.focal import FocalLoss
from medseg.losses.tversky import TverskyLoss
from medseg.registry import Registry

LOSSES = Registry("loss")
LOSSES.register("ce")(CrossEntropyLoss)
LOSSES.register("weighted_ce")(WeightedCrossEntropyLoss)
LOSSES.register("dice")(DiceLoss)
LOSSES.register("generalized_dice")(GeneralizedDiceLoss)
LOSSES.register("focal")(FocalLoss)
LOSSES.register("tversky")(TverskyLoss)
LOSSES.register("boundary")(BoundaryLoss)
LOSSES.register("dice_ce")(DiceCELoss)


@LOSSES.register("milletari_dice")
def milletari_dice(**options: Any) -> DiceLoss:
    """Milletari et al. 2016 (V-Net) Dice: squared denominator ``sum p^2 + sum g^2``.

    Options as :class:`DiceLoss` (``smooth`` defaults to 1e-5; the paper has none).
    """
    return DiceLoss(squared_denominator=True, **options)


def list_losses() -> list[str]:
    """Registered loss names, sorted.

    Example:
        >>> "dice_ce" in list_losses()
        True
    """
    return LOSSES.names()


def loss_options(name: str) -> list[str]:
    """The keyword options a registered loss accepts."""
    builder = LOSSES.get(name)
    target = DiceLoss if builder is milletari_dice else builder
    params = inspect.signature(target).parameters.values()
    names = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return sorted(
        n for n in names if not (builder is milletari_dice and n == "squared_denominator")
    )


def build_loss(name: str, **config: Any) -> nn.Module:
    """Build a registered loss.

    Raises:
        ConfigError: for an unknown name or option, naming the valid ones.

    Example:
        >>> build_loss("focal", gamma=0.0).gamma
        0.0
    """
    builder = LOSSES.get(name)
    unknown = sorted(set(config) - set(loss_options(name)))
    if unknown:
        raise ConfigError(
            f"loss '{name}' has no option(s) {unknown}; valid options: {', '.join(loss_options(name))}"
        )
    return builder(**config)
