"""Margin loss of capsule networks (Sabour et al. 2017, eq. 4), with the reconstruction term.

For class capsule ``k`` of length ``||v_k||`` and ``T_k = 1`` iff ``k`` is the true class:

    ``L_k = T_k max(0, m+ - ||v_k||)^2 + lambda (1 - T_k) max(0, ||v_k|| - m-)^2``

with ``m+ = 0.9``, ``m- = 0.1``, ``lambda = 0.5`` (down-weighting absent classes so the
lengths of all capsules do not shrink early on). A sample's loss is the sum over the classes;
the batch loss is the mean over samples. :func:`capsule_loss` adds ``0.0005`` times the sum of
squared differences between the reconstruction and the image (summed per sample, averaged
over the batch), the paper's regulariser.
"""

from __future__ import annotations

from torch import Tensor, nn


def _check(lengths: Tensor, target: Tensor) -> Tensor:
    if lengths.ndim != 2:
        raise ValueError(f"capsule lengths must be (B, K), got shape {tuple(lengths.shape)}")
    target = target.reshape(-1) if target.ndim == 2 and target.shape[1] == 1 else target
    if target.shape != lengths.shape[:1]:
        raise ValueError(
            f"target must hold one class index per sample, shape ({lengths.shape[0]},), "
            f"got {tuple(target.shape)}"
        )
    return target.long()


def margin_loss(
    lengths: Tensor,
    target: Tensor,
    *,
    m_plus: float = 0.9,
    m_minus: float = 0.1,
    lam: float = 0.5,
) -> Tensor:
    """Mean over the batch of the per-sample margin loss summed over classes.

    Args:
        lengths: capsule lengths ``(B, K)`` (e.g. :class:`medseg.nets.capsnet.CapsuleNetwork`
            output).
        target: class indices ``(B,)`` (or ``(B, 1)``).
        m_plus: the true class's capsule should be at least this long.
        m_minus: the other capsules should be at most this long.
        lam: weight of the absent-class term.

    Returns:
        A scalar.

    Example:
        >>> import torch
        >>> # true class 0 at 0.8: 0.1^2; class 1 at 0.3: 0.5 * 0.2^2  -> 0.01 + 0.02
        >>> round(margin_loss(torch.tensor([[0.8, 0.3]]), torch.tensor([0])).item(), 6)
        0.03
    """
    target = _check(lengths, target)
    present = nn.functional.one_hot(target, lengths.shape[1]).to(lengths.dtype)
    positive = present * (m_plus - lengths).clamp_min(0).pow(2)
    negative = lam * (1.0 - present) * (lengths - m_minus).clamp_min(0).pow(2)
    return (positive + negative).sum(dim=1).mean()


def capsule_loss(
    lengths: Tensor,
    target: Tensor,
    reconstruction: Tensor | None = None,
    image: Tensor | None = None,
    *,
    reconstruction_weight: float = 0.0005,
    m_plus: float = 0.9,
    m_minus: float = 0.1,
    lam: float = 0.5,
) -> Tensor:
    """:func:`margin_loss` ``+ reconstruction_weight * sum (reconstruction - image)^2``.

    The squared error is summed over each sample's channels and voxels and averaged over
    the batch; without ``reconstruction`` only the margin loss is returned.

    Raises:
        ValueError: if only one of ``reconstruction``/``image`` is given or their shapes differ.

    Example:
        >>> import torch
        >>> lengths, target = torch.tensor([[0.8, 0.3]]), torch.tensor([0])
        >>> rec, img = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)   # error 4
        >>> round(capsule_loss(lengths, target, rec, img).item(), 6)     # 0.03 + 0.0005 * 4
        0.032
    """
    loss = margin_loss(lengths, target, m_plus=m_plus, m_minus=m_minus, lam=lam)
    if reconstruction is None and image is None:
        return loss
    if reconstruction is None or image is None:
        raise ValueError("capsule_loss needs both reconstruction and image, or neither")
    if reconstruction.shape != image.shape:
        raise ValueError(
            f"reconstruction shape {tuple(reconstruction.shape)} differs from image shape "
            f"{tuple(image.shape)}"
        )
    squared = (reconstruction - image).pow(2).flatten(1).sum(dim=1).mean()
    return loss + reconstruction_weight * squared


class MarginLoss(nn.Module):
    """:func:`margin_loss` as a module: ``loss(lengths, target)``.

    Args:
        m_plus: upper margin (paper: 0.9).
        m_minus: lower margin (paper: 0.1).
        lam: absent-class weight (paper: 0.5).

    Shapes:
        ``lengths (B, K)`` in [0, 1), ``target (B,)`` int class indices ``-> ()``.

    Example:
        >>> import torch
        >>> MarginLoss()(torch.tensor([[0.95, 0.05]]), torch.tensor([0])).item()
        0.0
    """

    def __init__(self, *, m_plus: float = 0.9, m_minus: float = 0.1, lam: float = 0.5) -> None:
        super().__init__()
        self.m_plus, self.m_minus, self.lam = m_plus, m_minus, lam

    def forward(self, lengths: Tensor, target: Tensor) -> Tensor:
        return margin_loss(lengths, target, m_plus=self.m_plus, m_minus=self.m_minus, lam=self.lam)
