"""Loss of the autoencoder-regularised U-Net (Myronenko 2018).

    ``L = L_seg + 0.1 L_L2 + 0.1 L_KL``

``L_L2 = mean (I_in - I_rec)^2`` (the paper writes the squared L2 norm; the mean over voxels,
as MONAI, keeps the weight independent of the crop size) and
``L_KL = (1 / N) sum (mu^2 + sigma^2 - log sigma^2 - 1)``, ``N`` the number of image voxels
(spatial voxels per sample; the paper's normalisation, no 1/2 factor).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from medseg.losses.dice import DiceLoss


def reconstruction_l2(reconstruction: Tensor, image: Tensor) -> Tensor:
    """Mean squared error between the reconstruction and the input image."""
    return (reconstruction - image).pow(2).mean()


def vae_kl(mu: Tensor, logvar: Tensor, *, num_voxels: int) -> Tensor:
    """``(1 / N) sum (mu^2 + exp(logvar) - logvar - 1)`` per sample, averaged over the batch.

    Example:
        >>> import torch
        >>> vae_kl(torch.zeros(2, 4), torch.zeros(2, 4), num_voxels=10).item()   # N(0, 1): 0
        0.0
    """
    per_sample = (mu.pow(2) + logvar.exp() - logvar - 1.0).flatten(1).sum(dim=1)
    return (per_sample / num_voxels).mean()


class VAELoss(nn.Module):
    """``seg_loss + l2_weight * L_L2 + kl_weight * L_KL``; ``loss(output, target, image)``.

    ``output`` is the network's training output ``(logits, reconstruction, mu, logvar)``
    (:class:`medseg.nets.VAEOutput`, a tuple) or plain logits (eval mode: only the
    segmentation term). Unlike the registered losses it needs the input ``image``.

    Args:
        seg_loss: segmentation loss on the logits; default :class:`DiceLoss` (the paper's
            soft Dice).
        l2_weight: weight of the reconstruction term (paper: 0.1).
        kl_weight: weight of the KL term (paper: 0.1).
    """

    def __init__(
        self, seg_loss: nn.Module | None = None, *, l2_weight: float = 0.1, kl_weight: float = 0.1
    ) -> None:
        super().__init__()
        self.seg_loss = DiceLoss() if seg_loss is None else seg_loss
        self.l2_weight, self.kl_weight = l2_weight, kl_weight

    def forward(
        self, output: Tensor | tuple[Tensor, Tensor, Tensor, Tensor], target: Tensor, image: Tensor
    ) -> Tensor:
        if isinstance(output, Tensor):
            return self.seg_loss(output, target)
        logits, reconstruction, mu, logvar = output
        num_voxels = math.prod(image.shape[2:])
        return (
            self.seg_loss(logits, target)
            + self.l2_weight * reconstruction_l2(reconstruction, image)
            + self.kl_weight * vae_kl(mu, logvar, num_voxels=num_voxels)
        )
