"""The configuration of a prompt fine-tuning run, saved as ``config.json`` and in every
checkpoint so that the model can be rebuilt from the run folder alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medseg.errors import ConfigError
from medseg.planning.config_io import config_from_dict, config_to_dict

#: Where the image encoder comes from.
SOURCES = ("scratch", "sam", "medsam", "encoder")
FREEZE = ("image_encoder", "none")
OBJECTS = ("label", "component")


@dataclass(frozen=True)
class PromptConfig:
    """A promptable model and how to fine-tune it (MedSAM's recipe by default).

    Attributes:
        source: ``scratch`` (medseg's small promptable model), ``sam`` / ``medsam`` (official
            checkpoint ``weights``), ``encoder`` (a trained medseg U-Net's encoder from the
            results folder ``encoder``, configuration ``encoder_configuration``).
        encoder_stride: ``encoder`` source: embed the deepest U-Net stage whose
            down-sampling is at most this. SAM embeds at 1/16; 8 is the default because the
            decoder draws its masks at 4x the grid (Montgomery at 256^2: box Dice 0.938 and
            NoC@90 5.5 at stride 8, against 0.921 and 8.5 at 16).
        variant: SAM's image encoder (``vit_b``, ``vit_l``, ``vit_h``; MedSAM is ``vit_b``).
        image_size: the model's square input; images are resized to it (MedSAM's rule).
        labels: label values to segment (empty: every foreground label).
        objects: one object per label value, or per connected component of it.
        freeze: ``image_encoder`` (MedSAM: embeddings computed once and cached, only the
            prompt encoder and mask decoder train) or ``none``.
        box_jitter: the most a box coordinate moves, in voxels of ``image_size`` (MedSAM:
            0-20 px at 1024, i.e. 5 at 256).
        point_fraction: share of steps prompted by one click instead of a box (SAM's
            interactive training; 0: MedSAM's boxes only).
        clicks: correction clicks per step, each with the previous mask fed back (0: none).
        learning_rate: AdamW's rate; 0: by source (:attr:`resolved_learning_rate`).
        intensity: ``zscore``, ``minmax``, ``medsam`` ([0, 1] RGB) or ``sam`` (SAM's RGB
            mean and std); empty: decided by ``source``.
    """

    dataset: str
    source: str = "scratch"
    weights: str | None = None
    variant: str = "vit_b"
    encoder: str | None = None
    encoder_configuration: str | None = None
    encoder_stride: int = 8
    spatial_dims: int = 2
    image_size: tuple[int, ...] = (256, 256)
    in_channels: int = 1
    labels: tuple[int, ...] = ()
    objects: str = "label"
    slices_per_case: int = 8
    freeze: str = "image_encoder"
    box_jitter: int = 5
    point_fraction: float = 0.5
    clicks: int = 1
    intensity: str = ""
    batch_size: int = 8
    learning_rate: float = 0.0
    weight_decay: float = 0.01
    epochs: int = 50
    steps_per_epoch: int = 50
    val_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value, valid in [
            ("source", self.source, SOURCES),
            ("freeze", self.freeze, FREEZE),
            ("objects", self.objects, OBJECTS),
            ("intensity", self.intensity, ("", "zscore", "minmax", "medsam", "sam")),
        ]:
            if value not in valid:
                raise ConfigError(f"{name} '{value}' is not one of {', '.join(valid)}")
        if self.source in ("sam", "medsam") and not self.weights:
            raise ConfigError(f"source {self.source} needs the checkpoint file (--weights)")
        if self.source == "encoder" and not self.encoder:
            raise ConfigError("source encoder needs a medseg results folder (--encoder RESULTS)")
        if len(self.image_size) != self.spatial_dims:
            raise ConfigError(
                f"image_size {tuple(self.image_size)} has {len(self.image_size)} axes, "
                f"the model {self.spatial_dims}"
            )
        if not 0 <= self.val_fraction < 1 or self.batch_size < 1 or not self.learning_rate >= 0:
            raise ConfigError("need 0 <= val_fraction < 1, batch_size >= 1, learning_rate >= 0")
        if not 0 <= self.point_fraction <= 1 or self.clicks < 0:
            raise ConfigError("need 0 <= point_fraction <= 1 and clicks >= 0")

    @property
    def resolved_learning_rate(self) -> float:
        """``learning_rate``, or by source: 1e-4 to fine-tune SAM's or MedSAM's trained
        decoder (MedSAM's rate), 1e-3 for a decoder that starts from scratch."""
        if self.learning_rate > 0:
            return self.learning_rate
        return 1e-4 if self.source in ("sam", "medsam") else 1e-3

    @property
    def resolved_intensity(self) -> str:
        """``intensity`` or the source's own normalisation."""
        if self.intensity:
            return self.intensity
        return {"sam": "sam", "medsam": "medsam"}.get(self.source, "zscore")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> PromptConfig:
        return config_from_dict(cls, data, source=source, kind="prompt config")
