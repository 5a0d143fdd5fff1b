"""SAM and MedSAM: official checkpoints as medseg :class:`PromptableModel`\\ s, and their
preprocessing.

:func:`load_sam` reads an official ``segment_anything`` checkpoint (``sam_vit_b_01ec64.pth``,
``sam_vit_l_0b3195.pth``, ``sam_vit_h_4b8939.pth``) and :func:`load_medsam` MedSAM's
(``medsam_vit_b.pth``, Ma et al. 2024: SAM ViT-B fine-tuned on medical images, the same keys).
Files are read as data only (``torch.load(weights_only=True)`` through
:func:`~medseg.training.checkpoint.load_checkpoint`). Parameter names are SAM's, so the state
dict maps by name; the one change is the prompt encoder's Fourier matrix, whose rows are reversed
so that medseg's array-order ``(y, x)`` coordinates give SAM's ``(x, y)`` numbers exactly.

Preprocessing (the model's ``embed`` takes an already preprocessed image):

* :func:`sam_preprocess`: SAM's: longest side resized to 1024, RGB pixel mean/std (0-255
  scale), zero padding at the bottom/right to 1024^2;
* :func:`medsam_preprocess`: MedSAM's: resized to 1024^2 (aspect not kept), min-max to [0, 1].

Both return a :class:`SamTransform` that maps prompts from the original image into the model's
frame (:meth:`SamTransform.apply_points`, :meth:`SamTransform.apply_box`) and
:func:`postprocess_masks` maps the low-resolution logits back onto the original image.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.errors import ConfigError
from medseg.prompt.sam_encoder import SAM_VARIANTS, SamVariant
from medseg.prompt.sam_loading import (
    SamLoadReport,
    check_variant,
    load_sam_state,
    read_sam_state_dict,
    resolve_variant,
    sam_architecture,
)

if TYPE_CHECKING:
    from medseg.prompt.model import PromptableModel

__all__ = [
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
    "SAM_VARIANTS",
    "SamLoadReport",
    "SamTransform",
    "SamVariant",
    "load_medsam",
    "load_sam",
    "medsam_preprocess",
    "postprocess_masks",
    "read_sam_state_dict",
    "sam_architecture",
    "sam_preprocess",
]

#: SAM's RGB normalisation on the 0-255 scale (``build_sam.py``).
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def load_sam(
    path: str | os.PathLike[str],
    variant: str | SamVariant = "vit_b",
    *,
    image_size: int | None = None,
    strict: bool = True,
) -> PromptableModel:
    """An official SAM checkpoint as a medseg ``PromptableModel`` (eval mode, CPU).

    Args:
        path: the ``.pth`` file (a plain state dict, or a dict holding it under ``model`` /
            ``state_dict`` / ``network_state``; a ``module.`` prefix is dropped).
        variant: ``vit_b``, ``vit_l``, ``vit_h`` (or ``tiny``, or a :class:`SamVariant`).
        image_size: the side of the preprocessed input the model will get (default the
            variant's, 1024); e.g. 256 runs the same weights far cheaper on a CPU, at some
            cost in accuracy (the position embedding is interpolated; pass the same
            ``image_size`` to the preprocessing).
        strict: raise when weights of the model are missing from the file (else log them).

    Returns:
        The model; prompts are in array order ``(y, x)`` of the preprocessed image.

    Raises:
        ConfigError: missing, truncated or corrupt file; not a SAM checkpoint; a checkpoint of
            another variant (the message names the first differing weight, both shapes and
            the variant that fits); missing weights with ``strict``.
        UnsafeFileError: the file would need arbitrary code to load.
    """
    spec, name = resolve_variant(variant)
    state = read_sam_state_dict(path)
    check_variant(state, spec, name, source=str(path))
    model = sam_architecture(spec, image_size=image_size)
    load_sam_state(model, state, source=str(path), variant=name, strict=strict)
    return model.eval()


def load_medsam(
    path: str | os.PathLike[str], *, image_size: int | None = None, strict: bool = True
) -> PromptableModel:
    """MedSAM's checkpoint (``medsam_vit_b.pth``: SAM ViT-B architecture and keys) as a
    ``PromptableModel``; feed it images from :func:`medsam_preprocess`. Arguments and errors as
    :func:`load_sam`."""
    return load_sam(path, "vit_b", image_size=image_size, strict=strict)


@dataclass(frozen=True)
class SamTransform:
    """How an image was fitted to the model's input, to map prompts there and masks back.

    Attributes:
        original_size: ``(H, W)`` of the image given to the preprocessing.
        input_size: ``(h, w)`` after resizing (before zero padding).
        padded_size: ``(S, S)``, the model's input.
    """

    original_size: tuple[int, int]
    input_size: tuple[int, int]
    padded_size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """Resized over original size, per axis (equal for SAM up to rounding)."""
        return tuple(
            new / old for new, old in zip(self.input_size, self.original_size, strict=True)
        )

    def apply_points(self, points: Tensor | np.ndarray | Sequence) -> Tensor:
        """Points ``(..., 2)`` as ``(y, x)`` in the original image -> the model's frame.

        Example:
            >>> t = SamTransform((100, 50), (1024, 512), (1024, 1024))
            >>> t.apply_points([[10.0, 20.0]])
            tensor([[102.4000, 204.8000]])
        """
        points = _float_tensor(points)
        if points.shape[-1] != 2:
            raise ConfigError(
                f"points need (y, x) in the last axis, got shape {tuple(points.shape)}"
            )
        return points * torch.tensor(self.scale, dtype=points.dtype, device=points.device)

    def apply_box(self, box: Tensor | np.ndarray | Sequence) -> Tensor:
        """Boxes ``(..., 4)`` as ``(y0, x0, y1, x1)`` in the original image -> model frame."""
        box = _float_tensor(box)
        if box.shape[-1] != 4:
            raise ConfigError(
                f"a box needs (y0, x0, y1, x1) in the last axis, got shape {tuple(box.shape)}"
            )
        return self.apply_points(box.reshape(*box.shape[:-1], 2, 2)).reshape(box.shape)


def _float_tensor(values: Tensor | np.ndarray | Sequence) -> Tensor:
    if isinstance(values, Tensor):
        return values.float()
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


def _rgb_channels_first(image: Tensor | np.ndarray, what: str) -> Tensor:
    """``(H, W)`` or ``(C, H, W)`` with C in {1, 3} -> float ``(3, H, W)`` (grey replicated)."""
    x = (image if isinstance(image, Tensor) else torch.as_tensor(np.asarray(image))).float()
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        hint = ""
        if x.ndim == 3 and x.shape[-1] in (1, 3):
            hint = " (channels last? pass image.transpose(2, 0, 1))"
        raise ConfigError(
            f"{what} needs a 2D image (H, W) or (C, H, W) with C = 1 or 3, got shape "
            f"{tuple(x.shape)}{hint}"
        )
    if x.shape[0] == 1:
        warnings.warn(
            f"{what}: grey image replicated to 3 channels for SAM's RGB weights", stacklevel=3
        )
        x = x.expand(3, -1, -1)
    return x


def _resize(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """``(C, H, W)`` resized with antialiasing when shrinking (as PIL / skimage do)."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x[None], size=size, mode=mode, align_corners=False, antialias=True)[0]


def sam_preprocess(
    image: Tensor | np.ndarray, *, image_size: int = 1024
) -> tuple[Tensor, SamTransform]:
    """SAM's preprocessing of one 2D image (``SamPredictor.set_image`` + ``Sam.preprocess``).

    Args:
        image: ``(H, W)`` or ``(C, H, W)`` (C = 1 or 3), intensities on SAM's 0-255 scale
            (window CT/MR to 0-255 first, or use :func:`medsam_preprocess`).
        image_size: the model's input side (1024 for SAM; the ``image_size`` of
            :func:`load_sam`).

    Returns:
        ``(1, 3, S, S)``: longest side resized to ``S`` (bilinear, antialiased), normalised
        with :data:`SAM_PIXEL_MEAN` / :data:`SAM_PIXEL_STD`, zero padded at the end; and the
        :class:`SamTransform`.

    Example:
        >>> x, t = sam_preprocess(torch.full((3, 50, 100), 128.0), image_size=64)
        >>> x.shape, t.input_size, round(float(x[0, 0, 0, 0]), 4), float(x[0, 0, 40, 0])
        (torch.Size([1, 3, 64, 64]), (32, 64), 0.0741, 0.0)
    """
    x = _rgb_channels_first(image, "sam_preprocess")
    height, width = x.shape[-2:]
    scale = image_size / max(height, width)
    size = (int(height * scale + 0.5), int(width * scale + 0.5))  # SAM's get_preprocess_shape
    x = _resize(x, size, "bilinear")
    x = (x - torch.tensor(SAM_PIXEL_MEAN)[:, None, None]) / torch.tensor(SAM_PIXEL_STD)[
        :, None, None
    ]
    x = F.pad(x, (0, image_size - size[1], 0, image_size - size[0]))
    return x[None], SamTransform((height, width), size, (image_size, image_size))


def medsam_preprocess(
    image: Tensor | np.ndarray, *, image_size: int = 1024
) -> tuple[Tensor, SamTransform]:
    """MedSAM's preprocessing of one 2D image (``MedSAM_Inference.py``).

    Args:
        image: ``(H, W)`` or ``(C, H, W)`` (C = 1 or 3), any intensity range.
        image_size: the model's input side (1024 for MedSAM).

    Returns:
        ``(1, 3, S, S)``: resized to ``S x S`` (bicubic, antialiased; the aspect is not kept,
        as MedSAM) then min-max normalised to [0, 1] over the whole image (no SAM mean/std);
        and the :class:`SamTransform` (per-axis scales, no padding).

    Example:
        >>> x, t = medsam_preprocess(torch.arange(36.0).reshape(3, 3, 4), image_size=8)
        >>> x.shape, float(x.min()), float(x.max()), t.scale
        (torch.Size([1, 3, 8, 8]), 0.0, 1.0, (2.6666666666666665, 2.0))
    """
    x = _rgb_channels_first(image, "medsam_preprocess")
    height, width = x.shape[-2:]
    x = _resize(x, (image_size, image_size), "bicubic")
    x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8)
    size = (image_size, image_size)
    return x[None], SamTransform((height, width), size, size)


def postprocess_masks(logits: Tensor, transform: SamTransform) -> Tensor:
    """Low-resolution mask logits ``(B, M, h, w)`` -> ``(B, M, H, W)`` on the original image
    (``Sam.postprocess_masks``): upsampled to the padded input, padding cut, resized.

    Example:
        >>> t = SamTransform((30, 60), (32, 64), (64, 64))
        >>> postprocess_masks(torch.zeros(1, 3, 16, 16), t).shape
        torch.Size([1, 3, 30, 60])
    """
    masks = F.interpolate(logits, transform.padded_size, mode="bilinear", align_corners=False)
    masks = masks[..., : transform.input_size[0], : transform.input_size[1]]
    return F.interpolate(masks, transform.original_size, mode="bilinear", align_corners=False)
