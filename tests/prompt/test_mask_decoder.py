"""The N-D mask decoder and two-way transformer against SAM's own modules."""

from __future__ import annotations

import pytest
import torch
from tests.prompt.sam_reference import sam_modeling

from medseg.prompt.mask_decoder import MaskDecoder
from medseg.prompt.transformer import TwoWayTransformer

DIM = 32


def _decoder(spatial_dims: int = 2, seed: int = 0) -> MaskDecoder:
    torch.manual_seed(seed)
    transformer = TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=4, mlp_dim=64)
    return MaskDecoder(DIM, transformer, iou_head_hidden_dim=24, spatial_dims=spatial_dims)


@pytest.mark.parametrize("multimask", [True, False])
def test_matches_sam_mask_decoder(multimask: bool) -> None:
    modeling = sam_modeling()
    torch.manual_seed(0)
    sam = modeling.MaskDecoder(
        transformer_dim=DIM,
        transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=4, mlp_dim=64),
        iou_head_hidden_dim=24,
    )
    ours = _decoder()
    ours.load_state_dict(sam.state_dict())  # same names, same shapes
    generator = torch.Generator().manual_seed(3)
    image = torch.randn(1, DIM, 8, 6, generator=generator)
    pe = torch.randn(1, DIM, 8, 6, generator=generator)
    sparse = torch.randn(3, 5, DIM, generator=generator)
    dense = torch.randn(3, DIM, 8, 6, generator=generator)
    masks, iou = ours(image, pe, sparse, dense, multimask)
    sam_masks, sam_iou = sam(image, pe, sparse, dense, multimask)
    expected_m = 3 if multimask else 1
    assert masks.shape == (3, expected_m, 32, 24) and iou.shape == (3, expected_m)
    torch.testing.assert_close(masks, sam_masks, atol=1e-5, rtol=0)
    torch.testing.assert_close(iou, sam_iou, atol=1e-5, rtol=0)


def test_one_embedding_per_prompt_set_equals_separate_calls() -> None:
    decoder = _decoder(3).eval()
    generator = torch.Generator().manual_seed(4)
    images = torch.randn(2, DIM, 2, 3, 4, generator=generator)
    pe = torch.randn(1, DIM, 2, 3, 4, generator=generator)
    sparse = torch.randn(2, 3, DIM, generator=generator)
    dense = torch.randn(2, DIM, 2, 3, 4, generator=generator)
    masks, iou = decoder(images, pe, sparse, dense, True)
    assert masks.shape == (2, 3, 8, 12, 16) and iou.shape == (2, 3)
    for i in range(2):
        one_masks, one_iou = decoder(
            images[i : i + 1], pe, sparse[i : i + 1], dense[i : i + 1], True
        )
        torch.testing.assert_close(masks[i : i + 1], one_masks, atol=1e-5, rtol=0)
        torch.testing.assert_close(iou[i : i + 1], one_iou, atol=1e-5, rtol=0)


def test_mismatched_embedding_batch_is_refused() -> None:
    decoder = _decoder()
    with pytest.raises(ValueError, match="one embedding, or one per prompt set"):
        decoder(
            torch.zeros(2, DIM, 4, 4),
            torch.zeros(1, DIM, 4, 4),
            torch.zeros(3, 2, DIM),
            torch.zeros(3, DIM, 4, 4),
            True,
        )


def test_parameter_names_are_sams() -> None:
    modeling = sam_modeling()
    sam = modeling.MaskDecoder(
        transformer_dim=DIM,
        transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=4, mlp_dim=64),
        iou_head_hidden_dim=24,
    )
    ours = {k: v.shape for k, v in _decoder().state_dict().items()}
    assert ours == {k: v.shape for k, v in sam.state_dict().items()}


def test_transformer_is_token_permutation_equivariant() -> None:
    """Attention without positional order: permuting the prompt tokens permutes the output."""
    transformer = TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=4, mlp_dim=64)
    generator = torch.Generator().manual_seed(5)
    image = torch.randn(1, DIM, 3, 4, 5, generator=generator)
    pe = torch.randn(1, DIM, 3, 4, 5, generator=generator)
    tokens = torch.randn(1, 6, DIM, generator=generator)
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    out, keys = transformer(image, pe, tokens)
    out_perm, keys_perm = transformer(image, pe, tokens[:, order])
    torch.testing.assert_close(out_perm, out[:, order], atol=1e-5, rtol=0)
    torch.testing.assert_close(keys_perm, keys, atol=1e-5, rtol=0)
    assert keys.shape == (1, 60, DIM)
