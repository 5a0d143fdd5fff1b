"""Jacobian determinant against affine maps (det A) and a hand-made fold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError
from medseg.registration import folding_percent, identity_grid, jacobian_determinant


@pytest.mark.parametrize("dims", [2, 3])
def test_det_of_an_affine_field_is_the_matrix_determinant(dims: int) -> None:
    rng = np.random.default_rng(dims)
    matrix = np.eye(dims) + 0.3 * rng.standard_normal((dims, dims))
    shape = (6,) * dims
    grid = identity_grid(shape, dtype=torch.float64)
    positions = torch.einsum("ij,j...->i...", torch.from_numpy(matrix), grid) + 1.5
    flow = (positions - grid)[None]
    det = jacobian_determinant(flow)
    assert det.shape == (1, *shape)
    np.testing.assert_allclose(det.numpy(), np.linalg.det(matrix), rtol=1e-10)


def test_a_mm_flow_with_its_spacing_gives_the_voxel_determinant() -> None:
    flow = 0.3 * torch.randn(1, 3, 5, 6, 7, dtype=torch.float64)
    spacing = (3.0, 1.0, 0.7)
    mm = flow * torch.tensor(spacing, dtype=torch.float64).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(jacobian_determinant(mm, spacing), jacobian_determinant(flow))


def test_folding_percent_of_a_hand_made_fold() -> None:
    # 1D-like fold along axis 1 of a 4 x 10 grid: positions 0,1,2,3,2.5,2,6,7,8,9 go back
    # between columns 3 and 5
    positions = torch.tensor([0, 1, 2, 3, 2.5, 2, 6, 7, 8, 9], dtype=torch.float64)
    flow = torch.zeros(1, 2, 4, 10, dtype=torch.float64)
    flow[0, 1] = positions - torch.arange(10.0, dtype=torch.float64)
    det = jacobian_determinant(flow)[0, 0]
    # central differences (x[i+1] - x[i-1]) / 2: column 3 (2.5 - 2) / 2, column 4 (2 - 3) / 2
    np.testing.assert_allclose(det.numpy(), [1, 1, 1, 0.25, -0.5, 1.75, 2.5, 1, 1, 1])
    assert folding_percent(flow) == pytest.approx(10.0)  # one column of ten
    assert folding_percent(torch.zeros(1, 2, 4, 10)) == 0.0


def test_jacobian_refuses_bad_input() -> None:
    with pytest.raises(ConfigError, match="channels"):
        jacobian_determinant(torch.zeros(1, 2, 4, 4, 4))
    with pytest.raises(ConfigError, match=">= 2 voxels"):
        jacobian_determinant(torch.zeros(1, 2, 1, 4))
