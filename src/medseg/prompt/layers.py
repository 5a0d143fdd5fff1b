"""Small building blocks shared by the promptable model: a channel LayerNorm and an MLP.

Both keep SAM's parameter names (``weight``/``bias``; ``layers.j``) so SAM's weights load by
name, and both work for any number of spatial axes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of ``(B, C, *spatial)`` maps (SAM's ``LayerNorm2d``,
    N-dimensional): each voxel's feature vector is normalised by its own mean and variance.

    Args:
        num_channels: ``C``.
        eps: added to the variance (SAM uses ``1e-6``).

    Example:
        >>> norm = ChannelLayerNorm(4)
        >>> y = norm(torch.randn(2, 4, 3, 5, 6))
        >>> y.shape, bool(y.mean(1).abs().max() < 1e-5)
        (torch.Size([2, 4, 3, 5, 6]), True)
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)  # broadcast (C,) over batch and spatial axes
        return self.weight.view(shape) * x + self.bias.view(shape)


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU in between (none after the last), as SAM's
    mask-decoder ``MLP`` (parameters ``layers.j``).

    Args:
        input_dim: input width.
        hidden_dim: width of every hidden layer.
        output_dim: output width.
        num_layers: number of ``nn.Linear`` layers (at least 1).

    Shapes:
        ``(*, input_dim) -> (*, output_dim)``.

    Example:
        >>> MLP(8, 16, 3, 3)(torch.zeros(2, 8)).shape
        torch.Size([2, 3])
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        widths_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        widths_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(
            nn.Linear(n, k) for n, k in zip(widths_in, widths_out, strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else F.relu(layer(x))
        return x
