"""PromptableModel: SAM equality, 3D shapes, refinement, prompt checks, U-Net encoders."""

from __future__ import annotations

import pytest
import torch
from tests.prompt.sam_reference import sam_modeling
from torch import nn
from torch.nn import functional as F

from medseg.errors import ConfigError
from medseg.nets.unet import UNet
from medseg.prompt.mask_decoder import MaskDecoder
from medseg.prompt.model import Click, PromptableModel, PromptResult, build_promptable
from medseg.prompt.neck import unet_image_encoder
from medseg.prompt.prompt_encoder import PromptEncoder
from medseg.prompt.transformer import TwoWayTransformer

DIM = 32


def _model(spatial_dims: int, grid: tuple[int, ...], image: tuple[int, ...]) -> PromptableModel:
    """A model on precomputed embeddings (identity image encoder), tiny widths."""
    torch.manual_seed(0)
    transformer = TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=4, mlp_dim=64)
    return PromptableModel(
        nn.Identity(),
        PromptEncoder(DIM, grid, image, 16, spatial_dims=spatial_dims),
        MaskDecoder(DIM, transformer, iou_head_hidden_dim=24, spatial_dims=spatial_dims),
    ).eval()


def test_predict_matches_sam_2d() -> None:
    modeling = sam_modeling()
    model = _model(2, (8, 6), (64, 48))
    torch.manual_seed(1)
    sam_prompt = modeling.PromptEncoder(
        embed_dim=DIM, image_embedding_size=(8, 6), input_image_size=(64, 48), mask_in_chans=16
    )
    sam_decoder = modeling.MaskDecoder(
        transformer_dim=DIM,
        transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=4, mlp_dim=64),
        iou_head_hidden_dim=24,
    )
    state = sam_prompt.state_dict()
    key = "pe_layer.positional_encoding_gaussian_matrix"
    model.prompt_encoder.load_state_dict({**state, key: state[key][[1, 0]]})
    model.mask_decoder.load_state_dict(sam_decoder.state_dict())
    embedding = torch.randn(1, DIM, 8, 6)
    xy = torch.tensor([[[10.0, 20.0], [30.5, 50.0]]])
    labels = torch.tensor([[1, 0]])
    box_xy = torch.tensor([[4.0, 6.0, 40.0, 60.0]])
    sparse, dense = sam_prompt((xy, labels), box_xy, None)
    sam_masks, sam_iou = sam_decoder(embedding, sam_prompt.get_dense_pe(), sparse, dense, True)
    result = model.predict(
        embedding, points=xy.flip(-1), point_labels=labels, box=box_xy[:, [1, 0, 3, 2]]
    )
    torch.testing.assert_close(result.low_res_logits, sam_masks, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.iou, sam_iou, atol=1e-5, rtol=0)
    upsampled = F.interpolate(sam_masks, (64, 48), mode="bilinear", align_corners=False)
    torch.testing.assert_close(result.logits, upsampled, atol=1e-5, rtol=0)


def test_3d_embed_and_predict_shapes() -> None:
    model = build_promptable(3, preset="tiny", image_size=(16, 32, 32)).eval()
    embedding = model.embed(torch.randn(2, 1, 16, 32, 32))
    assert embedding.shape == (2, 16, 4, 8, 8) and model.spatial_dims == 3
    assert not embedding.requires_grad  # eval mode: no autograd graph for the encoder
    box = torch.tensor([[2.0, 3.0, 4.0, 12.0, 20.0, 28.0], [0.0, 0.0, 0.0, 15.0, 31.0, 31.0]])
    result = model.predict(embedding, box=box, multimask=False)
    assert result.logits.shape == (2, 1, 16, 32, 32)
    assert result.low_res_logits.shape == (2, 1, 16, 32, 32) and result.iou.shape == (2, 1)
    again = model.predict(embedding, box=box, mask_logits=result.low_res_logits)
    assert again.logits.shape == (2, 3, 16, 32, 32) and again.iou.shape == (2, 3)
    assert model.best_mask(again).shape == (2, 16, 32, 32)
    assert model.best_mask(again).dtype == torch.bool


