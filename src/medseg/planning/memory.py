"""A memory model for training a U-Net: activations kept for the backward pass, weights,
gradients and optimiser state.

Per stage and per convolution the forward pass keeps about three tensors of the stage's
feature-map size (conv output, normalisation output, activation output); the decoder mirrors
the encoder and adds the concatenated skip. The estimate is checked against the measured
peak resident memory of a real training step in the tests.
"""

from __future__ import annotations

import math

BYTES = 4  # float32
TENSORS_PER_CONV = 3
CONVS_PER_STAGE = 2


def estimate_training_bytes(
    patch_size: tuple[int, ...],
    batch_size: int,
    features: tuple[int, ...],
    strides: tuple[tuple[int, ...], ...],
    in_channels: int,
    num_classes: int,
) -> float:
    """Approximate peak bytes of one forward+backward step of a U-Net.

    Args:
        patch_size: spatial patch.
        batch_size: patches per step.
        features: channels per stage.
        strides: per-stage strides (first all ones).
        in_channels, num_classes: input and output channels.

    Returns:
        Bytes (activations x 2 for their gradients, plus parameters x 4 for weights,
        gradients and two Adam moments).
    """
    size = list(patch_size)
    activations = in_channels * math.prod(size)
    params = 0.0
    prev = in_channels
    for stage, (feat, stride) in enumerate(zip(features, strides, strict=True)):
        size = [math.ceil(s / k) for s, k in zip(size, stride, strict=True)]
        voxels = math.prod(size)
        encoder = CONVS_PER_STAGE * TENSORS_PER_CONV * feat * voxels
        decoder = (
            0
            if stage == len(features) - 1
            else (CONVS_PER_STAGE * TENSORS_PER_CONV * feat + 2 * feat) * voxels
        )
        activations += encoder + decoder
        params += 3 ** len(size) * (prev * feat + feat * feat) * 2
        prev = feat
    activations += num_classes * math.prod(patch_size) * 2  # logits and softmax for the loss
    return float(batch_size * activations * BYTES * 2 + params * BYTES * 4)
