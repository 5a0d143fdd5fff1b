"""Vision Transformer: shapes, [CLS]/position handling, the ViT-B/16 size, errors, gradients."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from medseg.errors import ConfigError
from medseg.nets import network_task
from medseg.nets.attention import MultiHeadSelfAttention
from medseg.nets.vit import VIT_SIZES, VisionTransformer, attention_weights

TINY: dict[str, Any] = {"dim": 16, "depth": 2, "heads": 2, "mlp_dim": 32}


def small_vit(spatial_dims: int = 2, **overrides: Any) -> VisionTransformer:
    torch.manual_seed(0)
    config = {"image_size": 8, "patch_size": 4, **TINY, **overrides}
    return VisionTransformer(spatial_dims, 1, 3, **config).eval()


def swap_patches(x: torch.Tensor) -> torch.Tensor:
    """Permute the four 4x4 patches of a (B, C, 8, 8) image: (0 1 / 2 3) -> (3 2 / 1 0)."""
    out = x.clone()
    out[..., :4, :4], out[..., 4:, 4:] = x[..., 4:, 4:], x[..., :4, :4]
    out[..., :4, 4:], out[..., 4:, :4] = x[..., 4:, :4], x[..., :4, 4:]
    return out


@pytest.mark.parametrize(
    ("spatial_dims", "image_size", "patch_size", "num_patches"),
    [(2, 16, 4, 16), (2, (16, 8), (4, 2), 16), (3, 32, 8, 64), (1, 12, 3, 4)],
)
def test_output_and_embedding_shapes(
    spatial_dims: int, image_size: Any, patch_size: Any, num_patches: int
) -> None:
    net = small_vit(spatial_dims, image_size=image_size, patch_size=patch_size)
    size = (image_size,) * spatial_dims if isinstance(image_size, int) else image_size
    x = torch.randn(2, 1, *size)
    assert net(x).shape == (2, 3)
    assert net.backbone.num_patches == num_patches
    assert net.backbone.position_embedding.shape == (1, 1 + num_patches, 16)
    assert net.backbone.cls_token.shape == (1, 1, 16)
    assert net.backbone.tokens(x).shape == (2, 1 + num_patches, 16)
    assert net.backbone(x).shape == (2, 16)
    assert network_task("vit") == "classification"
    assert isinstance(net.head, torch.nn.Linear) and net.head.out_features == 3


def test_head_reads_the_cls_token_or_the_mean_of_the_patch_tokens() -> None:
    x = torch.randn(2, 1, 8, 8)
    net = small_vit()
    tokens = net.backbone.tokens(x)
    torch.testing.assert_close(net(x), net.head(tokens[:, 0]))
    mean_net = small_vit(pool="mean")
    tokens = mean_net.backbone.tokens(x)
    torch.testing.assert_close(mean_net(x), mean_net.head(tokens[:, 1:].mean(dim=1)))


def test_the_cls_token_takes_part() -> None:
    x = torch.randn(2, 1, 8, 8)
    for pool in ("cls", "mean"):
        net = small_vit(pool=pool)
        before = net(x)
        with torch.no_grad():
            net.backbone.cls_token.normal_()  # (a constant shift would vanish in LayerNorm)
        assert not torch.allclose(net(x), before, atol=1e-4)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_patch_order_matters_only_through_the_position_embedding(pool: str) -> None:
    x = torch.randn(2, 1, 8, 8)
    net = small_vit(pool=pool)
    # learnt (random-initialised) positions: moving patches around changes the logits
    assert not torch.allclose(net(x), net(swap_patches(x)), atol=1e-4)
    # without positions the encoder is permutation-equivariant over the patch tokens, and
    # both the [CLS] token and the patch mean are invariant to their order
    with torch.no_grad():
        net.backbone.position_embedding.zero_()
    torch.testing.assert_close(net(x), net(swap_patches(x)), atol=1e-5, rtol=1e-5)
    # a position embedding on the [CLS] row alone keeps the invariance (row 0 is not a patch)
    with torch.no_grad():
        net.backbone.position_embedding[:, 0].normal_()
    torch.testing.assert_close(net(x), net(swap_patches(x)), atol=1e-5, rtol=1e-5)


def test_vit_b16_has_the_published_parameter_count() -> None:
    net = VisionTransformer(2, 3, 1000, image_size=224, patch_size=16, size="base")
    assert sum(p.numel() for p in net.parameters()) == 86_567_656  # timm/torchvision vit_b_16
    assert sum(p.numel() for p in net.head.parameters()) == 768 * 1000 + 1000
    assert (net.dim, net.depth, net.heads) == (768, 12, 12)


def test_size_presets_and_overrides() -> None:
    assert VIT_SIZES["tiny"] == (192, 12, 3, 768)
    assert VIT_SIZES["small"] == (384, 12, 6, 1536)
    net = VisionTransformer(2, 1, 2, image_size=16, patch_size=16, size="small", depth=1)
    assert (net.dim, net.depth, net.heads) == (384, 1, 6)
    assert net.backbone.blocks[0].mlp[0].out_features == 1536


def test_configuration_errors_name_the_sizes() -> None:
    with pytest.raises(ConfigError, match=r"\(30, 32\).*\(16, 16\)"):
        VisionTransformer(2, 1, 2, image_size=(30, 32), patch_size=16, **TINY)
    net = small_vit()
    with pytest.raises(ConfigError, match=r"\(12, 12\).*\(8, 8\)"):
        net(torch.zeros(1, 1, 12, 12))
    with pytest.raises(ConfigError, match="size"):
        VisionTransformer(2, 1, 2, image_size=16, size="huge")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="divisible by heads"):
        VisionTransformer(2, 1, 2, image_size=16, patch_size=4, dim=10, depth=1, heads=3)
    with pytest.raises(ConfigError, match="pool"):
        small_vit(pool="max")
    with pytest.raises(ConfigError, match="patch_size"):
        small_vit(patch_size=(4, 4, 4))


def test_backward_reaches_every_parameter() -> None:
    net = small_vit(3, image_size=(8, 8, 4), patch_size=4, dropout=0.1, attention_dropout=0.1)
    net.train()
    net(torch.randn(2, 1, 8, 8, 4)).sum().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert net.backbone.cls_token.grad.abs().sum() > 0
    assert net.backbone.position_embedding.grad.abs().sum() > 0


def test_frozen_backbone_trains_only_the_head() -> None:
    net = small_vit()
    net.backbone.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(trainable, lr=0.1)
    net(torch.randn(4, 1, 8, 8)).pow(2).sum().backward()
    optimiser.step()
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"head.weight", "head.bias"}


def test_attention_weights_reproduce_the_attention_output() -> None:
    torch.manual_seed(0)
    attention = MultiHeadSelfAttention(8, num_heads=2)
    tokens = torch.randn(2, 5, 8)
    weights = attention_weights(attention, tokens)
    v = attention.qkv(tokens).reshape(2, 5, 3, 2, 4)[:, :, 2].transpose(1, 2)  # (B, h, N, 4)
    by_hand = attention.proj((weights @ v).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(by_hand, attention(tokens), atol=1e-5, rtol=1e-5)
    assert math.isclose(weights[0, 1, 3].sum().item(), 1.0, rel_tol=1e-5)


def test_cls_attention_maps() -> None:
    net = small_vit(3, image_size=(8, 8, 4), patch_size=4)
    maps = net.attention_maps(torch.randn(2, 1, 8, 8, 4))
    assert maps.shape == (2, 2, 2, 2, 1)  # (B, heads, *grid)
    assert (maps >= 0).all() and (maps.flatten(2).sum(-1) <= 1 + 1e-6).all()
