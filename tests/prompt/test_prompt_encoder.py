"""The N-D prompt encoder against SAM's own ``PromptEncoder`` (weights copied by name)."""

from __future__ import annotations

import pytest
import torch
from tests.prompt.sam_reference import sam_modeling

from medseg.prompt.prompt_encoder import FourierPositionEncoding, PromptEncoder

DIM, GRID, IMAGE = 32, (8, 6), (64, 48)
PROMPT_KINDS = ("points", "box", "mask")


def _pair(seed: int = 0) -> tuple[torch.nn.Module, PromptEncoder]:
    """SAM's 2D prompt encoder and ours with the same weights (Fourier rows reversed)."""
    torch.manual_seed(seed)
    sam = sam_modeling().PromptEncoder(
        embed_dim=DIM, image_embedding_size=GRID, input_image_size=IMAGE, mask_in_chans=16
    )
    ours = PromptEncoder(DIM, GRID, IMAGE, 16)
    state = sam.state_dict()
    key = "pe_layer.positional_encoding_gaussian_matrix"
    state[key] = state[key][[1, 0]]  # SAM's (x, y) rows -> our (y, x) array order
    ours.load_state_dict(state)
    return sam, ours


def _prompts() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    xy = torch.rand(3, 4, 2, generator=generator) * torch.tensor([47.0, 63.0])
    labels = torch.tensor([[1, 0, 1, -1], [1, 1, 0, 0], [0, 1, -1, -1]])
    box_xy = torch.tensor([[3.0, 5.0, 30.0, 40.0], [0.0, 0.0, 47.0, 63.0], [10, 20, 11, 21.5]])
    masks = torch.randn(3, 1, 32, 24, generator=generator)
    return xy, labels, box_xy, masks


@pytest.mark.parametrize("kinds", ["points", "box", "points+box", "points+mask", "all"])
def test_matches_sam_prompt_encoder(kinds: str) -> None:
    sam, ours = _pair()
    xy, labels, box_xy, masks = _prompts()
    use_points, use_box, use_mask = (name in kinds or kinds == "all" for name in PROMPT_KINDS)
    sam_sparse, sam_dense = sam(
        (xy, labels) if use_points else None,
        box_xy if use_box else None,
        masks if use_mask else None,
    )
    sparse, dense = ours(
        (xy.flip(-1), labels) if use_points else None,  # our coordinates are (y, x)
        box_xy[:, [1, 0, 3, 2]] if use_box else None,
        masks if use_mask else None,
    )
    assert sparse.shape == sam_sparse.shape
    torch.testing.assert_close(sparse, sam_sparse, atol=1e-5, rtol=0)
    torch.testing.assert_close(dense, sam_dense, atol=1e-5, rtol=0)


def test_dense_positional_encoding_matches_sam() -> None:
    sam, ours = _pair()
    assert ours.get_dense_pe().shape == (1, DIM, *GRID)
    torch.testing.assert_close(ours.get_dense_pe(), sam.get_dense_pe(), atol=1e-5, rtol=0)


def test_padding_points_get_only_the_not_a_point_embedding() -> None:
    _, ours = _pair()
    coords = torch.tensor([[[5.0, 7.0], [30.0, 2.0]]])
    sparse, _ = ours((coords, torch.tensor([[1, -1]])), None, None)
    # 2 points + 1 padding token added because there is no box
    assert sparse.shape == (1, 3, DIM)
    torch.testing.assert_close(sparse[0, 1], ours.not_a_point_embed.weight[0])
    torch.testing.assert_close(sparse[0, 2], ours.not_a_point_embed.weight[0])


def test_3d_encoding_reduces_to_sams_2d_when_the_z_row_is_zero() -> None:
    """With a zero Fourier row for z, a 3D point (z, y, x) encodes as SAM's 2D (x, y)."""
    sam, _ = _pair()
    ours3d = PromptEncoder(DIM, (2, *GRID), (16, *IMAGE), 16, spatial_dims=3)
    matrix = sam.pe_layer.positional_encoding_gaussian_matrix  # (2, DIM / 2), rows (x, y)
    ours3d.pe_layer.positional_encoding_gaussian_matrix.copy_(
        torch.cat([torch.zeros(1, DIM // 2), matrix[[1, 0]]])
    )
    for i in range(4):
        ours3d.point_embeddings[i].weight.data.copy_(sam.point_embeddings[i].weight)
    ours3d.not_a_point_embed.weight.data.copy_(sam.not_a_point_embed.weight)
    xy, labels, box_xy, _ = _prompts()
    z = torch.full((3, 4, 1), 5.0)
    box_zyx = torch.cat([torch.full((3, 1), 2.0), box_xy[:, [1, 0]], torch.full((3, 1), 9.0)], 1)
    box_zyx = torch.cat([box_zyx, box_xy[:, [3, 2]]], 1)
    sparse, dense = ours3d((torch.cat([z, xy.flip(-1)], -1), labels), box_zyx, None)
    sam_sparse, _ = sam((xy, labels), box_xy, None)
    torch.testing.assert_close(sparse, sam_sparse, atol=1e-5, rtol=0)
    assert dense.shape == (3, DIM, 2, *GRID)


def test_3d_shapes_with_box_corners_and_mask_prompt() -> None:
    encoder = PromptEncoder(16, (2, 4, 4), (16, 32, 32), 8, spatial_dims=3)
    assert encoder.pe_layer.positional_encoding_gaussian_matrix.shape == (3, 8)
    assert encoder.mask_input_size == (8, 16, 16)
    box = torch.tensor([[1.0, 2.0, 3.0, 10.0, 20.0, 30.0]])
    sparse, dense = encoder(None, box, torch.randn(1, 1, 8, 16, 16))
    assert sparse.shape == (1, 2, 16) and dense.shape == (1, 16, 2, 4, 4)
    _, no_mask = encoder(None, box, None)
    expected = encoder.no_mask_embed.weight.reshape(1, 16, 1, 1, 1).expand(1, 16, 2, 4, 4)
    torch.testing.assert_close(no_mask, expected)
    assert encoder.get_dense_pe().shape == (1, 16, 2, 4, 4)


def test_fourier_features_by_hand() -> None:
    """One axis, one frequency g: [sin(2 pi g (2p - 1)), cos(2 pi g (2p - 1))]."""
    pe = FourierPositionEncoding(1, spatial_dims=1)
    pe.positional_encoding_gaussian_matrix.fill_(0.25)
    # grid of 2: centres at 0.25 and 0.75 -> 2p - 1 = -0.5, 0.5 -> angle -pi/4, pi/4
    half = 2**-0.5
    expected = torch.tensor([[-half, half], [half, half]]).T
    torch.testing.assert_close(pe((2,)), expected)
