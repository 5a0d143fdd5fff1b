"""The promptable model of a :class:`~medseg.prompt.finetune_config.PromptConfig`: built from
its source (weights read once, at the start of fine-tuning), or rebuilt from a run folder's
checkpoint alone (the architecture from the config, the weights from the checkpoint)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from medseg.errors import ConfigError
from medseg.inference.checkpoints import find_checkpoints
from medseg.planning.plan import Plan
from medseg.prompt.finetune_config import PromptConfig
from medseg.training.checkpoint import build_model, load_checkpoint, model_from_checkpoint

#: Checkpoint entries of a fine-tuning run besides the engine's own.
CONFIG_KEY = "prompt_config"
ENCODER_PLAN_KEY = "encoder_plan"
#: Sizes of the prompt encoder and mask decoder of ``scratch`` and ``encoder`` models.
PRESET = "cpu"


def encoder_checkpoint(config: PromptConfig) -> Path:
    """The medseg segmentation checkpoint whose encoder a ``source="encoder"`` run starts from:
    the results folder's best checkpoint of ``encoder_configuration`` (first trained fold),
    or ``encoder`` itself when it is a checkpoint file."""
    path = Path(str(config.encoder))
    if path.is_file():
        return path
    configurations = [config.encoder_configuration] if config.encoder_configuration else None
    return find_checkpoints(path, configurations=configurations)[0]


def embedding_stage(strides: Sequence[Sequence[int]], max_stride: int) -> int:
    """The deepest encoder stage whose total down-sampling stays within ``max_stride`` on
    every axis (a deeper U-Net stage would leave a few voxels of grid, and the masks the
    decoder draws at 4x that grid would be coarse).

    Example:
        >>> embedding_stage([[1, 1], [2, 2], [2, 2], [2, 2], [2, 2], [2, 2]], 16)
        4
    """
    total = [1] * len(strides[0])
    stage = 0
    for index, step in enumerate(strides):
        total = [t * s for t, s in zip(total, step, strict=True)]
        if max(total) > max_stride:
            break
        stage = index
    return stage


def build_prompt_model(
    config: PromptConfig, *, encoder_plan: dict[str, Any] | None = None, pretrained: bool = True
) -> tuple[nn.Module, dict[str, Any] | None]:
    """The config's promptable model and, for ``source="encoder"``, the U-Net plan it came from.

    Args:
        encoder_plan: the U-Net plan (rebuilding from a checkpoint: no results folder needed).
        pretrained: load the source's weights (False when a checkpoint's weights follow).
    """
    from medseg.prompt.model import build_promptable, promptable_from_encoder
    from medseg.prompt.neck import unet_image_encoder
    from medseg.prompt.presets import PROMPT_PRESETS

    if config.source in ("sam", "medsam"):
        from medseg.prompt.sam import load_medsam, load_sam, sam_architecture

        side = int(config.image_size[0])  # SAM's input is square
        if not pretrained:
            return sam_architecture(config.variant, image_size=side), None
        path = str(config.weights)
        if config.source == "medsam":
            return load_medsam(path, image_size=side), None
        return load_sam(path, config.variant, image_size=side), None
    if config.source == "scratch":
        model = build_promptable(
            config.spatial_dims,
            preset=PRESET,
            image_size=tuple(config.image_size),
            in_channels=config.in_channels,
        )
        return model, None
    if encoder_plan is None:
        unet, plan = model_from_checkpoint(encoder_checkpoint(config))
        encoder_plan = plan.to_dict()
    else:
        unet = build_model(Plan.from_dict(encoder_plan, source="checkpoint"))
    spec = PROMPT_PRESETS.build(PRESET)
    stage = embedding_stage(unet.encoder.strides, config.encoder_stride)
    image_encoder = unet_image_encoder(unet, embed_dim=spec.embed_dim, stage=stage)
    model = promptable_from_encoder(image_encoder, image_size=config.image_size, preset=PRESET)
    return model, encoder_plan


def load_prompt_run(
    run: str | os.PathLike[str], *, checkpoint: str = "best"
) -> tuple[nn.Module, PromptConfig]:
    """Rebuild a fine-tuned promptable model (eval mode) and its config from a run folder
    (``checkpoint_best.pt`` or ``checkpoint_latest.pt``) or a checkpoint file.

    Raises:
        ConfigError: no such checkpoint, or a checkpoint of another kind of model.
    """
    path = Path(run)
    if path.is_dir():
        path = path / f"checkpoint_{checkpoint}.pt"
    data = load_checkpoint(path, kind="weights", what="prompt model checkpoint")
    if CONFIG_KEY not in data or "network_state" not in data:
        raise ConfigError(
            f"{path}: not a medseg prompt model (no {CONFIG_KEY}); "
            "train one with `medseg prompt finetune`"
        )
    config = PromptConfig.from_dict(dict(data[CONFIG_KEY]), source=str(path))
    model, _ = build_prompt_model(config, encoder_plan=data.get(ENCODER_PLAN_KEY), pretrained=False)
    model.load_state_dict(data["network_state"])
    model.eval()
    return model, config
