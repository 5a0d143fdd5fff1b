"""What a plan's training recipe builds: its loss (:class:`PlanLoss`: the named loss with its
options, deep supervision, the VAE terms, the ignore label) and its augmentation (the preset
with the plan's mirror axes and elastic probability). Training and the step-time probe build
them here, so they cannot differ.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from medseg.data.preprocess import IGNORE_INDEX
from medseg.losses.deep_supervision import DeepSupervisionLoss
from medseg.losses.registry import build_loss, loss_options
from medseg.losses.vae import VAELoss
from medseg.nets.vae_unet import VAEOutput
from medseg.planning.plan import Plan
from medseg.transforms import Compose, build_transform

#: Augmentation presets a plan can name (``none``: no augmentation at all).
AUGMENTATION_PRESETS = ("nnunet_default", "light", "mri_artefacts", "pathology", "none")


class PlanLoss(nn.Module):
    """The training loss of a plan, ``loss(outputs, target, image)``: the plan's loss with its
    options, over every deep-supervision output; for a VAE U-Net's training output also
    ``0.1 L2`` reconstruction of ``image`` ``+ 0.1 KL`` (Myronenko 2018). With an ignore label
    the voxels stored as -1 count nowhere."""

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        options = dict(plan.loss_config)
        valid = loss_options(plan.loss)
        if plan.ignore_label is not None and "ignore_index" in valid:
            options.setdefault("ignore_index", IGNORE_INDEX)
        if "spacing" in valid:
            options.setdefault("spacing", list(plan.patch_spacing))
        base = build_loss(plan.loss, **options)
        self.supervised = DeepSupervisionLoss(base)
        self.vae = VAELoss(base)

    def forward(self, outputs: Any, target: Tensor, image: Tensor) -> Tensor:
        if isinstance(outputs, VAEOutput):
            return self.vae(outputs, target, image)
        return self.supervised(outputs, target)


def plan_loss(plan: Plan) -> PlanLoss:
    """:class:`PlanLoss` of ``plan`` (the loss training and the step-time probe use)."""
    return PlanLoss(plan)


def build_augmentation(plan: Plan, **options: Any) -> Any:
    """The plan's augmentation preset with its mirror axes and elastic probability
    (``Compose``); ``none``: an empty pipeline."""
    if plan.augmentation == "none":
        return Compose([], seed=options.get("seed"))
    if plan.augmentation == "pathology":  # colour transforms need the values' range
        options.setdefault("value_range", 1.0 if "rgb" in plan.normalization else 255.0)
    return build_transform(
        plan.augmentation,
        spatial_dims=plan.spatial_dims,
        mirror_axes=plan.mirror_axes,
        p_elastic=plan.elastic,
        **options,
    )


def describe_augmentation(plan: Plan) -> str:
    """What the plan's preset includes, e.g. ``nnunet_default: RandomSpatial, ... ,
    RandomFlip (axes 0, 1)``."""
    if plan.augmentation == "none":
        return "none: no augmentation"
    parts = []
    for transform in build_augmentation(plan).transforms:
        name = type(transform).__name__
        if name == "RandomFlip":
            axes = plan.mirror_axes if plan.mirror_axes is not None else range(plan.spatial_dims)
            name += f" (axes {', '.join(map(str, axes))})"
        elif name == "RandomSpatial" and plan.elastic > 0:
            name += f" (elastic p={plan.elastic:g})"
        parts.append(name)
    return f"{plan.augmentation}: {', '.join(parts)}"
