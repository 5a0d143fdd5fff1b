"""Reading official SAM / MedSAM state dicts onto medseg's promptable model (see
:mod:`medseg.prompt.sam`, which re-exports the public names).

The model is built from a :class:`~medseg.prompt.sam_encoder.SamVariant`; before loading, every
weight of the file is compared with the variant's shapes (taken from the model built on the
``meta`` device, so no memory is spent), and the first difference is reported with the variant
the file does fit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from medseg.errors import ConfigError, listing
from medseg.prompt.sam_encoder import SAM_VARIANTS, SamVariant
from medseg.training.checkpoint import load_checkpoint

if TYPE_CHECKING:
    from medseg.prompt.model import PromptableModel

log = logging.getLogger(__name__)

#: The prompt encoder's Fourier matrix: its rows are reversed on load ((x, y) -> (y, x)).
FOURIER_KEY = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_SAM_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
#: SAM's normalisation buffers: medseg keeps normalisation out of the model (preprocessing).
_IGNORED_KEYS = ("pixel_mean", "pixel_std")


@dataclass(frozen=True)
class SamLoadReport:
    """What loading a SAM checkpoint did.

    Attributes:
        source: the file.
        variant: the variant it was loaded as.
        loaded: number of tensors copied into the model.
        missing: model weights the file lacks (left as initialised).
        unexpected: file entries the model has no place for (not used).
        ignored: SAM entries medseg deliberately does not use (``pixel_mean``/``pixel_std``:
            the normalisation is part of :func:`~medseg.prompt.sam.sam_preprocess`).
    """

    source: str
    variant: str
    loaded: int
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.source}: loaded {self.loaded} SAM {self.variant} tensors"
        if self.missing:
            text += f"; missing {len(self.missing)}: {listing(list(self.missing))}"
        if self.unexpected:
            text += f"; unused {len(self.unexpected)}: {listing(list(self.unexpected))}"
        return text


def resolve_variant(variant: str | SamVariant) -> tuple[SamVariant, str]:
    """``(spec, name)`` of a variant name or spec.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).
    """
    if isinstance(variant, SamVariant):
        names = [name for name, spec in SAM_VARIANTS.items() if spec == variant]
        return variant, names[0] if names else "custom"
    if variant not in SAM_VARIANTS:
        raise ConfigError(
            f"unknown SAM variant {variant!r}; valid variants: {', '.join(SAM_VARIANTS)}"
        )
    return SAM_VARIANTS[variant], variant


def sam_architecture(
    variant: str | SamVariant = "vit_b", *, image_size: int | None = None
) -> PromptableModel:
    """A freshly initialised SAM of ``variant`` as a 2D ``PromptableModel`` (no pixel
    normalisation inside: preprocess with :func:`~medseg.prompt.sam.sam_preprocess`).

    Args:
        variant: ``vit_b``, ``vit_l``, ``vit_h``, ``tiny`` or a :class:`SamVariant`.
        image_size: input side (default the variant's); a multiple of its patch size.

    Raises:
        ConfigError: an unknown variant, or an ``image_size`` that is not a multiple of the
            patch size.
    """
    from medseg.prompt.mask_decoder import MaskDecoder
    from medseg.prompt.model import PromptableModel
    from medseg.prompt.prompt_encoder import PromptEncoder
    from medseg.prompt.transformer import TwoWayTransformer

    spec, name = resolve_variant(variant)
    size = spec.image_size if image_size is None else int(image_size)
    if size <= 0 or size % spec.patch_size:
        raise ConfigError(
            f"image_size {image_size} for SAM {name}: must be a positive multiple of its "
            f"patch size {spec.patch_size} (SAM's own is {spec.image_size})"
        )
    grid = size // spec.patch_size
    width = spec.prompt_embed_dim
    transformer = TwoWayTransformer(
        depth=spec.decoder_depth,
        embedding_dim=width,
        num_heads=spec.decoder_num_heads,
        mlp_dim=spec.decoder_mlp_dim,
    )
    return PromptableModel(
        spec.image_encoder(),
        PromptEncoder(width, (grid, grid), (size, size), spec.mask_in_chans),
        MaskDecoder(width, transformer, iou_head_hidden_dim=spec.iou_head_hidden_dim),
    )


def read_sam_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The tensors of a SAM checkpoint file, keyed as SAM's ``Sam.state_dict()``.

    Accepts a plain state dict or one under ``model`` / ``state_dict`` / ``network_state``
    (training checkpoints), with or without DDP's ``module.`` prefix.

    Raises:
        ConfigError: missing, truncated or corrupt file, or no SAM weights in it.
        UnsafeFileError: the file would need arbitrary code to load.
    """
    data: Mapping = load_checkpoint(path, kind="weights", what="SAM checkpoint")
    for key in ("model", "state_dict", "network_state"):
        if isinstance(data.get(key), Mapping):
            data = data[key]
            break
    state = {
        str(key).removeprefix("module."): value
        for key, value in data.items()
        if isinstance(value, Tensor)
    }
    if not any(key.startswith(_SAM_PREFIXES) for key in state):
        hint = ""
        if "patch_embed.proj.weight" in state:
            hint = " (an image encoder alone? load it with SamImageEncoder.load_state_dict)"
        keys = listing(sorted(str(key) for key in data)) or "none"
        raise ConfigError(
            f"{path}: not a SAM checkpoint: no image_encoder.*, prompt_encoder.* or "
            f"mask_decoder.* weights (its entries: {keys}){hint}"
        )
    return state


@lru_cache(maxsize=8)
def _expected_shapes(spec: SamVariant) -> dict[str, tuple[int, ...]]:
    """The variant's state-dict shapes, from the model built on the meta device (no memory)."""
    with torch.device("meta"):
        model = sam_architecture(spec)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _fits(state: Mapping[str, Tensor], spec: SamVariant) -> bool:
    expected = _expected_shapes(spec)
    return all(key in state and tuple(state[key].shape) == shape for key, shape in expected.items())


def check_variant(state: Mapping[str, Tensor], spec: SamVariant, name: str, *, source: str) -> None:
    """Raise unless every weight the file and the variant share has the variant's shape.

    Raises:
        ConfigError: naming the first differing weight, both shapes, and the variant(s) the
            file fits.
    """
    for key, shape in _expected_shapes(spec).items():
        if key not in state or tuple(state[key].shape) == shape:
            continue
        fitting = [other for other, candidate in SAM_VARIANTS.items() if _fits(state, candidate)]
        advice = (
            f"it is a SAM {' / '.join(fitting)} checkpoint: load it with variant={fitting[0]!r}"
            if fitting
            else f"it fits none of the variants {', '.join(SAM_VARIANTS)}"
        )
        raise ConfigError(
            f"{source}: not a SAM {name} checkpoint: {key} has shape {tuple(state[key].shape)} "
            f"in the file, {name} expects {shape}; {advice}"
        )


def load_sam_state(
    model: torch.nn.Module,
    state: Mapping[str, Tensor],
    *,
    source: str,
    variant: str,
    strict: bool = True,
) -> SamLoadReport:
    """Copy an official SAM state dict into ``model`` (a :func:`sam_architecture` model) and
    log a :class:`SamLoadReport` (a warning when anything is missing or unused).

    The Fourier matrix's rows are reversed, so that medseg's ``(y, x)`` prompt coordinates
    project exactly as SAM's ``(x, y)`` do.

    Raises:
        ConfigError: with ``strict``, when weights of the model are missing from the file.
    """
    state = dict(state)
    if FOURIER_KEY in state:
        state[FOURIER_KEY] = state[FOURIER_KEY].flip(0)
    own = model.state_dict()
    ignored = tuple(key for key in _IGNORED_KEYS if key in state and key not in own)
    for key in ignored:
        del state[key]
    result = model.load_state_dict(state, strict=False)
    report = SamLoadReport(
        source=source,
        variant=variant,
        loaded=len(state) - len(result.unexpected_keys),
        missing=tuple(result.missing_keys),
        unexpected=tuple(result.unexpected_keys),
        ignored=ignored,
    )
    if report.missing and strict:
        raise ConfigError(
            f"{source}: the SAM {variant} checkpoint lacks {len(report.missing)} weights: "
            f"{listing(list(report.missing))} (truncated export? pass strict=False to keep "
            "them randomly initialised)"
        )
    log.log(logging.WARNING if report.missing or report.unexpected else logging.INFO, "%s", report)
    return report
