"""The online validation Dice leaves out voxels whose target is -1 (the ``ignore`` label)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medseg.planning.plan import Plan
from medseg.training.segmentation import FoldData, _validate


class _Fixed(nn.Module):
    """Predicts class 1 in the left half of every ``(B, 1, 4, 4)`` patch, class 0 elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(image.shape[0], 2, *image.shape[2:])
        logits[:, 1, :, :2] = 5.0
        return logits + 0 * self.dummy


def test_ignored_voxels_count_in_no_validation_dice() -> None:
    plan = Plan(
        configuration="2d",
        spatial_dims=2,
        spacing=(1.0, 1.0),
        median_shape=(4, 4),
        patch_size=(4, 4),
        batch_size=1,
        normalization=("zscore",),
        intensity={},
        num_classes=2,
        in_channels=1,
        labels={"background": 0, "organ": 1, "ignore": 2},
        ignore_label=2,
    )
    data = FoldData(Path("."), [], [], None, 2)
    target = torch.tensor(
        [[[[1, 1, 0, 0], [1, -1, 0, 0], [-1, -1, -1, -1], [0, -1, 1, -1]]]], dtype=torch.long
    )
    batches = [(torch.zeros(1, 1, 4, 4), target)]
    dice = _validate(_Fixed(), batches, plan, data, torch.device("cpu"), False)
    # prediction 1 in columns 0-1; annotated: TP (0,0) (0,1) (1,0) = 3; FP (3,0) = 1
    # (the predictions at the four -1 voxels of columns 0-1 count nowhere: else FP = 5,
    # Dice 0.5); FN (3,2) = 1
    np.testing.assert_allclose(dice, [2 * 3 / (2 * 3 + 1 + 1)])
    assert dice[0] == pytest.approx(0.75)
