"""The user's choices on top of the planner's defaults: network, loss, sampling, optimiser,
augmentation, mirroring, elastic deformation and any plan field (``--set KEY=VALUE``).

``apply_choices(plan, PlanChoices(...))`` returns the plan with each choice in its field and a
sentence in ``reasons``; every name is checked against its registry (the message lists the
valid ones), and the chosen network is built once on the ``meta`` device with the planned
patch, so a network that cannot take it says which sizes it can before anything is written.

The parts live in ``settings`` (``--set``), ``recipe`` (the loss and augmentation a plan
builds) and ``laterality`` (which axis is never mirrored).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import torch

from medseg.errors import ConfigError
from medseg.losses.registry import list_losses, loss_options
from medseg.nets.registry import build_network, network_options, plannable_networks
from medseg.planning.plan import SAMPLING_MODES, Plan
from medseg.planning.recipe import (
    AUGMENTATION_PRESETS,
    build_augmentation,
    describe_augmentation,
    plan_loss,
)
from medseg.planning.settings import apply_setting, parse_setting, settable_type, typed_value

#: Default learning rate when ``--optimizer`` changes the optimiser (``--set learning_rate``
#: overrides it): SGD takes nnU-Net's 1e-2, the Adam family 1e-3.
OPTIMIZER_LEARNING_RATES = {"sgd": 1e-2, "adam": 1e-3, "adamw": 1e-3}
#: The optimisers of ``medseg.training.schedule.OPTIMIZERS`` (training is a higher layer; a
#: test keeps the two in step).
OPTIMIZER_NAMES = tuple(sorted(OPTIMIZER_LEARNING_RATES))


@dataclass(frozen=True)
class PlanChoices:
    """What ``medseg plan`` was told to use instead of the planner's defaults (None: keep).

    Attributes:
        network, loss, sampling, optimizer, augmentation: registry names.
        mirror_axes: array axes of the images to mirror (0 = first; 3D images are
            ``(z, y, x)``), ``()``: none, ``"all"``: every axis, None: the planner's choice
            (every axis but left-right where laterality matters). A ``2d`` configuration
            (slices along axis 0) mirrors the in-plane axes among them.
        elastic: elastic deformation probability per sample.
        settings: ``KEY=VALUE`` texts for any other plan field (``--set``), values as JSON
            (``--set batch_size=4``, ``--set loss_config.alpha=0.3``); a text that is not
            JSON is taken as a string.
    """

    network: str | None = None
    loss: str | None = None
    sampling: str | None = None
    optimizer: str | None = None
    augmentation: str | None = None
    mirror_axes: tuple[int, ...] | Literal["all"] | None = None
    elastic: float | None = None
    settings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) in (None, ()) for f in fields(self))


def apply_choices(plan: Plan, choices: PlanChoices) -> Plan:
    """``plan`` with ``choices`` applied, each with its reason; the result is checked
    (registry names, option names, the network against the patch).

    Raises:
        ConfigError: an unknown name, option or ``--set`` key, a value of the wrong type,
            mirror axes out of range, or a network that cannot take the patch.
    """
    reasons = dict(plan.reasons)
    changes: dict[str, Any] = {}
    if choices.network is not None:
        _check_name("network", choices.network, plannable_networks())
        changes["network"] = choices.network
        changes["network_config"] = network_config_for(choices.network, plan.network_config)
        reasons["network"] = f"{choices.network}: set by --network"
    if choices.loss is not None:
        _check_name("loss", choices.loss, list_losses("segmentation"))
        changes["loss"] = choices.loss
        reasons["loss"] = f"{choices.loss}: set by --loss"
    if choices.sampling is not None:
        _check_name("sampling", choices.sampling, SAMPLING_MODES)
        changes["sampling"] = choices.sampling
        reasons["sampling"] = f"{choices.sampling}: set by --sampling"
    if choices.optimizer is not None:
        _check_name("optimizer", choices.optimizer, OPTIMIZER_NAMES)
        changes["optimizer"] = choices.optimizer
        changes["learning_rate"] = OPTIMIZER_LEARNING_RATES.get(
            choices.optimizer, plan.learning_rate
        )
        reasons["optimizer"] = (
            f"{choices.optimizer} lr {changes['learning_rate']:g}: set by --optimizer "
            "(the optimiser's usual learning rate; --set learning_rate=... to change it)"
        )
    if choices.augmentation is not None:
        _check_name("augmentation preset", choices.augmentation, AUGMENTATION_PRESETS)
        changes["augmentation"] = choices.augmentation
    if choices.mirror_axes is not None:
        changes["mirror_axes"] = patch_mirror_axes(plan, choices.mirror_axes)
        asked = choices.mirror_axes
        asked_text = asked if isinstance(asked, str) else ",".join(map(str, asked)) or "none"
        reasons["mirror_axes"] = (
            f"patch axes {list(changes['mirror_axes']) or 'none'}: set by --mirror-axes "
            f"{asked_text} (training augmentation and test-time mirroring)"
        )
    if choices.elastic is not None:
        changes["elastic"] = float(choices.elastic)
        reasons["elastic"] = f"probability {choices.elastic:g} per sample: set by --elastic"
    try:
        plan = replace(plan, **changes)
    except TypeError as err:  # a wrong type reaching __post_init__'s checks
        raise ConfigError(f"{plan.name}: {err}") from err
    for text in choices.settings:
        plan = apply_setting(plan, text)
        key = text.split("=", 1)[0].strip()
        reasons[key.split(".")[0]] = f"{text.strip()}: set by --set"
    if plan.network == "vae_unet":
        reasons["loss"] = (
            f"{plan.loss} on the segmentation + 0.1 L2 reconstruction of the input + 0.1 KL "
            "of the latent (the VAE U-Net's regulariser, Myronenko 2018)"
        )
    reasons["augmentation"] = describe_augmentation(plan)
    plan = replace(plan, reasons=reasons)
    explicit_patch = any(t.split("=", 1)[0].strip() == "patch_size" for t in choices.settings)
    if choices.network is not None and not explicit_patch:
        plan = fit_patch_to_network(plan)
    check_plan_choices(plan)
    return plan


def meta_network(plan: Plan) -> torch.nn.Module:
    """The plan's network built on the ``meta`` device (no memory, no initialisation)."""
    with torch.device("meta"):
        return build_network(
            plan.network,
            spatial_dims=plan.spatial_dims,
            in_channels=plan.in_channels,
            out_channels=plan.num_classes,
            **plan.network_config,
        )


