"""The privacy hook: only weights and numbers leave a site."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.federated.local import PrivacyError, check_outgoing

FORBIDDEN = {(64, 64), (32, 48)}
IDS = ["phantom_003", "phantom_004"]


def test_weights_and_numbers_pass():
    arrays = {"conv.weight": np.zeros((16, 1, 3, 3)), "conv.bias": np.zeros(16)}
    metrics = {"num-examples": 3.0, "val_dice": float("nan")}
    # every entry is looked at, and weights of any shape but an image's pass
    assert check_outgoing(arrays, metrics, FORBIDDEN, IDS, "/x") == 4


@pytest.mark.parametrize(
    ("arrays", "metrics", "match"),
    [
        ({"w": np.zeros((1, 1, 64, 64))}, {}, "shaped like an image"),
        ({"w": np.zeros((2, 32, 48))}, {}, "shaped like an image"),
        ({}, {"dice_phantom_003": 0.5}, "names a path or a case"),
        ({}, {"/data/site/img.nii.gz": 1.0}, "names a path or a case"),
        ({}, {"case": "phantom_004"}, "is a str"),
    ],
)
def test_data_is_refused(arrays, metrics, match):
    with pytest.raises(PrivacyError, match=match):
        check_outgoing(arrays, metrics, FORBIDDEN, IDS, "/data/site")