def test_mask_is_invariant_to_point_order() -> None:
    model = _model(3, (2, 4, 4), (8, 16, 16))
    embedding = torch.randn(1, DIM, 2, 4, 4)
    points = torch.tensor([[1.0, 2.0, 3.0], [5.0, 9.0, 1.0], [7.0, 15.0, 15.0], [0.0, 0.0, 8.0]])
    labels = torch.tensor([1, 0, 1, 0])
    order = torch.tensor([2, 0, 3, 1])
    first = model.predict(embedding, points=points, point_labels=labels)
    second = model.predict(embedding, points=points[order], point_labels=labels[order])
    torch.testing.assert_close(second.logits, first.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(second.iou, first.iou, atol=1e-5, rtol=0)


def test_refine_feeds_back_the_last_mask_and_accumulates_points() -> None:
    model = _model(2, (4, 4), (32, 32))
    seen: list[tuple[torch.Tensor | None, torch.Tensor]] = []
    hook = model.prompt_encoder.register_forward_hook(
        lambda module, args, output: seen.append((args[2], output[1]))
    )
    state = model.start(torch.randn(1, DIM, 4, 4))
    assert state.mask is None
    state = model.refine(state, Click((5.0, 6.0), positive=True))
    first_low_res = state.low_res_logits
    assert first_low_res.shape == (1, 1, 16, 16) and state.result.logits.shape == (1, 1, 32, 32)
    state = model.refine(state, Click((20.0, 21.0), positive=False))
    hook.remove()
    assert seen[0][0] is None  # first click: no mask prompt
    torch.testing.assert_close(seen[1][0], first_low_res)  # second: the first click's mask
    no_mask = model.prompt_encoder.no_mask_embed.weight.reshape(1, DIM, 1, 1)
    assert not torch.allclose(seen[1][1], no_mask.expand(1, DIM, 4, 4))
    torch.testing.assert_close(state.points, torch.tensor([[[5.0, 6.0], [20.0, 21.0]]]))
    assert state.labels.tolist() == [[1, 0]] and state.mask.shape == (1, 32, 32)


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ({}, "no prompt given"),
        ({"box": torch.tensor([10.0, 10.0, 5.0, 20.0])}, "inverted"),
        ({"box": torch.tensor([0.0, 0.0, 20.0, 40.0])}, "outside the image"),
        ({"points": torch.tensor([[-3.0, 4.0]])}, "outside the image"),
        ({"points": torch.tensor([[3.0, 32.0]])}, "outside the image"),
        ({"points": torch.tensor([[3.0, 4.0]]), "point_labels": torch.tensor([2])}, "got \\[2\\]"),
        ({"points": torch.tensor([[3.0, 4.0, 5.0]])}, "voxel indices in array order"),
        ({"points": torch.tensor([[3.0, 4.0]]), "point_labels": torch.tensor([1, 0])}, "one label"),
        ({"points": torch.tensor([[float("nan"), 4.0]])}, "NaN"),
        ({"mask_logits": torch.zeros(1, 1, 8, 8)}, "low-resolution"),
    ],
)
def test_bad_prompts_raise_config_error(prompts: dict[str, torch.Tensor], message: str) -> None:
    model = _model(2, (4, 4), (32, 32))
    with pytest.raises(ConfigError, match=message):
        model.predict(torch.zeros(1, DIM, 4, 4), **prompts)


def test_padding_points_may_lie_anywhere_and_borders_are_inside() -> None:
    model = _model(2, (4, 4), (32, 32))
    points = torch.tensor([[-0.5, 31.5], [-100.0, 0.0]])
    result = model.predict(torch.zeros(1, DIM, 4, 4), points=points, point_labels=[1, -1])
    assert result.logits.shape == (1, 3, 32, 32)


def test_best_mask_takes_the_highest_predicted_iou() -> None:
    logits = torch.stack([torch.full((2, 2), -1.0), torch.full((2, 2), 1.0)])[None]  # (1, 2, 2, 2)
    result = PromptResult(logits=logits, low_res_logits=logits, iou=torch.tensor([[0.2, 0.9]]))
    assert PromptableModel.best_mask(result).tolist() == [[[True, True], [True, True]]]
    result = PromptResult(logits=logits, low_res_logits=logits, iou=torch.tensor([[0.9, 0.2]]))
    assert not PromptableModel.best_mask(result).any()


