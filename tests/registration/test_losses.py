"""Registration losses against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.losses.registration import gradient_smoothness, local_ncc, mse, warped_label_dice


def _image(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand((1, 1, *shape), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", [(20, 20), (12, 12, 12)])
def test_ncc_of_an_image_and_a_linear_intensity_map_of_it_is_one(shape) -> None:
    x = _image(shape)
    assert float(local_ncc(x, 2.5 * x + 7.0)) == pytest.approx(1.0, abs=1e-4)
    assert float(local_ncc(x, -2.0 * x, squared=False)) == pytest.approx(-1.0, abs=1e-4)
    assert float(local_ncc(x, _image(shape, seed=1))) < 0.1  # unrelated noise


def test_local_ncc_equals_a_brute_force_window_correlation() -> None:
    a, b = _image((11, 13), 3), _image((11, 13), 4)
    b = 0.5 * a + b
    window, half = 5, 2
    pa = np.pad(a[0, 0].numpy().astype(np.float64), half, mode="edge")
    pb = np.pad(b[0, 0].numpy().astype(np.float64), half, mode="edge")
    values = []
    for i in range(11):
        for j in range(13):
            wa, wb = (
                pa[i : i + window, j : j + window].ravel(),
                pb[i : i + window, j : j + window].ravel(),
            )
            cross = ((wa - wa.mean()) * (wb - wb.mean())).sum()
            var = ((wa - wa.mean()) ** 2).sum() * ((wb - wb.mean()) ** 2).sum()
            values.append(cross * cross / (var + 1e-5))
    assert float(local_ncc(a, b, window)) == pytest.approx(np.mean(values), rel=1e-4)


def test_mse_and_smoothness_by_hand() -> None:
    assert float(mse(torch.zeros(1, 1, 3, 3), torch.full((1, 1, 3, 3), 2.0))) == 4.0
    flow = torch.zeros(1, 2, 4, 4)
    assert float(gradient_smoothness(flow + 3.0)) == 0.0
    flow[0, 1] = 2.0 * torch.arange(4.0)  # slope 2 along axis 1 in channel 1
    # axis 0: no change; axis 1: diffs of 2 in 1 of 2 channels -> mean 2.0; over 2 axes -> 1.0
    assert float(gradient_smoothness(flow)) == pytest.approx(1.0)


def test_warped_label_dice_equals_hard_dice_on_one_hot_maps() -> None:
    rng = np.random.default_rng(0)
    a = ndimage.label(rng.random((16, 16)) > 0.5)[0] % 3
    b = np.roll(a, 2, axis=0)

    def onehot(x: np.ndarray) -> torch.Tensor:
        return (
            torch.nn.functional.one_hot(torch.from_numpy(x).long(), 3).movedim(-1, 0)[None].float()
        )

    expected = np.mean(
        [2 * ((a == k) & (b == k)).sum() / ((a == k).sum() + (b == k).sum()) for k in (1, 2)]
    )
    assert float(warped_label_dice(onehot(a), onehot(b))) == pytest.approx(expected)
    assert float(warped_label_dice(onehot(a), onehot(a))) == pytest.approx(1.0)


def test_losses_refuse_mismatched_input() -> None:
    with pytest.raises(ConfigError, match="same shape"):
        local_ncc(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ConfigError, match="odd"):
        local_ncc(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), window=4)
