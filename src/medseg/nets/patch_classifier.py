"""Segmentation as classification of patches: a small CNN predicts the label of a patch's
centre voxel, and sliding it over every voxel gives a label map (the seeds' "idea #1",
before fully convolutional networks).

The CNN is built so that its sliding-window application has an exact fully convolutional
equivalent: unpadded 3^d convolutions with dilations ``1, 1, 2, 4, ...`` shrink a patch of
``patch_size`` voxels per axis to a single position (the receptive field is the patch), and
the MLP head acts on that one feature vector. Run on a whole (padded) image instead of a
patch, the same layers give every voxel's logits at once, with each layer's work shared
between overlapping patches: :meth:`PatchClassifier.dense_logits`. Both ways agree to float
precision in eval mode (batch norm uses its running statistics then); the patch-by-patch way
(:meth:`PatchClassifier.patch_logits`) is kept as the reference and the baseline the seeds
call "very inefficient".

Borders: the image is padded by ``patch_size // 2`` replicating its edge voxels, in training
(:mod:`medseg.training.patch_classifier`) and inference alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.classifier_base import Classifier, mlp_head
from medseg.nets.ops import act_layer, conv_type, norm_layer

#: Default patch size per axis: 33 (2D, 1D), 17 (3D).
DEFAULT_PATCH = {1: 33, 2: 33, 3: 17}


def patch_dilations(patch_size: int) -> list[int]:
    """Dilations of the unpadded 3^d convolutions whose receptive field is ``patch_size``:
    ``1, 1, 2, 4, ...`` doubling, the last one cut to fit.

    Raises:
        ConfigError: an even ``patch_size`` (no centre voxel) or one below 3.

    Example:
        >>> patch_dilations(33), patch_dilations(17), patch_dilations(25)
        ([1, 1, 2, 4, 8], [1, 1, 2, 4], [1, 1, 2, 4, 4])
    """
    if patch_size < 3 or patch_size % 2 == 0:
        raise ConfigError(
            f"patch_size must be odd and at least 3 (a centre voxel), got {patch_size}"
        )
    radius, dilations = patch_size // 2, [1]
    while sum(dilations) < radius:
        step = 1 if len(dilations) == 1 else 2 * dilations[-1]
        dilations.append(min(step, radius - sum(dilations)))
    return dilations


def pad_for_patches(x: Tensor, patch_size: int) -> Tensor:
    """Pad every spatial axis of ``(B, C, *spatial)`` by ``patch_size // 2`` (edge values
    replicated), so every voxel has a full patch around it."""
    r = patch_size // 2
    return F.pad(x, (r, r) * (x.dim() - 2), mode="replicate")


class PatchClassifier(Classifier):
    """Centre-voxel classifier: patches ``(B, C, *patch) -> (B, K)`` logits; images
    ``(B, C, *spatial)`` -> label maps with :meth:`segment`.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: classes ``K``.
        patch_size: patch edge length (odd); default 33 in 2D, 17 in 3D.
        features: channels of each convolution (one int: the same for all); their number is
            that of :func:`patch_dilations` (5 for 33, 4 for 17).
        hidden: widths of the MLP head's hidden layers.
        norm: ``batch`` or ``none`` (normalisations over space would break the
            patch-vs-dense equivalence).
        dropout: dropout after every hidden layer of the head.

    Example:
        >>> net = PatchClassifier(2, 1, 3, patch_size=9, features=4, hidden=(8,)).eval()
        >>> net(torch.zeros(5, 1, 9, 9)).shape
        torch.Size([5, 3])
        >>> net.segment(torch.zeros(1, 1, 12, 10)).shape
        torch.Size([1, 12, 10])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        patch_size: int | None = None,
        features: int | Sequence[int] = 32,
        hidden: Sequence[int] = (64,),
        norm: Literal["batch", "none"] = "batch",
        dropout: float = 0.0,
    ) -> None:
        if norm not in ("batch", "none"):
            raise ConfigError(f"patch_classifier norm must be 'batch' or 'none', got {norm!r}")
        size = DEFAULT_PATCH[spatial_dims] if patch_size is None else int(patch_size)
        dilations = patch_dilations(size)
        widths = [int(features)] * len(dilations) if isinstance(features, int) else list(features)
        if len(widths) != len(dilations):
            raise ConfigError(
                f"patch_size {size} needs {len(dilations)} convolution widths "
                f"(dilations {dilations}), got features {widths}"
            )
        layers: list[nn.Module] = []
        width = in_channels
        for w, d in zip(widths, dilations, strict=True):
            conv = conv_type(spatial_dims)(width, w, 3, dilation=d, bias=norm == "none")
            layers += [conv, norm_layer(norm, spatial_dims, w), act_layer("relu")]
            width = w
        head = mlp_head(width, hidden, out_channels, dropout=dropout)
        super().__init__(spatial_dims, nn.Sequential(*layers), head, width, 1, size)
        self.patch_size = size
        self.dilations = dilations

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K)`` of the centre voxel of each patch ``(B, C, *patch)``."""
        self._check_input(x)
        if any(n != self.patch_size for n in x.shape[2:]):
            raise ValueError(
                f"PatchClassifier takes patches of {self.patch_size} voxels per axis, got "
                f"{tuple(x.shape[2:])}; use segment() or dense_logits() for whole images"
            )
        return super().forward(x)

    def dense_logits(self, image: Tensor) -> Tensor:
        """Every voxel's logits ``(B, K, *spatial)`` in one fully convolutional pass (the
        head applied along the channel axis)."""
        features = self.backbone(pad_for_patches(image, self.patch_size))
        return self.head(features.movedim(1, -1)).movedim(-1, 1)

    def patch_logits(self, image: Tensor, *, chunk_size: int = 4096) -> Tensor:
        """Every voxel's logits ``(B, K, *spatial)``, patch by patch: the padded image is
        unfolded into a view of all patches, ``chunk_size`` of which are copied and
        classified at a time (memory: ``chunk_size x C x patch^d`` values)."""
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be at least 1, got {chunk_size}")
        b, shape, p = image.shape[0], tuple(image.shape[2:]), self.patch_size
        view = pad_for_patches(image, p)
        for axis in range(len(shape)):
            view = view.unfold(2 + axis, p, 1)  # (B, C, *spatial, *patch), no copy
        total, per_chunk = view[0, 0].numel() // p ** len(shape), max(1, chunk_size // b)
        logits = []
        for start in range(0, total, per_chunk):
            flat = torch.arange(start, min(start + per_chunk, total), device=image.device)
            centres = torch.unravel_index(flat, shape)
            patches = view[(slice(None), slice(None), *centres)].movedim(2, 1)
            out = super().forward(patches.reshape(-1, *patches.shape[2:]))
            logits.append(out.view(b, len(flat), -1))
        return torch.cat(logits, dim=1).movedim(2, 1).reshape(b, -1, *shape)

    @torch.no_grad()
    def segment(
        self,
        image: Tensor,
        *,
        method: Literal["dense", "patches"] = "dense",
        chunk_size: int = 4096,
    ) -> Tensor:
        """Label map ``(B, *spatial)`` of images ``(B, C, *spatial)`` (argmax of
        :meth:`dense_logits` or :meth:`patch_logits`); call ``eval()`` first."""
        if method == "dense":
            logits = self.dense_logits(image)
        elif method == "patches":
            logits = self.patch_logits(image, chunk_size=chunk_size)
        else:
            raise ConfigError(f"segment method must be 'dense' or 'patches', got {method!r}")
        return logits.argmax(dim=1)