def test_forward_is_predict_of_embed_and_pixel_normalisation() -> None:
    torch.manual_seed(0)
    model = build_promptable(2, preset="tiny", image_size=32).eval()
    image = torch.randn(1, 1, 32, 32) * 50 + 100
    normalised = PromptableModel(
        model.image_encoder,
        model.prompt_encoder,
        model.mask_decoder,
        pixel_mean=[100.0],
        pixel_std=[50.0],
    ).eval()
    box = torch.tensor([2.0, 3.0, 20.0, 25.0])
    direct = model.predict(model.embed((image - 100.0) / 50.0), box=box)
    through_forward = normalised(image, box=box)
    torch.testing.assert_close(through_forward.logits, direct.logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match="image_size"):
        model.embed(torch.zeros(1, 1, 16, 16))


def test_unet_image_encoder_grid_and_stage() -> None:
    unet = UNet(2, 1, 2, features=(4, 8, 16, 16))
    encoder = unet_image_encoder(unet, embed_dim=DIM)
    assert encoder.backbone is unet.encoder and encoder.stride == (8, 8)
    assert encoder(torch.zeros(2, 1, 64, 32)).shape == (2, DIM, 8, 4)
    finer = unet_image_encoder(unet.encoder, embed_dim=DIM, stage=2)
    assert finer.stride == (4, 4) and finer(torch.zeros(1, 1, 32, 32)).shape == (1, DIM, 8, 8)
    with pytest.raises(ConfigError, match="stages 0..3"):
        unet_image_encoder(unet, stage=4)
    with pytest.raises(ConfigError, match="UNet or UNetEncoder"):
        unet_image_encoder(nn.Linear(2, 2))


def test_frozen_unet_encoder_is_unchanged_by_a_training_step() -> None:
    torch.manual_seed(0)
    unet = UNet(2, 1, 2, features=(4, 8, 16), norm="batch")
    image_encoder = unet_image_encoder(unet, embed_dim=16, freeze=True)
    transformer = TwoWayTransformer(depth=2, embedding_dim=16, num_heads=2, mlp_dim=32)
    model = PromptableModel(
        image_encoder,
        PromptEncoder(16, (8, 8), (32, 32), 4),
        MaskDecoder(16, transformer, iou_head_hidden_dim=16),
    ).train()
    before = {k: v.clone() for k, v in unet.encoder.state_dict().items()}  # incl. BN stats
    decoder_before = [p.clone() for p in model.mask_decoder.parameters()]
    neck_before = [p.clone() for p in image_encoder.neck.parameters()]
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    result = model(torch.randn(2, 1, 32, 32), box=torch.tensor([4.0, 4.0, 20.0, 24.0]))
    target = torch.zeros_like(result.logits)
    target[..., 4:21, 4:25] = 1
    F.binary_cross_entropy_with_logits(result.logits, target).backward()
    optimiser.step()
    assert all(p.grad is None for p in unet.encoder.parameters())
    after = unet.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    decoder_after = list(model.mask_decoder.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(decoder_before, decoder_after, strict=True))
    neck_after = list(image_encoder.neck.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(neck_before, neck_after, strict=True))


@pytest.mark.parametrize(
    ("preset", "spatial_dims", "size"), [("cpu", 2, 64), ("vit", 2, 32), ("tiny", 3, 16)]
)
def test_build_promptable_presets(preset: str, spatial_dims: int, size: int) -> None:
    model = build_promptable(spatial_dims, preset=preset, image_size=size, in_channels=2).eval()
    image = torch.zeros(1, 2, *(size,) * spatial_dims)
    centre = torch.full((1, spatial_dims), size / 2)
    with torch.no_grad():
        result = model(image, points=centre)
    assert result.logits.shape == (1, 3, *(size,) * spatial_dims)
    assert model.image_size == (size,) * spatial_dims


def test_build_promptable_errors() -> None:
    with pytest.raises(ConfigError, match="Valid names"):
        build_promptable(2, preset="huge")
    with pytest.raises(ConfigError, match="divisible"):
        build_promptable(2, preset="cpu", image_size=40)
    with pytest.raises(ConfigError, match="spatial_dims"):
        build_promptable(1)