def fit_patch_to_network(plan: Plan) -> Plan:
    """The plan with its patch rounded to the nearest multiples (ties up) of the network's
    ``required_divisor`` (a transformer's patch and window sizes), with the reason; and the
    network's nominal ``image_size`` (position embeddings) set to the patch when it has one.
    An explicit ``--set patch_size=...`` is never changed: it is refused if it does not fit.
    """
    divisor = tuple(getattr(meta_network(plan), "required_divisor", (1,) * plan.spatial_dims))
    patch = tuple(
        max(d, (p + d // 2) // d * d) for p, d in zip(plan.patch_size, divisor, strict=True)
    )
    reasons = dict(plan.reasons)
    if patch != tuple(plan.patch_size):
        reasons["patch_size"] = (
            f"{list(patch)}: the planned {list(plan.patch_size)} rounded to multiples of "
            f"{list(divisor)}, which {plan.network} needs"
        )
    config = dict(plan.network_config)
    if "image_size" in network_options(plan.network):
        config["image_size"] = list(patch)
    return replace(plan, patch_size=patch, network_config=config, reasons=reasons)


def check_choice_names(choices: PlanChoices) -> None:
    """The registry names and ``--set`` keys and types of ``choices``, checked before any data
    is read (what depends on the plan, such as the patch, is checked by
    :func:`apply_choices`).

    Raises:
        ConfigError: the first unknown name or key, or a value of the wrong type.
    """
    for kind, name, valid in (
        ("network", choices.network, plannable_networks()),
        ("loss", choices.loss, list_losses("segmentation")),
        ("sampling", choices.sampling, SAMPLING_MODES),
        ("optimizer", choices.optimizer, OPTIMIZER_NAMES),
        ("augmentation preset", choices.augmentation, AUGMENTATION_PRESETS),
    ):
        if name is not None:
            _check_name(kind, name, valid)
    for text in choices.settings:
        key, value = parse_setting(text)
        if not key.startswith(("network_config.", "loss_config.")):
            typed_value(key, value, settable_type(key))


def _check_name(kind: str, name: str, valid: Sequence[str]) -> None:
    if name not in valid:
        raise ConfigError(f"unknown {kind} '{name}'; valid: {', '.join(valid)}")


def patch_mirror_axes(plan: Plan, axes: Sequence[int] | str) -> tuple[int, ...]:
    """The plan's patch axes for image array ``axes`` (``"all"``: every patch axis).

    Raises:
        ConfigError: an axis the images do not have.
    """
    if axes == "all":
        return tuple(range(plan.spatial_dims))
    image_dims = len(plan.spacing)
    bad = [a for a in axes if not 0 <= int(a) < image_dims]
    if bad:
        raise ConfigError(
            f"--mirror-axes {list(axes)}: axis {bad[0]} out of range; the images have "
            f"{image_dims} axes (0..{image_dims - 1})"
        )
    offset = image_dims - plan.spatial_dims  # a 2d plan on 3D images drops axis 0
    return tuple(sorted({int(a) - offset for a in axes if int(a) >= offset}))


def network_config_for(network: str, planned: Mapping[str, Any]) -> dict[str, Any]:
    """The planned U-Net options translated for ``network``: the options it accepts are kept
    (features, strides, kernels, norm, activation, deep supervision); SegNet pools where the
    U-Net strides; the VAE U-Net gets one residual block per stage (its default lists four
    stages, the plan may have more); the dilated U-Net down-samples twice and dilates the
    deeper stages (DeepLab's scheme; memory grows: those stages stay at 1/4 resolution)."""
    options = set(network_options(network))
    config = {k: v for k, v in planned.items() if k in options}
    if network == "segnet" and "strides" in planned and "features" in planned:
        config["features"] = list(planned["features"])[:-1]
        config["pool_sizes"] = list(planned["strides"])[1:]
    if network == "vae_unet":
        config["blocks_per_stage"] = 1
    if network == "dilated_unet" and "strides" in planned:
        # two down-samplings, then the deeper stages dilate instead (1, 1, 2, 4, ...)
        stages = len(planned["strides"])
        ones = [1] * len(planned["strides"][0])
        config["strides"] = [*list(planned["strides"])[:3], *[ones] * max(0, stages - 3)]
        config["dilations"] = [1, 1, *[2**i for i in range(1, stages - 1)]][:stages]
    return config


def check_plan_choices(plan: Plan) -> None:
    """Build the plan's loss and augmentation, and its network on the ``meta`` device with
    one planned patch, so a bad choice fails here with a clear message, not in training.

    Raises:
        ConfigError: an unknown option, or a network that cannot take the patch (the
            message says which patch sizes it can).
    """
    _check_name("network", plan.network, plannable_networks())
    _check_name("loss", plan.loss, list_losses("segmentation"))
    _check_name("optimizer", plan.optimizer, OPTIMIZER_NAMES)
    _check_name("augmentation preset", plan.augmentation, AUGMENTATION_PRESETS)
    unknown = sorted(set(plan.loss_config) - set(loss_options(plan.loss)))
    if unknown:
        raise ConfigError(
            f"{plan.name}: loss {plan.loss} has no option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(loss_options(plan.loss))}"
        )
    if plan.ignore_label is not None and "ignore_index" not in loss_options(plan.loss):
        masking = [n for n in list_losses("segmentation") if "ignore_index" in loss_options(n)]
        raise ConfigError(
            f"{plan.name}: loss {plan.loss} cannot leave out the ignore label's voxels; "
            f"use one of {', '.join(masking)}"
        )
    plan_loss(plan)
    build_augmentation(plan)
    try:
        net = meta_network(plan)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"{plan.name}: network {plan.network} cannot be built from its network_config: {err}"
        ) from err
    divisor = tuple(getattr(net, "required_divisor", (1,) * plan.spatial_dims))
    if any(p % d for p, d in zip(plan.patch_size, divisor, strict=True)):
        sizes = [
            [p] if p % d == 0 else sorted({max(d, p // d * d), p // d * d + d})
            for p, d in zip(plan.patch_size, divisor, strict=True)
        ]
        raise ConfigError(
            f"{plan.name}: network {plan.network} needs patch sizes divisible by {divisor}, "
            f"the planned patch is {tuple(plan.patch_size)}; nearest sizes per axis: {sizes} "
            "(--set patch_size=[...])"
        )
    try:
        with torch.device("meta"):
            net(torch.empty(1, plan.in_channels, *plan.patch_size))
    except (RuntimeError, ValueError) as err:
        raise ConfigError(
            f"{plan.name}: network {plan.network} cannot take the patch "
            f"{tuple(plan.patch_size)}: {err}"
        ) from err
