"""Swin windows, blocks and Swin-UNet: hand-computed layouts, MONAI as reference, locality of
shifted windows, the published parameter count, and size refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from monai.networks.nets import swin_unetr as monai_swin

from medseg.errors import ConfigError
from medseg.nets.swin_unet import SwinUNet
from medseg.nets.transformer.patch_merging import PatchExpanding, PatchMerging
from medseg.nets.transformer.swin_block import SwinBlock, WindowSizeError
from medseg.nets.transformer.window import (
    WindowAttention,
    relative_position_index,
    shift_attention_mask,
    window_partition,
    window_reverse,
)

INF = float("-inf")


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(("spatial", "window"), [((4, 6), (2, 3)), ((4, 6, 8), (2, 3, 4))])
def test_window_partition_round_trips(spatial: tuple, window: tuple) -> None:
    x = torch.randn(2, *spatial, 3)
    windows = window_partition(x, window)
    count = np.prod([s // w for s, w in zip(spatial, window, strict=True)])
    assert windows.shape == (2 * count, np.prod(window), 3)
    assert torch.equal(window_reverse(windows, window, spatial), x)


def test_window_partition_orders_windows_and_tokens_row_major() -> None:
    grid = torch.arange(24.0).reshape(1, 4, 6, 1)  # value = 6 * row + column
    windows = window_partition(grid, (2, 3))[..., 0]
    assert windows[0].tolist() == [0, 1, 2, 6, 7, 8]
    assert windows[1].tolist() == [3, 4, 5, 9, 10, 11]
    assert windows[3].tolist() == [15, 16, 17, 21, 22, 23]


def test_window_partition_matches_monai_in_3d() -> None:
    x = torch.randn(2, 4, 6, 8, 5)
    expected = monai_swin.window_partition(x, (2, 3, 4))
    assert torch.equal(window_partition(x, (2, 3, 4)), expected)


def test_relative_position_index_of_a_2x2_window_by_hand() -> None:
    # tokens (0,0), (0,1), (1,0), (1,1); row = (dh + 1) * 3 + (dw + 1) with d = p_i - p_j
    expected = [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    assert relative_position_index((2, 2)).tolist() == expected
    # a 1x2 window reading the 2x2 table uses the rows of its own offsets
    assert relative_position_index((1, 2), (2, 2)).tolist() == [[4, 3], [5, 4]]


def test_relative_position_index_matches_monai_in_3d() -> None:
    reference = monai_swin.WindowAttention(6, 2, (2, 3, 4)).relative_position_index
    assert torch.equal(relative_position_index((2, 3, 4)), reference)


def test_shift_mask_of_a_4x4_grid_by_hand() -> None:
    # window 2, shift 1: rows/columns of the rolled grid fall in regions 0, 0, 1, 2
    mask = shift_attention_mask((4, 4), (2, 2), (1, 1))
    assert mask.shape == (4, 4, 4)
    assert torch.equal(mask[0], torch.zeros(4, 4))  # top-left: one region
    columns = [[0, INF, 0, INF], [INF, 0, INF, 0], [0, INF, 0, INF], [INF, 0, INF, 0]]
    rows = [[0, 0, INF, INF], [0, 0, INF, INF], [INF, INF, 0, 0], [INF, INF, 0, 0]]
    assert mask[1].tolist() == columns  # top-right: columns 2 | 3 differ
    assert mask[2].tolist() == rows  # bottom-left: rows 2 | 3 differ
    diagonal = torch.full((4, 4), INF).fill_diagonal_(0)
    assert torch.equal(mask[3], diagonal)  # bottom-right: four regions


@pytest.mark.parametrize(
    ("spatial", "window", "shift"),
    [((8, 12), (4, 4), (2, 2)), ((6, 8, 8), (3, 4, 4), (1, 2, 2)), ((4, 8), (4, 4), (0, 2))],
)
def test_shift_mask_matches_monai(spatial: tuple, window: tuple, shift: tuple) -> None:
    reference = monai_swin.compute_mask(spatial, window, shift, "cpu")
    if not any(shift[:1]):  # MONAI's slices assume a shift on every axis
        reference = monai_swin.compute_mask(spatial, window, (window[0], *shift[1:]), "cpu")
    ours = shift_attention_mask(spatial, window, shift)
    assert torch.equal(ours == INF, reference != 0)


@pytest.mark.parametrize(
    ("window", "shifted"), [((4, 4), False), ((4, 4), True), ((2, 3, 4), True)]
)
def test_window_attention_matches_monai(window: tuple, shifted: bool) -> None:
    torch.manual_seed(0)
    ours = WindowAttention(12, window, 3)
    reference = monai_swin.WindowAttention(12, 3, window, qkv_bias=True)
    state = {"relative_position_bias_table": ours.bias_table}
    state |= {f"{k}": v for k, v in ours.state_dict().items() if k != "bias_table"}
    assert reference.load_state_dict(state, strict=False).missing_keys == [
        "relative_position_index"
    ]
    spatial = tuple(2 * w for w in window)
    shift = tuple(w // 2 for w in window)
    windows = window_partition(torch.randn(2, *spatial, 12), window)
    ref_mask = monai_swin.compute_mask(spatial, window, shift, "cpu") if shifted else None
    mask = shift_attention_mask(spatial, window, shift) if shifted else None
    expected = reference(windows, ref_mask)
    torch.testing.assert_close(ours(windows, window, mask), expected, atol=1e-5, rtol=1e-5)


def test_swin_block_matches_monai_block_in_3d() -> None:
    torch.manual_seed(0)
    ours = SwinBlock(12, 3, (2, 4, 4), shift=True)
    reference = monai_swin.SwinTransformerBlock(12, 3, (2, 4, 4), (1, 2, 2), qkv_bias=True)
    renames = [
        ("attention.bias_table", "attn.relative_position_bias_table"),
        ("attention.", "attn."),
        ("mlp.0.", "mlp.linear1."),
        ("mlp.2.", "mlp.linear2."),
    ]
    state = {}
    for key, value in ours.state_dict().items():
        for old, new in renames:
            key = key.replace(old, new)
        state[key] = value
    assert not reference.load_state_dict(state, strict=False).unexpected_keys
    x = torch.randn(2, 4, 8, 8, 12)
    mask = monai_swin.compute_mask((4, 8, 8), (2, 4, 4), (1, 2, 2), "cpu")
    torch.testing.assert_close(ours(x), reference(x, mask), atol=1e-5, rtol=1e-5)


def _support(block: SwinBlock, spatial: tuple[int, ...], token: tuple[int, ...]) -> torch.Tensor:
    """Which input tokens the output ``token`` depends on (gradient != 0)."""
    torch.manual_seed(0)
    x = torch.randn(1, *spatial, 6, requires_grad=True)
    block(x)[(0, *token)].sum().backward()
    assert torch.isfinite(x.grad).all()
    return x.grad[0].abs().sum(-1) != 0


def _box(spatial: tuple[int, ...], ranges: list[list[int]]) -> torch.Tensor:
    box = torch.zeros(spatial, dtype=torch.bool)
    for point in itertools.product(*ranges):
        box[point] = True
    return box


@pytest.mark.parametrize(
    ("shift", "token", "rows", "columns"),
    [
        (False, (3, 3), range(0, 4), range(0, 4)),
        (False, (5, 2), range(4, 8), range(0, 4)),
        (True, (3, 3), range(2, 6), range(2, 6)),  # the shifted window [2, 6)^2
        (True, (0, 0), range(0, 2), range(0, 2)),  # rolled-around window, its own region
        (True, (7, 0), range(6, 8), range(0, 2)),
        (True, (7, 4), range(6, 8), range(2, 6)),
    ],
)
def test_shifted_windows_never_mix_across_a_window_edge(
    shift: bool, token: tuple, rows: range, columns: range
) -> None:
    block = SwinBlock(6, 2, (4, 4), shift=shift)
    support = _support(block, (8, 8), token)
    assert torch.equal(support, _box((8, 8), [list(rows), list(columns)]))


def test_shifted_windows_never_mix_in_3d_and_clamp_small_axes() -> None:
    # axis 0 (4 tokens) is no larger than the window: one window, not shifted
    block = SwinBlock(6, 2, (4, 4, 4), shift=True)
    support = _support(block, (4, 8, 8), (1, 0, 5))
    assert torch.equal(support, _box((4, 8, 8), [[0, 1, 2, 3], [0, 1], [2, 3, 4, 5]]))


@pytest.mark.parametrize(
    ("shift", "token", "rows"),
    [(False, (5, 5), [4, 5]), (True, (0, 0), [0, 1]), (True, (5, 5), [2, 3, 4, 5])],
)
def test_padded_windows_ignore_the_padding(shift: bool, token: tuple, rows: list[int]) -> None:
    # a 6x6 grid padded to 8x8 for window 4: real tokens never attend to the padding
    block = SwinBlock(6, 2, (4, 4), shift=shift, pad_to_window=True)
    assert torch.equal(_support(block, (6, 6), token), _box((6, 6), [rows, rows]))


def test_grid_the_window_cannot_tile_is_refused_without_padding() -> None:
    with pytest.raises(WindowSizeError, match=r"token grid \(10, 8\) must be a multiple"):
        SwinBlock(6, 2, (4, 4), shift=False)(torch.zeros(1, 10, 8, 6))


def test_patch_merging_concatenates_neighbours_and_expanding_inverts_it() -> None:
    merge = PatchMerging(2, 1)
    merge.norm, merge.reduction = torch.nn.Identity(), torch.nn.Identity()
    grid = torch.arange(16.0).reshape(1, 4, 4, 1)
    assert merge(grid)[0, 0, 1].tolist() == [2, 3, 6, 7]
    expand = PatchExpanding(3, 16, out_dim=2)
    assert expand.expand.out_features == 16
    expand.expand, expand.norm = torch.nn.Identity(), torch.nn.Identity()
    merge3d = PatchMerging(3, 2)
    merge3d.norm, merge3d.reduction = torch.nn.Identity(), torch.nn.Identity()
    x = torch.randn(2, 4, 6, 2, 2)
    assert torch.equal(expand(merge3d(x)), x)


@pytest.mark.parametrize(
    ("spatial_dims", "size"), [(2, (16, 24)), (3, (8, 16, 24)), (3, (40, 56, 40))]
)
def test_output_shapes(spatial_dims: int, size: tuple) -> None:
    net = SwinUNet(spatial_dims, 2, 3, embed_dim=12, depths=(1, 1, 1), heads=(1, 2, 4)).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 2, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()


def test_tiny_matches_the_published_swin_unet_parameter_count() -> None:
    # Cao et al. 2021, Table 1: 27.17 M (Synapse, 9 classes, 224^2). The official code
    # (HuCaoFighting/Swin-Unet, SwinTransformerSys, 3 input channels) has 27,168,900.
    with torch.device("meta"):
        net = SwinUNet(2, 3, 9, preset="tiny")
        assert net(torch.empty(1, 3, 224, 224)).shape == (1, 9, 224, 224)
    assert _count(net) == 27_168_900
    assert abs(_count(net) / 27.17e6 - 1) < 0.02
    assert net.required_divisor == (224, 224)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cpu_preset_is_small(spatial_dims: int) -> None:
    with torch.device("meta"):
        net = SwinUNet(spatial_dims, 1, 4)
    assert _count(net) < 10_000_000
    assert net.required_divisor == (8,) * spatial_dims


def test_bad_sizes_name_the_valid_ones() -> None:
    net = SwinUNet(3, 1, 2, embed_dim=12, depths=(1, 1, 1), heads=(1, 1, 1))
    with pytest.raises(
        ConfigError, match=r"nearest valid sizes per axis: \[\[40\], \[48, 56\], \[40\]\]"
    ):
        net(torch.zeros(1, 1, 40, 50, 40))
    with pytest.raises(ValueError, match="must be divisible by"):  # as the other networks
        net(torch.zeros(1, 1, 40, 50, 40))
    with torch.device("meta"):
        tiny = SwinUNet(2, 1, 9, preset="tiny")
        with pytest.raises(
            ConfigError,
            match=r"\(224, 224\) \(patch \* 2\^\(stages - 1\) \* window\).*"
            r"\[\[224\], \[224, 448\]\]",
        ):
            tiny(torch.empty(1, 1, 112, 256))


def test_inconsistent_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="valid presets: cpu, tiny"):
        SwinUNet(2, 1, 2, preset="huge")
    with pytest.raises(ConfigError, match=r"heads\[1\] = 5 does not divide"):
        SwinUNet(2, 1, 2, embed_dim=12, depths=(1, 1), heads=(3, 5))
    with pytest.raises(ConfigError, match="one entry per stage"):
        SwinUNet(2, 1, 2, depths=(1, 1, 1), heads=(3, 6))
    with pytest.raises(ConfigError, match="window"):
        SwinUNet(2, 1, 2, window=(4, 4, 4))


def test_gradients_reach_every_parameter() -> None:
    net = SwinUNet(3, 1, 2, embed_dim=12, heads=(1, 2, 4)).train()
    net(torch.randn(1, 1, 16, 16, 24)).pow(2).mean().backward()
    assert [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()] == []


@pytest.mark.parametrize(("spatial_dims", "size"), [(2, (24, 16)), (3, (8, 24, 16))])
def test_onnx_export_with_shifted_and_padded_windows(
    assert_onnx_matches, spatial_dims: int, size: tuple
) -> None:
    net = SwinUNet(spatial_dims, 1, 2, embed_dim=12, depths=(1, 2, 1), heads=(1, 2, 4)).eval()
    x = torch.randn(1, 1, *size)  # stage 1 grid 6 x 4: padded to the window 4, shifted
    assert_onnx_matches(net, x)


def test_drop_path_drops_whole_samples_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    block = SwinBlock(4, 1, (2, 2), shift=False, drop_path=0.5).train()
    branch = block.drop_path(torch.ones(2000, 3, 3, 4))
    per_sample = branch.flatten(1)
    assert set(per_sample[:, 0].tolist()) == {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()  # one decision per sample
    assert abs(branch.mean().item() - 1.0) < 0.1


def test_planner_accepts_multiples_of_the_divisor_and_names_the_nearest_otherwise() -> None:
    from medseg.planning.choices import check_plan_choices
    from medseg.planning.plan import Plan

    def plan(patch: tuple[int, ...]) -> Plan:
        labels = {"background": 0, "organ": 1}
        return Plan(
            "3d_fullres",
            3,
            (1.0,) * 3,
            (64,) * 3,
            patch,
            2,
            ("zscore",),
            {},
            2,
            1,
            labels,
            network="swin_unet",
        )

    check_plan_choices(plan((40, 56, 40)))  # the cpu preset's divisor is 8
    with pytest.raises(
        ConfigError, match=r"nearest sizes per axis: \[\[40\], \[48, 56\], \[40\]\]"
    ):
        check_plan_choices(plan((40, 50, 40)))
