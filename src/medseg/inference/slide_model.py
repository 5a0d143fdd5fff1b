"""The networks a slide is predicted with, and how a tile becomes their input.

``SlideModel`` wraps either a trained results folder (every trained fold of its ``2d`` plan,
``medseg.inference.predict.load_models``: checkpoints read with ``load_checkpoint``,
``weights_only``) or a bare network. A tile ``(h, w, C)`` of slide pixels becomes a
``(C, h, w)`` float32 network input exactly as ``medseg preprocess`` prepares a 2D RGB image:
the plan's stain normaliser (``Plan.stain_normalizer``, if fitted), then its ``normalize``
per channel (``"rgb"``: divided by 255; ``"zscore"`` with the tile's own mean/std, as every
tile-sized training image was; ``"ct"`` with the dataset's statistics). A bare network gets
the float32 pixel values unchanged. Probabilities are the softmax of each network averaged
over the folds (and over test-time mirrors, if asked).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.data.preprocess import normalize
from medseg.errors import ConfigError
from medseg.inference.sliding_window import flip_combinations
from medseg.planning.plan import Plan
from medseg.transforms import stain_normalizer_from_config


@functools.lru_cache(maxsize=4)
def _stain_normalizer(config: str) -> Any:
    return stain_normalizer_from_config(json.loads(config))


#: A stain normaliser: ``(h, w, 3)`` uint8 RGB tile -> the same shape, normalised colours.
StainNormalizer = Callable[[np.ndarray], np.ndarray]


@dataclass
class SlideModel:
    """Networks (eval mode, on ``device``) and the plan that prepares their input.

    Attributes:
        networks: one per fold; each maps ``(B, C, h, w)`` to ``(B, K, h, w)`` logits.
        plan: the plan (None for a bare network: no normalisation, labels ``0..K-1``).
        device: where the networks run.
        mirror_axes: spatial axes of test-time mirroring (empty: none).
    """

    networks: list[nn.Module]
    plan: Plan | None
    device: torch.device
    mirror_axes: tuple[int, ...] = ()

    @property
    def tile_size(self) -> int | None:
        """The plan's training patch side (None for a bare network)."""
        return int(self.plan.patch_size[0]) if self.plan is not None else None

    @property
    def divisor(self) -> int:
        """The tile side must be a multiple of this (the network's ``required_divisor``)."""
        value = getattr(self.networks[0], "required_divisor", (1, 1))
        return int(np.lcm.reduce([int(v) for v in value]))

    def label_values(self, num_classes: int) -> list[int]:
        """The label value of each output channel (the plan's labels, sorted by value)."""
        if self.plan is None:
            return list(range(num_classes))
        return sorted(int(v) for k, v in self.plan.labels.items() if k != "ignore")[:num_classes]

    def prepare(self, tile: np.ndarray) -> np.ndarray:
        """``(h, w, C)`` pixels -> ``(C, h, w)`` float32 network input (module docstring)."""
        chw = np.moveaxis(tile, -1, 0).astype(np.float32)
        if self.plan is None:
            return chw
        if self.plan.stain_normalizer:  # the plan's fitted stain normaliser, as preprocessing
            chw = _stain_normalizer(json.dumps(self.plan.stain_normalizer)).normalize_array(chw)
        return normalize(chw, tuple(self.plan.normalization), self.plan.intensity)

    @torch.inference_mode()
    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """``(n, C, h, w)`` inputs -> ``(n, K, h, w)`` float32 softmax, averaged over folds
        and mirrors."""
        x = torch.from_numpy(batch).to(self.device)
        flips = flip_combinations(self.mirror_axes, 2)
        total: torch.Tensor | None = None
        autocast: Any = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        with autocast:
            for net in self.networks:
                for dims in flips:
                    pred = net(x.flip(dims) if dims else x)
                    if not isinstance(pred, torch.Tensor):
                        raise ConfigError(
                            "the network must return one tensor (B, K, h, w); got "
                            f"{type(pred).__name__} (call model.eval() for deep supervision)"
                        )
                    prob = torch.softmax(pred.float(), dim=1)
                    prob = prob.flip(dims) if dims else prob
                    total = prob if total is None else total.add_(prob)
        assert total is not None  # at least one network and the identity flip
        count = len(self.networks) * len(flips)
        return (total.div_(count) if count > 1 else total).cpu().numpy()


def load_slide_model(
    model: nn.Module | str | os.PathLike[str],
    *,
    device: torch.device,
    configuration: str = "2d",
    folds: Sequence[int | str] | None = None,
    mirror: bool = False,
) -> SlideModel:
    """A bare network, or the trained folds of ``configuration`` in a results folder.

    Raises:
        ConfigError: no trained fold (lists what exists), or a plan that is not 2D.
    """
    if isinstance(model, nn.Module):
        net = model.eval().to(device)
        return SlideModel([net], None, device, (0, 1) if mirror else ())
    if not Path(model).is_dir():
        raise ConfigError(f"{model}: not a results folder (expected RESULTS/<plan>/fold_<k>/)")
    from medseg.inference.predict import load_models

    models, _ = load_models(model, [configuration], folds, "best")
    plan = models[0][1]
    if plan.spatial_dims != 2:
        raise ConfigError(
            f"{model}: configuration {configuration!r} is {plan.spatial_dims}D; a slide needs a "
            "2D plan (--config 2d)"
        )
    axes = tuple(range(2)) if plan.mirror_axes is None else tuple(plan.mirror_axes)
    nets = [net.eval().to(device) for net, _ in models]
    return SlideModel(nets, plan, device, axes if mirror else ())
