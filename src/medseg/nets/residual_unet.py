"""A residual denoiser: a U-Net that predicts the noise, ``output = input - noise``.

Residual learning (DnCNN, Zhang et al. 2017, IEEE TIP 26(7)): the network learns the noise,
which is simpler than the image, and an untrained network (its last layer starts at zero)
returns its input unchanged. The U-Net is :class:`medseg.nets.unet.UNet`, with smaller
default widths than the segmentation default.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.nets.unet import UNet

DEFAULT_FEATURES = (32, 64, 128)


class ResidualDenoiser(nn.Module):
    """``(B, C, *spatial) -> (B, C, *spatial)``: the input minus the U-Net's predicted noise.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        out_channels: ``in_channels`` (the output is an image of the input's kind); with one
            input channel any count is accepted, each output channel being the input minus
            its own noise estimate (so the registry's generic ``(1, K)`` builds work).
        **options: :class:`UNet` options (``features`` default ``(32, 64, 128)``).

    Raises:
        ConfigError: ``out_channels != in_channels``, or bad U-Net options.

    Example:
        >>> import torch
        >>> net = ResidualDenoiser(2, 1, 1, features=(4, 8))
        >>> x = torch.randn(1, 1, 8, 8)
        >>> bool(torch.equal(net(x), x))  # the noise head starts at zero
        True
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
    ) -> None:
        super().__init__()
        if out_channels != in_channels and in_channels != 1:
            raise ConfigError(
                f"a residual denoiser returns an image like its input: out_channels "
                f"({out_channels}) must equal in_channels ({in_channels})"
            )
        options = {"features": DEFAULT_FEATURES, **options}
        self.noise = UNet(spatial_dims, in_channels, out_channels, **options)
        head = self.noise.heads[0]
        nn.init.zeros_(head.weight)
        if head.bias is not None:
            nn.init.zeros_(head.bias)

    @property
    def required_divisor(self) -> tuple[int, ...]:
        """Per-axis factor the input spatial size must be a multiple of."""
        return self.noise.required_divisor

    def predict_noise(self, x: Tensor) -> Tensor:
        """The predicted noise ``(B, C, *spatial)``."""
        return self.noise(x)

    def forward(self, x: Tensor) -> Tensor:
        """The denoised image ``x - noise(x)``, ``(B, C, *spatial)``."""
        return x - self.noise(x)
