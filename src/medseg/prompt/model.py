"""The promptable (SAM-style) segmentation model, for 2D and 3D images.

An image encoder embeds the image once (:meth:`PromptableModel.embed`); each prompt (points,
a box, a low-resolution mask) is then decoded in milliseconds (:meth:`PromptableModel.predict`)
into ``M`` mask proposals with predicted IoU (Kirillov et al. 2023). Interactive correction
(:meth:`PromptableModel.refine`) adds one click at a time and feeds the previous mask back as
a mask prompt, as SAM's interactive use. Coordinates are voxel indices in array axis order
(2D ``(y, x)``, 3D ``(z, y, x)``) of the image given to :meth:`PromptableModel.embed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from medseg.errors import ConfigError
from medseg.nets.ops import interpolation_mode
from medseg.prompt.mask_decoder import MaskDecoder
from medseg.prompt.presets import PROMPT_PRESETS, PromptPreset, build_image_encoder
from medseg.prompt.prompt_checks import check_prompts
from medseg.prompt.prompt_encoder import PromptEncoder
from medseg.prompt.transformer import TwoWayTransformer


@dataclass(frozen=True)
class PromptResult:
    """Mask proposals for one prompt set per batch item.

    Attributes:
        logits: ``(B, M, *image_size)`` mask logits (``low_res_logits`` up-sampled).
        low_res_logits: ``(B, M, *4 grid)`` the decoder's logits (feed one back as a mask
            prompt).
        iou: ``(B, M)`` predicted IoU of each proposal.
    """

    logits: Tensor
    low_res_logits: Tensor
    iou: Tensor


@dataclass(frozen=True)
class Click:
    """One interactive click: ``position`` in voxel indices (array order); ``positive`` True
    adds the structure under it, False removes it."""

    position: tuple[float, ...]
    positive: bool = True


@dataclass(frozen=True)
class RefineState:
    """The state of an interactive session on one image (batch 1).

    Attributes:
        embedding: ``(1, C, *grid)`` image embedding.
        points: ``(1, N, D)`` clicks so far; ``labels``: ``(1, N)`` (1 positive, 0 negative).
        box: ``(1, 2 D)`` box prompt given to :meth:`PromptableModel.start`, or None.
        low_res_logits: ``(1, 1, *4 grid)`` the current mask's logits (None before the
            first click), fed back as the mask prompt of the next click.
        result: the current mask as a single-proposal :class:`PromptResult` (or None).
    """

    embedding: Tensor
    points: Tensor
    labels: Tensor
    box: Tensor | None = None
    low_res_logits: Tensor | None = None
    result: PromptResult | None = None

    @property
    def mask(self) -> Tensor | None:
        """``(1, *image_size)`` bool, the current mask (None before the first click)."""
        return None if self.result is None else self.result.logits[:, 0] > 0


class PromptableModel(nn.Module):
    """Image encoder + :class:`PromptEncoder` + :class:`MaskDecoder` (SAM's structure).

    Args:
        image_encoder: ``(B, C_in, *image_size) -> (B, embed_dim, *grid)``.
        prompt_encoder: its ``input_image_size`` is the model's :attr:`image_size`.
        mask_decoder: the decoder (same ``spatial_dims``).
        pixel_mean: per-channel mean subtracted by :meth:`embed` (None: no normalisation).
        pixel_std: per-channel standard deviation divided by :meth:`embed`.

    Example:
        >>> model = build_promptable(3, image_size=(32, 32, 32), preset="tiny")
        >>> embedding = model.embed(torch.zeros(1, 1, 32, 32, 32))
        >>> result = model.predict(embedding, points=torch.tensor([[16.0, 10.0, 12.0]]),
        ...                        point_labels=torch.tensor([1]))
        >>> result.logits.shape, result.iou.shape, model.best_mask(result).shape
        (torch.Size([1, 3, 32, 32, 32]), torch.Size([1, 3]), torch.Size([1, 32, 32, 32]))
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        *,
        pixel_mean: Sequence[float] | None = None,
        pixel_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.image_encoder, self.prompt_encoder = image_encoder, prompt_encoder
        self.mask_decoder = mask_decoder
        self.spatial_dims = prompt_encoder.spatial_dims
        if mask_decoder.spatial_dims != self.spatial_dims:
            raise ConfigError(
                f"prompt encoder ({self.spatial_dims}D) and mask decoder "
                f"({mask_decoder.spatial_dims}D) disagree on spatial_dims"
            )
        self.image_size = prompt_encoder.input_image_size
        shape = (-1,) + (1,) * self.spatial_dims  # (C,) -> broadcastable over (B, C, *spatial)
        for name, values in (("pixel_mean", pixel_mean), ("pixel_std", pixel_std)):
            buffer = None if values is None else torch.tensor(values, dtype=torch.float32)
            self.register_buffer(name, None if buffer is None else buffer.view(shape), False)

    def preprocess(self, image: Tensor) -> Tensor:
        """Check the size and normalise by ``pixel_mean``/``pixel_std`` (when given)."""
        if image.ndim != self.spatial_dims + 2 or tuple(image.shape[2:]) != self.image_size:
            raise ConfigError(
                f"image shape {tuple(image.shape)} is not (B, C, {self.image_size}): resize or "
                f"pad the image to the model's image_size {self.image_size} first"
            )
        if self.pixel_mean is not None:
            image = image - self.pixel_mean
        if self.pixel_std is not None:
            image = image / self.pixel_std
        return image

    def embed(self, image: Tensor) -> Tensor:
        """``(B, C_in, *image_size) -> (B, embed_dim, *grid)``; without autograd when the
        encoder is frozen (no parameter requires grad) or in eval mode."""
        trainable = any(p.requires_grad for p in self.image_encoder.parameters())
        track = torch.is_grad_enabled() and trainable and self.image_encoder.training
        with torch.set_grad_enabled(track):
            return self.image_encoder(self.preprocess(image))

    def predict(
        self,
        embedding: Tensor,
        *,
        points: Tensor | None = None,
        point_labels: Tensor | None = None,
        box: Tensor | None = None,
        mask_logits: Tensor | None = None,
        multimask: bool = True,
    ) -> PromptResult:
        """Decode prompts into mask proposals.

        Args:
            embedding: ``(B, C, *grid)`` from :meth:`embed` (``B = 1`` is shared by a batch
                of prompt sets).
            points: ``(B, N, D)`` or ``(N, D)`` voxel indices in array order.
            point_labels: ``(B, N)`` or ``(N,)``: 1 positive, 0 negative, -1 padding
                (default: all positive).
            box: ``(B, 2 D)`` or ``(2 D,)`` as ``(lo_0.., hi_0..)`` in array order.
            mask_logits: ``(B, 1, *4 grid)`` low-resolution logits (e.g. a previous
                ``low_res_logits`` proposal).
            multimask: 3 proposals (for ambiguous prompts such as one click) or 1.

        Returns:
            A :class:`PromptResult` with ``M = 3`` or 1 proposals.

        Raises:
            ConfigError: no prompt at all, an inverted box, a box or points outside the
                image, labels other than 1/0/-1, or inconsistent shapes.
        """
        prompts = check_prompts(
            points=points,
            point_labels=point_labels,
            box=box,
            mask_logits=mask_logits,
            image_size=self.image_size,
            mask_size=self.prompt_encoder.mask_input_size,
            embedding_batch=embedding.shape[0],
        )
        device = embedding.device
        points_on = None
        if prompts.points is not None:
            points_on = (prompts.points[0].to(device), prompts.points[1].to(device))
        sparse, dense = self.prompt_encoder(
            points_on,
            None if prompts.box is None else prompts.box.to(device),
            None if prompts.mask_logits is None else prompts.mask_logits.to(device),
        )
        if sparse.shape[0] != prompts.batch:  # a mask-only prompt with a batched embedding
            sparse = sparse.expand(prompts.batch, -1, -1)
            dense = dense.expand(prompts.batch, *dense.shape[1:])
        low_res, iou = self.mask_decoder(
            embedding, self.prompt_encoder.get_dense_pe(), sparse, dense, multimask
        )
        logits = F.interpolate(
            low_res,
            size=self.image_size,
            mode=interpolation_mode(self.spatial_dims),
            align_corners=False,
        )
        return PromptResult(logits=logits, low_res_logits=low_res, iou=iou)

    def forward(self, image: Tensor, **prompts: object) -> PromptResult:
        """``predict(embed(image), **prompts)``, so a training loop can call the model."""
        return self.predict(self.embed(image), **prompts)  # type: ignore[arg-type]

    @staticmethod
    def best_mask(result: PromptResult) -> Tensor:
        """``(B, *image_size)`` bool: per batch item, the proposal with the highest
        predicted IoU, thresholded at logit 0."""
        best = result.iou.argmax(dim=1)
        return result.logits[torch.arange(best.shape[0]), best] > 0

    def start(self, embedding: Tensor, *, box: Tensor | None = None) -> RefineState:
        """A new interactive session on ``embedding`` ``(1, C, *grid)`` (optionally with a
        box prompt ``(2 D,)`` kept for every click)."""
        if embedding.shape[0] != 1:
            raise ConfigError(
                f"interactive refinement works on one image at a time; the embedding has "
                f"batch {embedding.shape[0]}"
            )
        dims = self.spatial_dims
        points = embedding.new_zeros(1, 0, dims)
        labels = torch.zeros(1, 0, dtype=torch.long, device=embedding.device)
        box = None if box is None else torch.as_tensor(box, dtype=torch.float32).reshape(1, -1)
        return RefineState(embedding=embedding, points=points, labels=labels, box=box)

    def refine(self, state: RefineState, click: Click) -> RefineState:
        """Add ``click`` and predict again; returns the new state (``state`` is unchanged).

        The first click without a box asks for 3 proposals and keeps the one with the
        highest predicted IoU; later clicks ask for a single mask and feed the previous
        low-resolution logits back as the mask prompt (SAM's interactive protocol).
        """
        position = torch.as_tensor(click.position, dtype=torch.float32)
        if position.shape != (self.spatial_dims,):
            raise ConfigError(
                f"click position {tuple(click.position)} needs {self.spatial_dims} voxel "
                "indices in array order"
            )
        points = torch.cat([state.points, position.to(state.points)[None, None]], dim=1)
        label = torch.full((1, 1), int(click.positive), device=state.labels.device)
        labels = torch.cat([state.labels, label], dim=1)
        multimask = state.low_res_logits is None and state.box is None
        result = self.predict(
            state.embedding,
            points=points,
            point_labels=labels,
            box=state.box,
            mask_logits=state.low_res_logits,
            multimask=multimask,
        )
        best = int(result.iou[0].argmax())
        chosen = PromptResult(
            logits=result.logits[:, best : best + 1],
            low_res_logits=result.low_res_logits[:, best : best + 1],
            iou=result.iou[:, best : best + 1],
        )
        return replace(
            state,
            points=points,
            labels=labels,
            low_res_logits=chosen.low_res_logits.detach(),
            result=chosen,
        )


def build_promptable(
    spatial_dims: int = 2,
    *,
    preset: str = "cpu",
    image_size: int | Sequence[int] | None = None,
    in_channels: int = 1,
) -> PromptableModel:
    """A small promptable model with a medseg image encoder (randomly initialised).

    Args:
        spatial_dims: 2 or 3.
        preset: a name of :data:`~medseg.prompt.presets.PROMPT_PRESETS`: ``tiny`` (tests),
            ``cpu`` (U-Net encoder, stride 16, width 64) or ``vit`` (ViT, 16-voxel patches).
        image_size: the input size, an int or one per axis; default ``(256, 256)`` in 2D,
            ``(64, 64, 64)`` in 3D. Must be divisible by the encoder's stride.
        in_channels: image channels.

    Raises:
        ConfigError: for an unknown preset, a wrong ``spatial_dims`` or an image size the
            encoder's stride does not divide.
    """
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3 for a promptable model, got {spatial_dims}")
    spec: PromptPreset = PROMPT_PRESETS.build(preset)
    image_encoder, size, grid = build_image_encoder(spec, spatial_dims, image_size, in_channels)
    return _assemble(image_encoder, spec, size, grid)


def _assemble(
    image_encoder: nn.Module, spec: PromptPreset, size: tuple[int, ...], grid: tuple[int, ...]
) -> PromptableModel:
    """``image_encoder`` + a fresh prompt encoder and mask decoder of ``spec``'s sizes."""
    dim, dims = spec.embed_dim, len(size)
    transformer = TwoWayTransformer(spec.depth, dim, spec.num_heads, spec.mlp_dim)
    return PromptableModel(
        image_encoder,
        PromptEncoder(dim, grid, size, spec.mask_in_chans, spatial_dims=dims),
        MaskDecoder(dim, transformer, iou_head_hidden_dim=spec.iou_hidden_dim, spatial_dims=dims),
    )


def promptable_from_encoder(
    image_encoder: nn.Module,
    *,
    image_size: Sequence[int],
    preset: str = "cpu",
) -> PromptableModel:
    """A promptable model on a given image encoder (e.g. :func:`~medseg.prompt.neck.
    unet_image_encoder` of a trained medseg U-Net) with a fresh prompt encoder and mask
    decoder of ``preset``'s sizes; the encoder must output the preset's ``embed_dim``
    channels at a grid of ``image_size / image_encoder.stride``.

    Raises:
        ConfigError: the encoder's stride does not divide ``image_size``.
    """
    spec: PromptPreset = PROMPT_PRESETS.build(preset)
    size = tuple(int(n) for n in image_size)
    stride = tuple(image_encoder.stride)
    if any(n % s for n, s in zip(size, stride, strict=True)):
        raise ConfigError(
            f"image_size {size} must be divisible by the image encoder's stride {stride}"
        )
    grid = tuple(n // s for n, s in zip(size, stride, strict=True))
    return _assemble(image_encoder, spec, size, grid)
