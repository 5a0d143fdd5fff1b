"""Segmentation losses on logits, 2D/3D, binary and multi-class, and the classifiers'
per-image losses, built by name::

    from medseg.losses import build_loss
    loss = build_loss("dice_ce", batch_dice=True)
    value = loss(logits, target)   # logits (B, K, *spatial); target (B, 1, *spatial) labels

Modules: ``inputs`` (targets, probabilities, masks), ``cross_entropy``, ``weight_map``
(U-Net border weights), ``dice`` (soft, Milletari, Generalized), ``jaccard`` (IoU),
``tversky``, ``focal``, ``boundary`` (signed distance maps), ``compound`` (Dice + CE),
``deep_supervision``, ``vae`` (Myronenko's L2 + KL terms), ``margin`` (capsule networks),
``classification`` (per-image cross-entropy, MSE, L1) and ``registry``.
"""

from medseg.losses.boundary import BoundaryLoss, signed_distance_map
from medseg.losses.classification import ClassificationCrossEntropy, L1Loss, MSELoss
from medseg.losses.compound import DiceCELoss
from medseg.losses.cox import CoxLoss, cox_partial_likelihood_loss
from medseg.losses.cross_entropy import CrossEntropyLoss, WeightedCrossEntropyLoss, cross_entropy
from medseg.losses.deep_supervision import (
    DeepSupervisionLoss,
    deep_supervision_weights,
    downsample_target,
)
from medseg.losses.dice import (
    DiceLoss,
    GeneralizedDiceLoss,
    OverlapLoss,
    generalized_dice,
    soft_dice,
)
from medseg.losses.focal import FocalLoss, focal_loss
from medseg.losses.inputs import one_hot_target, prepare, probabilities
from medseg.losses.jaccard import JaccardLoss, soft_jaccard
from medseg.losses.margin import MarginLoss, capsule_loss, margin_loss
from medseg.losses.multitask import MultitaskLoss
from medseg.losses.registry import LOSSES, build_loss, list_losses, loss_options, milletari_dice
from medseg.losses.tversky import TverskyLoss, tversky_index
from medseg.losses.vae import VAELoss, reconstruction_l2, vae_kl
from medseg.losses.weight_map import unet_weight_map

__all__ = [
    "CoxLoss",
    "MultitaskLoss",
    "cox_partial_likelihood_loss",
    "MarginLoss",
    "capsule_loss",
    "margin_loss",
    "LOSSES",
    "BoundaryLoss",
    "ClassificationCrossEntropy",
    "CrossEntropyLoss",
    "DeepSupervisionLoss",
    "DiceCELoss",
    "DiceLoss",
    "FocalLoss",
    "GeneralizedDiceLoss",
    "JaccardLoss",
    "L1Loss",
    "MSELoss",
    "OverlapLoss",
    "TverskyLoss",
    "VAELoss",
    "WeightedCrossEntropyLoss",
    "build_loss",
    "cross_entropy",
    "deep_supervision_weights",
    "downsample_target",
    "focal_loss",
    "generalized_dice",
    "list_losses",
    "loss_options",
    "milletari_dice",
    "one_hot_target",
    "prepare",
    "probabilities",
    "reconstruction_l2",
    "signed_distance_map",
    "soft_dice",
    "soft_jaccard",
    "tversky_index",
    "unet_weight_map",
    "vae_kl",
]
