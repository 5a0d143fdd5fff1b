"""The centre-voxel patch classifier: patch shapes in 2D/3D, a receptive field equal to the
patch, sliding-window logits equal to the hand-cut patch and to the fully convolutional
pass, memory chunks that change nothing, ONNX."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.nets import build_network, network_task
from medseg.nets.patch_classifier import PatchClassifier, patch_dilations


def _with_random_statistics(net: PatchClassifier) -> PatchClassifier:
    """Non-trivial batch-norm running statistics, then eval mode."""
    generator = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm3d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return net.eval()


def test_dilations_cover_exactly_the_patch() -> None:
    assert patch_dilations(33) == [1, 1, 2, 4, 8]
    assert patch_dilations(17) == [1, 1, 2, 4]
    assert patch_dilations(3) == [1]
    for size in range(3, 70, 2):
        assert 1 + 2 * sum(patch_dilations(size)) == size
    with pytest.raises(ConfigError, match="odd"):
        patch_dilations(32)


@pytest.mark.parametrize(("spatial_dims", "size"), [(2, 33), (3, 17)])
def test_default_patch_gives_one_logit_row_per_patch(spatial_dims: int, size: int) -> None:
    net = build_network(
        "patch_classifier", spatial_dims=spatial_dims, in_channels=2, out_channels=3
    )
    assert network_task("patch_classifier") == "classification"
    assert net.patch_size == size
    out = net(torch.randn(4, 2, *([size] * spatial_dims)))
    assert out.shape == (4, 3)
    with pytest.raises(ValueError, match="use segment"):
        net(torch.randn(1, 2, *([size + 2] * spatial_dims)))


def test_every_voxel_of_the_patch_and_nothing_else_reaches_the_logit() -> None:
    net = PatchClassifier(2, 1, 2, patch_size=17, features=4, hidden=(8,), norm="none").eval()
    image = torch.randn(1, 1, 25, 25, requires_grad=True)
    net.dense_logits(image)[0, 1, 12, 12].backward()
    reached = image.grad[0, 0] != 0
    assert reached[4:21, 4:21].all() and reached.sum() == 17 * 17


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_sliding_patches_equal_hand_cut_patches_and_the_dense_pass(spatial_dims: int) -> None:
    torch.manual_seed(0)
    net = _with_random_statistics(PatchClassifier(spatial_dims, 2, 3, patch_size=7, features=4))
    shape = (9, 6, 5)[:spatial_dims]
    image = torch.randn(2, 2, *shape)
    with torch.no_grad():
        patches = net.patch_logits(image, chunk_size=13)
        dense = net.dense_logits(image)
        padded = F.pad(image, (3, 3) * spatial_dims, mode="replicate")
        centre = (4, 0, 2)[:spatial_dims]  # voxel (4, 0, ...): a patch reaching over the border
        window = tuple(slice(c, c + 7) for c in centre)
        by_hand = net(padded[(slice(None), slice(None), *window)])
    assert patches.shape == dense.shape == (2, 3, *shape)
    torch.testing.assert_close(patches, dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(patches[(slice(None), slice(None), *centre)], by_hand)
    labels = net.segment(image, method="patches", chunk_size=7)
    assert labels.shape == (2, *shape) and torch.equal(labels, dense.argmax(1))


def test_chunk_size_does_not_change_the_result() -> None:
    net = _with_random_statistics(PatchClassifier(2, 1, 2, patch_size=5, features=3))
    image = torch.randn(1, 1, 11, 7)
    with torch.no_grad():
        outputs = [net.patch_logits(image, chunk_size=n) for n in (1, 10, 77, 10_000)]
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0])
    with pytest.raises(ConfigError, match="chunk_size"):
        net.patch_logits(image, chunk_size=0)
    with pytest.raises(ConfigError, match="'dense' or 'patches'"):
        net.segment(image, method="unfold")  # type: ignore[arg-type]


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="needs 4 convolution widths"):
        PatchClassifier(3, 1, 2, features=(8, 8))
    with pytest.raises(ConfigError, match="'batch' or 'none'"):
        PatchClassifier(2, 1, 2, norm="instance")  # type: ignore[arg-type]
    assert PatchClassifier(2, 1, 2, patch_size=9, features=(2, 3, 4)).num_features == 4


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_onnx_export_matches_torch(assert_onnx_matches, spatial_dims: int) -> None:
    net = _with_random_statistics(PatchClassifier(spatial_dims, 2, 3, patch_size=9, features=4))
    assert_onnx_matches(net, torch.randn(3, 2, *([9] * spatial_dims)))
