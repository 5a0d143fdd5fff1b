"""SAM's image encoder and checkpoint loading against the official ``segment_anything`` code."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import types
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.prompt.sam import (
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    load_medsam,
    load_sam,
    medsam_preprocess,
    postprocess_masks,
    sam_architecture,
    sam_preprocess,
)
from medseg.prompt.sam_encoder import (
    SAM_VARIANTS,
    SamImageEncoder,
    window_partition,
    window_unpartition,
)

TINY = SAM_VARIANTS["tiny"]


def _load_reference() -> types.ModuleType:
    """The shared ``sam_reference.py`` helper (importlib mode: loaded by path)."""
    spec = importlib.util.spec_from_file_location(
        "_sam_reference_for_test_sam", Path(__file__).with_name("sam_reference.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sam_modeling() -> types.ModuleType:
    """``segment_anything.modeling`` without its package ``__init__`` (needs torchvision)."""
    return _load_reference().sam_modeling()


def _sam_build() -> types.ModuleType:
    sam_modeling()
    return importlib.import_module("segment_anything.build_sam")


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Random values in every parameter (SAM zero-initialises the relative tables)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)


def _tiny_reference_encoder():
    return sam_modeling().ImageEncoderViT(
        img_size=TINY.image_size,
        patch_size=TINY.patch_size,
        embed_dim=TINY.encoder_embed_dim,
        depth=TINY.encoder_depth,
        num_heads=TINY.encoder_num_heads,
        mlp_ratio=4,
        out_chans=TINY.prompt_embed_dim,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=TINY.window_size,
        global_attn_indexes=TINY.encoder_global_attn_indexes,
    )


def _tiny_pair() -> tuple[torch.nn.Module, SamImageEncoder]:
    reference = _tiny_reference_encoder().eval()
    _randomise(reference)
    ours = TINY.image_encoder().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)  # same names and shapes
    return reference, ours


def test_encoder_matches_segment_anything() -> None:
    reference, ours = _tiny_pair()
    # 64^2 with patch 8 is an 8x8 grid: windows of 3 pad it to 9x9 (the padding path)
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = reference(image), ours(image)
    assert actual.shape == (2, TINY.prompt_embed_dim, 8, 8)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_encoder_other_input_size_interpolates_position_embedding() -> None:
    reference, ours = _tiny_pair()
    # SAM itself cannot run at 40^2; give it the bicubic-resized absolute embedding by hand
    # (its get_rel_pos resizes the global block's relative tables like ours)
    with torch.no_grad():
        resized = F.interpolate(reference.pos_embed.permute(0, 3, 1, 2), (5, 5), mode="bicubic")
        reference.pos_embed = torch.nn.Parameter(resized.permute(0, 2, 3, 1))
        image = torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(ours(image), reference(image), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grid", [(5, 7), (4, 6, 3)])
def test_window_partition_round_trip(grid: tuple[int, ...]) -> None:
    tokens = torch.randn(2, *grid, 4)
    windows, padded = window_partition(tokens, 3)
    assert padded == tuple(-(-size // 3) * 3 for size in grid)
    num_windows = (
        2 * (padded[0] // 3) * (padded[1] // 3) * (padded[2] // 3 if len(grid) == 3 else 1)
    )
    assert windows.shape == (num_windows, *(3,) * len(grid), 4)
    # the first window is the top-left corner of the first image
    torch.testing.assert_close(windows[0], tokens[(0, *(slice(0, 3),) * len(grid))])
    torch.testing.assert_close(window_unpartition(windows, 3, padded, grid), tokens)


def test_encoder_3d_shapes() -> None:
    encoder = SamImageEncoder(
        img_size=16, patch_size=4, embed_dim=8, depth=2, num_heads=2, out_chans=6,
        window_size=3, global_attn_indexes=(1,), spatial_dims=3,
    )  # fmt: skip
    assert encoder.blocks[0].attn.rel_pos_d.shape == (5, 4)
    assert encoder(torch.randn(1, 3, 16, 16, 16)).shape == (1, 6, 4, 4, 4)
    assert encoder(torch.randn(1, 3, 8, 16, 12)).shape == (1, 6, 2, 4, 3)
    line = SamImageEncoder(
        img_size=32, patch_size=4, embed_dim=8, depth=2, num_heads=2, out_chans=6,
        window_size=3, global_attn_indexes=(1,), spatial_dims=1,
    )  # fmt: skip
    assert line(torch.randn(2, 3, 32)).shape == (2, 6, 8)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_encoder_parameter_counts_equal_sam() -> None:
    build = _sam_build()
    with torch.device("meta"):
        sam_b = build.sam_model_registry["vit_b"]()
        sam_h_encoder = build.sam_model_registry["vit_h"]().image_encoder
        ours_b = SAM_VARIANTS["vit_b"].image_encoder()
        ours_h = SAM_VARIANTS["vit_h"].image_encoder()
    print(f"SAM ViT-B full {_count(sam_b):,}, encoder {_count(sam_b.image_encoder):,}")  # noqa: T201
    print(f"SAM ViT-H encoder {_count(sam_h_encoder):,}")  # noqa: T201
    assert _count(ours_b) == _count(sam_b.image_encoder)
    assert _count(ours_h) == _count(sam_h_encoder)
    assert _count(sam_b) == pytest.approx(93.7e6, rel=0.02)  # published: 93.7 M (ViT-B SAM)
    assert _count(ours_h) == pytest.approx(632e6, rel=0.02)  # published: 632 M (ViT-H encoder)
    assert {k: v.shape for k, v in ours_b.state_dict().items()} == {
        k: v.shape for k, v in sam_b.image_encoder.state_dict().items()
    }


# ---------------------------------------------------------------- checkpoints: the full model


def _tiny_reference_sam() -> torch.nn.Module:
    """A tiny official ``Sam`` with random weights (Fourier matrix included)."""
    modeling = sam_modeling()
    torch.manual_seed(0)
    grid = TINY.image_size // TINY.patch_size
    width = TINY.prompt_embed_dim
    sam = modeling.Sam(
        image_encoder=_tiny_reference_encoder(),
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=width,
            image_embedding_size=(grid, grid),
            input_image_size=(TINY.image_size, TINY.image_size),
            mask_in_chans=TINY.mask_in_chans,
        ),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(
                depth=TINY.decoder_depth,
                embedding_dim=width,
                mlp_dim=TINY.decoder_mlp_dim,
                num_heads=TINY.decoder_num_heads,
            ),
            transformer_dim=width,
            iou_head_depth=3,
            iou_head_hidden_dim=TINY.iou_head_hidden_dim,
        ),
        pixel_mean=list(SAM_PIXEL_MEAN),
        pixel_std=list(SAM_PIXEL_STD),
    )
    _randomise(sam, seed=3)
    return sam.eval()


@pytest.fixture
def tiny_sam_file(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    sam = _tiny_reference_sam()
    path = tmp_path / "sam_tiny.pth"
    torch.save(sam.state_dict(), path)
    return sam, path


def _sam_decode(sam: torch.nn.Module, embedding, points=None, boxes=None, masks=None, multi=True):
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
    return sam.mask_decoder(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multi,
    )


def test_load_sam_matches_segment_anything(tiny_sam_file) -> None:
    sam, path = tiny_sam_file
    model = load_sam(path, "tiny")
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    xy = torch.tensor([[20.5, 10.0], [40.0, 33.0]])  # SAM's (x, y)
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        expected_embedding = sam.image_encoder(image)
        embedding = model.embed(image)
        torch.testing.assert_close(embedding, expected_embedding, rtol=1e-5, atol=1e-5)
        # points: ours take (y, x)
        masks, iou = _sam_decode(sam, expected_embedding, points=(xy[None], labels[None]))
        result = model.predict(embedding, points=xy.flip(-1), point_labels=labels)
        torch.testing.assert_close(result.low_res_logits, masks, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(result.iou, iou, rtol=1e-5, atol=1e-5)
        upsampled = sam.postprocess_masks(masks, (64, 64), (64, 64))
        torch.testing.assert_close(result.logits, upsampled, rtol=1e-5, atol=1e-5)
        # box (x0, y0, x1, y1) vs ours (y0, x0, y1, x1), single mask, plus a mask prompt
        previous = masks[:, :1]
        masks, iou = _sam_decode(
            sam, expected_embedding, boxes=torch.tensor([[8.0, 12.0, 50.0, 40.0]]),
            masks=previous, multi=False,
        )  # fmt: skip
        result = model.predict(
            embedding, box=torch.tensor([12.0, 8.0, 40.0, 50.0]), mask_logits=previous,
            multimask=False,
        )  # fmt: skip
        torch.testing.assert_close(result.low_res_logits, masks, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(result.iou, iou, rtol=1e-5, atol=1e-5)


def test_load_sam_accepts_training_checkpoint_and_other_image_size(tmp_path: Path, caplog) -> None:
    sam = _tiny_reference_sam()
    path = tmp_path / "medsam_train.pth"
    torch.save({"model": {f"module.{k}": v for k, v in sam.state_dict().items()}, "epoch": 3}, path)
    with caplog.at_level(logging.INFO, logger="medseg.prompt.sam_loading"):
        model = load_sam(path, SAM_VARIANTS["tiny"], image_size=32)
    assert "loaded" in caplog.text and "medsam_train.pth" in caplog.text
    torch.testing.assert_close(
        model.image_encoder.pos_embed, sam.image_encoder.pos_embed, rtol=0, atol=0
    )
    embedding = model.embed(torch.zeros(1, 3, 32, 32))
    assert embedding.shape == (1, TINY.prompt_embed_dim, 4, 4)
    result = model.predict(embedding, points=torch.tensor([[5.0, 9.0]]))
    assert result.logits.shape == (1, 3, 32, 32) and torch.isfinite(result.logits).all()


def test_load_sam_wrong_variant_names_key_shapes_and_fitting_variant(tiny_sam_file) -> None:
    _, path = tiny_sam_file
    with pytest.raises(ConfigError) as error:
        load_sam(path, "vit_b")
    message = str(error.value)
    assert "sam_tiny.pth" in message and "not a SAM vit_b checkpoint" in message
    assert "image_encoder.pos_embed" in message
    assert "(1, 8, 8, 32)" in message and "(1, 64, 64, 768)" in message
    assert "variant='tiny'" in message


def test_load_sam_truncated_or_foreign_files(tiny_sam_file, tmp_path: Path) -> None:
    _, path = tiny_sam_file
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ConfigError, match=r"truncated\.pth: cannot read SAM checkpoint"):
        load_sam(truncated, "tiny")
    foreign = tmp_path / "unet.pt"
    torch.save({"network_state": {"encoder.0.weight": torch.zeros(2)}, "plan": {}}, foreign)
    with pytest.raises(ConfigError, match=r"unet\.pt: not a SAM checkpoint"):
        load_sam(foreign, "tiny")
    with pytest.raises(ConfigError, match="unknown SAM variant 'vit_x'.*vit_b, vit_l, vit_h"):
        load_sam(path, "vit_x")
    with pytest.raises(ConfigError, match="not found"):
        load_medsam(tmp_path / "absent.pth")


def test_load_sam_missing_weights(tmp_path: Path, caplog) -> None:
    state = {k: v for k, v in _tiny_reference_sam().state_dict().items() if "iou_pred" not in k}
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"partial\.pth.*lacks 6 weights.*iou_prediction_head"):
        load_sam(path, "tiny")
    with caplog.at_level(logging.WARNING, logger="medseg.prompt.sam_loading"):
        load_sam(path, "tiny", strict=False)
    assert "missing 6" in caplog.text


# ---------------------------------------------------------------------------- preprocessing


def test_sam_preprocess_matches_sam_preprocess_and_transforms(tiny_sam_file) -> None:
    sam, _ = tiny_sam_file
    image = torch.rand(3, 32, 64, generator=torch.Generator().manual_seed(5)) * 255
    ours, transform = sam_preprocess(image, image_size=64)  # longest side already 64
    torch.testing.assert_close(ours[0], sam.preprocess(image), rtol=1e-6, atol=1e-6)
    # 30 x 50 -> longest side 64: (38.4 -> 38, 64), as SAM's get_preprocess_shape
    x, transform = sam_preprocess(torch.full((3, 30, 50), 200.0), image_size=64)
    assert transform.input_size == (38, 64) and transform.padded_size == (64, 64)
    value = (200 - torch.tensor(SAM_PIXEL_MEAN)) / torch.tensor(SAM_PIXEL_STD)
    torch.testing.assert_close(x[0, :, :38], value[:, None, None].expand(3, 38, 64))
    assert x[0, :, 38:].abs().max() == 0
    points = transform.apply_points(torch.tensor([[10.0, 20.0]]))
    torch.testing.assert_close(points, torch.tensor([[10 * 38 / 30, 20 * 64 / 50]]))
    box = transform.apply_box([3.0, 5.0, 30.0, 50.0])
    torch.testing.assert_close(box, torch.tensor([3 * 38 / 30, 5 * 64 / 50, 38.0, 64.0]))
    logits = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(
        postprocess_masks(logits, transform), sam.postprocess_masks(logits, (38, 64), (30, 50))
    )


def test_preprocess_grey_and_bad_shapes() -> None:
    with pytest.warns(UserWarning, match="grey image replicated to 3 channels"):
        x, transform = medsam_preprocess(torch.arange(20.0).reshape(4, 5) - 7, image_size=8)
    assert x.shape == (1, 3, 8, 8) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    torch.testing.assert_close(x[0, 0], x[0, 2])
    assert transform.scale == (2.0, 1.6) and transform.padded_size == (8, 8)
    with pytest.raises(ConfigError, match=r"channels last\? pass image.transpose\(2, 0, 1\)"):
        sam_preprocess(torch.zeros(20, 30, 3))
    with pytest.raises(ConfigError, match="C = 1 or 3"):
        medsam_preprocess(torch.zeros(2, 20, 30))


def test_full_model_parameter_counts_equal_sam() -> None:
    build = _sam_build()
    with torch.device("meta"):
        reference = build.sam_model_registry["vit_b"]()
        ours = sam_architecture("vit_b")
    assert _count(ours) == _count(reference) == 93_735_472
