"""Capsule network with dynamic routing (Sabour, Frosst & Hinton 2017), N-dimensional.

A capsule is a vector whose length is the probability that an entity is present and whose
orientation encodes its pose. The non-linearity shrinks lengths into ``[0, 1)``:

    ``squash(s) = ||s||^2 / (1 + ||s||^2) * s / ||s||``

Layers: a valid convolution stem (ReLU), primary capsules (a strided valid convolution with
``num_primary_types * primary_dim`` channels, cut into ``primary_dim``-vectors at every grid
position, squashed) and one ``class_dim``-capsule per class. Each primary capsule ``i``
predicts every class capsule ``j`` by its own matrix, ``u_hat_j|i = W_ij u_i``, and routing by
agreement (``r`` iterations) decides how much each prediction counts:

    ``b_ij = 0``; repeat ``r`` times: ``c_ij = softmax_j(b_ij)``, ``s_j = sum_i c_ij u_hat_j|i``,
    ``v_j = squash(s_j)``, ``b_ij += u_hat_j|i . v_j``  (the last update is not needed)

The class score is the length ``||v_j||``. A decoder (FC 512 -> 1024 -> input size, sigmoid)
reconstructs the input from the class capsules with all but one masked to zero: the true
class in training, the longest capsule otherwise. Loss: :mod:`medseg.losses.margin`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.ops import conv_type, per_axis


def squash(s: Tensor, dim: int = -1, eps: float = 1e-8) -> Tensor:
    """``||s||^2 / (1 + ||s||^2) * s / ||s||`` along ``dim``: same direction, length in [0, 1).

    Computed as ``s * ||s|| / (1 + ||s||^2)`` with ``||s|| = sqrt(||s||^2 + eps)``, so
    ``squash(0) = 0`` with finite gradients.

    Example:
        >>> squash(torch.tensor([3.0, 4.0]))   # length 25 / 26
        tensor([0.5769, 0.7692])
    """
    squared = s.pow(2).sum(dim=dim, keepdim=True)
    return s * (squared + eps).sqrt() / (1.0 + squared)


def dynamic_routing(u_hat: Tensor, iterations: int = 3) -> tuple[Tensor, Tensor]:
    """Routing by agreement (Sabour et al. 2017, procedure 1).

    Args:
        u_hat: predictions ``(B, N_in, N_out, D)``: ``u_hat[:, i, j]`` is input capsule ``i``'s
            prediction of output capsule ``j``.
        iterations: routing iterations ``r >= 1`` (1: plain average, ``c_ij = 1 / N_out``).

    Returns:
        ``v`` ``(B, N_out, D)``, the output capsules, and ``c`` ``(B, N_in, N_out)``, the
        coupling coefficients used for them (each row sums to 1 over the outputs).

    Example:
        >>> v, c = dynamic_routing(torch.ones(1, 3, 2, 4), iterations=2)
        >>> v.shape, c.shape, c.sum(-1)
        (torch.Size([1, 2, 4]), torch.Size([1, 3, 2]), tensor([[1., 1., 1.]]))
    """
    if iterations < 1:
        raise ConfigError(f"routing_iterations must be >= 1, got {iterations}")
    logits = u_hat.new_zeros(u_hat.shape[:3])  # b_ij
    for iteration in range(iterations):
        c = logits.softmax(dim=2)
        v = squash((c.unsqueeze(-1) * u_hat).sum(dim=1))  # (B, N_out, D)
        if iteration < iterations - 1:
            logits = logits + (u_hat * v.unsqueeze(1)).sum(dim=-1)
    return v, c


class PrimaryCapsules(nn.Module):
    """A valid convolution to ``types * capsule_dim`` channels cut into squashed capsules.

    Shapes:
        ``(B, C, *spatial) -> (B, types * prod(grid), capsule_dim)``, ordered type-major
        (all grid positions of type 0 first).

    Example:
        >>> PrimaryCapsules(2, 4, 3, 8, kernel_size=3, stride=2)(torch.zeros(1, 4, 7, 7)).shape
        torch.Size([1, 27, 8])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        types: int,
        capsule_dim: int,
        *,
        kernel_size: int | Sequence[int] = 9,
        stride: int | Sequence[int] = 2,
    ) -> None:
        super().__init__()
        self.types, self.capsule_dim = types, capsule_dim
        self.conv = conv_type(spatial_dims)(
            in_channels, types * capsule_dim, kernel_size=kernel_size, stride=stride
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        out = out.reshape(x.shape[0], self.types, self.capsule_dim, -1)  # (B, T, D, grid)
        return squash(out.transpose(2, 3).reshape(x.shape[0], -1, self.capsule_dim))


class ClassCapsules(nn.Module):
    """Fully connected capsule layer with routing by agreement.

    One matrix ``W_ij`` ``(out_dim, in_dim)`` per input capsule ``i`` and output capsule
    ``j`` (no bias), so the number of input capsules is fixed.

    Shapes:
        ``(B, num_in, in_dim) -> (B, num_out, out_dim)``.

    Example:
        >>> ClassCapsules(5, 8, 3, 16)(torch.rand(2, 5, 8)).shape
        torch.Size([2, 3, 16])
    """

    def __init__(
        self, num_in: int, in_dim: int, num_out: int, out_dim: int, *, iterations: int = 3
    ) -> None:
        super().__init__()
        if iterations < 1:
            raise ConfigError(f"routing_iterations must be >= 1, got {iterations}")
        self.iterations = iterations
        self.weight = nn.Parameter(0.01 * torch.randn(num_in, num_out, out_dim, in_dim))
        self.last_coupling: Tensor | None = None

    def forward(self, u: Tensor) -> Tensor:
        u_hat = torch.einsum("ijdk,bik->bijd", self.weight, u)  # (B, N_in, N_out, out_dim)
        v, c = dynamic_routing(u_hat, self.iterations)
        self.last_coupling = c.detach()
        return v


class CapsuleNetwork(nn.Module):
    """CapsNet classifier: ``(B, in_channels, *image_size) -> (B, K)`` capsule lengths.

    The outputs are **lengths in [0, 1)**, not unnormalised logits: train them with
    :class:`medseg.losses.margin.MarginLoss` (not cross-entropy) and predict the argmax.
    (In float32 a length rounds to 1.0 once ``||s_j||`` exceeds about 4000.) Gradients flow
    through every routing iteration.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: classes ``K`` (one class capsule each).
        image_size: the (fixed) input size, an int or one per axis; it fixes the number of
            primary capsules and the decoder's output. Default 28 (MNIST's, the paper's).
        stem_channels: channels of the stem convolution; default 256 (the paper) for 1D/2D,
            32 for 3D.
        kernel_size: kernel of the stem and primary-capsule convolutions (paper: 9).
        primary_stride: stride of the primary-capsule convolution (paper: 2).
        num_primary_types: primary capsule types (channel groups); default 32 (the paper)
            for 1D/2D, 8 for 3D.
        primary_dim: primary capsule length (paper: 8).
        class_dim: class capsule length (paper: 16).
        routing_iterations: routing iterations (paper: 3).
        decoder_features: hidden widths of the reconstruction decoder; default (512, 1024)
            (the paper) for 1D/2D, (128, 256) for 3D.
        reconstruction: build the decoder (False saves its ``width * prod(input)`` weights).

    Attributes:
        backbone: stem convolution + ReLU + :class:`PrimaryCapsules`, ``x -> (B, N, primary_dim)``.
        head: the :class:`ClassCapsules` routing layer. With ``decoder`` (which also depends
            on ``K``) it is the part to replace/retrain for a new task.
        decoder: the reconstruction MLP, or None.
        last_capsules: the class capsules ``(B, K, class_dim)`` of the last forward, detached
            (for inspection; use :meth:`capsules` + :meth:`reconstruct` to train through them).

    With the paper's settings (28x28, 1 channel, 10 classes) it has 6,804,224 parameters
    without and 8,215,568 with the decoder (the paper's "6.8M" and "8.2M").

    Example:
        >>> net = CapsuleNetwork(2, 1, 3, image_size=12, stem_channels=8, kernel_size=3,
        ...                      num_primary_types=2, primary_dim=4, class_dim=6,
        ...                      decoder_features=(8, 8))
        >>> lengths, rec = net.forward_with_reconstruction(torch.rand(2, 1, 12, 12))
        >>> lengths.shape, rec.shape
        (torch.Size([2, 3]), torch.Size([2, 1, 12, 12]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        image_size: int | Sequence[int] = 28,
        stem_channels: int | None = None,
        kernel_size: int = 9,
        primary_stride: int = 2,
        num_primary_types: int | None = None,
        primary_dim: int = 8,
        class_dim: int = 16,
        routing_iterations: int = 3,
        decoder_features: Sequence[int] | None = None,
        reconstruction: bool = True,
    ) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        size = per_axis(image_size, spatial_dims, "image_size")
        self.image_size, self.in_channels, self.num_classes = size, in_channels, out_channels
        light = spatial_dims == 3  # lighter 3D defaults
        stem = stem_channels if stem_channels is not None else (32 if light else 256)
        types = num_primary_types if num_primary_types is not None else (8 if light else 32)
        after_stem = tuple(n - kernel_size + 1 for n in size)
        self.grid = tuple((n - kernel_size) // primary_stride + 1 for n in after_stem)
        if min(self.grid) < 1:
            raise ConfigError(
                f"image_size {size} is too small for two valid {kernel_size}-wide convolutions "
                f"(the second with stride {primary_stride}); use a smaller kernel_size"
            )
        self.backbone = nn.Sequential(
            conv(in_channels, stem, kernel_size=kernel_size),
            nn.ReLU(inplace=True),
            PrimaryCapsules(
                spatial_dims,
                stem,
                types,
                primary_dim,
                kernel_size=kernel_size,
                stride=primary_stride,
            ),
        )
        self.num_primary = types * math.prod(self.grid)
        self.head = ClassCapsules(
            self.num_primary, primary_dim, out_channels, class_dim, iterations=routing_iterations
        )
        self.decoder: nn.Sequential | None = None
        if reconstruction:
            hidden = (
                decoder_features
                if decoder_features is not None
                else ((128, 256) if light else (512, 1024))
            )
            widths = [out_channels * class_dim, *hidden]
            layers: list[nn.Module] = []
            for a, b in zip(widths[:-1], widths[1:], strict=True):
                layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
            layers += [nn.Linear(widths[-1], in_channels * math.prod(size)), nn.Sigmoid()]
            self.decoder = nn.Sequential(*layers)
        self.last_capsules: Tensor | None = None

    def capsules(self, x: Tensor) -> Tensor:
        """The class capsules ``(B, K, class_dim)`` (with gradients)."""
        if tuple(x.shape[2:]) != self.image_size:
            raise ConfigError(
                f"input spatial size {tuple(x.shape[2:])} differs from the CapsuleNetwork's "
                f"image_size {self.image_size}; resize/crop the input or rebuild the network"
            )
        v = self.head(self.backbone(x))
        self.last_capsules = v.detach()
        return v

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Capsule lengths ``(B, K)`` in [0, 1). ``y`` is accepted (and unused) so that
        ``net(x, y)`` and ``net.forward_with_reconstruction(x, y)`` look alike."""
        return self.capsules(x).norm(dim=-1)

    def reconstruct(self, capsules: Tensor, y: Tensor | None = None) -> Tensor:
        """Decode class capsules ``(B, K, D)`` masked to one class into ``(B, C, *image_size)``.

        Args:
            capsules: class capsules, e.g. from :meth:`capsules`.
            y: class labels ``(B,)`` to keep (training); None keeps the longest capsule.
        """
        if self.decoder is None:
            raise ConfigError("this CapsuleNetwork was built with reconstruction=False")
        keep = capsules.norm(dim=-1).argmax(dim=1) if y is None else y.reshape(-1).long()
        mask = nn.functional.one_hot(keep, self.num_classes).to(capsules.dtype)
        out = self.decoder((capsules * mask.unsqueeze(-1)).flatten(1))
        return out.reshape(capsules.shape[0], self.in_channels, *self.image_size)

    def forward_with_reconstruction(
        self, x: Tensor, y: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(lengths (B, K), reconstruction (B, C, *image_size))``; the decoder sees only the
        capsule of class ``y`` (training) or, without ``y``, the longest one."""
        v = self.capsules(x)
        return v.norm(dim=-1), self.reconstruct(v, y)
