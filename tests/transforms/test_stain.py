"""Stain normalisation (Macenko, Reinhard) and the colour-space conversions it stands on,
checked on synthetic Beer-Lambert H&E tiles and against scikit-image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage import color

from medseg.errors import ConfigError, DatasetError
from medseg.transforms import (
    MacenkoNormalizer,
    ReinhardNormalizer,
    stain_normalizer_from_config,
)
from medseg.transforms.colour_space import (
    hed_to_rgb,
    hsv_to_rgb,
    lab_to_rgb,
    rgb_to_hed,
    rgb_to_hsv,
    rgb_to_lab,
)
from medseg.transforms.stain import masked_quantile, od_to_rgb, rgb_to_od

# Macenko's reference H and E optical-density vectors (R, G, B)
H, E = (0.5626, 0.7201, 0.4062), (0.2159, 0.8012, 0.5581)
SHIFTED = ((0.45, 0.80, 0.35), (0.30, 0.75, 0.60))


def synthetic_tile(
    stains=(H, E), scale=(1.0, 1.0), size: int = 64, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """An H&E-like ``(3, size, size)`` tile in 0..255 by Beer-Lambert, I = 255 exp(-S^T c):
    eosin tissue with haematoxylin nuclei, a background strip on the left; and the tissue
    mask."""
    g = torch.Generator().manual_seed(seed)
    s = torch.tensor(stains, dtype=torch.float64)
    s = s / s.norm(dim=1, keepdim=True)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    h = torch.zeros(size, size, dtype=torch.float64)
    e = 0.8 + 0.7 * torch.rand(size, size, generator=g, dtype=torch.float64)
    for _ in range(12):
        cy, cx = torch.randint(0, size, (2,), generator=g)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < (2 + 4 * torch.rand(1, generator=g)) ** 2
        h[blob] = 1.0 + 0.5 * torch.rand(1, generator=g, dtype=torch.float64)
        e[blob] *= 0.3
    background = xx < size // 4
    h[background], e[background] = 0.0, 0.02
    c = torch.stack([h * scale[0], e * scale[1]])
    od = torch.einsum("kc,kyx->cyx", s, c)
    return (255 * torch.exp(-od)).float(), ~background


def tissue_error(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return float((a - b).abs()[:, mask].mean())


def test_optical_density_round_trip_and_white() -> None:
    image = torch.tensor([0.0, 1.0, 127.0, 255.0]).view(1, 1, 4).expand(1, 3, 4)
    od = rgb_to_od(image)
    assert od[0, 0, -1] == 0  # white: no density
    assert float(od[0, 0, 0]) == pytest.approx(np.log(256.0))
    torch.testing.assert_close(od_to_rgb(od), image, atol=1e-4, rtol=0)
    torch.testing.assert_close(rgb_to_od(image / 255, 1.0), od)


def test_masked_quantile_equals_numpy() -> None:
    values = torch.randn(3, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mask = torch.rand(3, 50, generator=torch.Generator().manual_seed(1)) > 0.4
    for q in (0.01, 0.5, 0.99):
        got = masked_quantile(values, mask, q)
        expected = [np.percentile(v[m].numpy(), 100 * q) for v, m in zip(values, mask, strict=True)]
        np.testing.assert_allclose(got.numpy(), expected)
    assert masked_quantile(values, torch.zeros_like(mask), 0.5).isinf().all()


def test_conversions_equal_skimage() -> None:
    rgb = np.random.default_rng(0).random((2, 3, 6, 7))
    as_last = np.moveaxis(rgb, 1, -1)
    t = torch.from_numpy(rgb)
    lab = np.moveaxis(color.rgb2lab(as_last), -1, 1)
    np.testing.assert_allclose(rgb_to_lab(t).numpy(), lab, atol=1e-8)
    lab_big = np.moveaxis(lab, 1, -1) * 1.2  # partly out of gamut: clipped alike
    np.testing.assert_allclose(
        np.moveaxis(lab_to_rgb(torch.from_numpy(np.moveaxis(lab_big, -1, 1))).numpy(), 1, -1),
        color.lab2rgb(lab_big),
        atol=1e-8,
    )
    hed = np.moveaxis(color.rgb2hed(as_last), -1, 1)
    np.testing.assert_allclose(rgb_to_hed(t).numpy(), hed, atol=1e-10)
    np.testing.assert_allclose(
        hed_to_rgb(torch.from_numpy(hed)).numpy(),
        np.moveaxis(color.hed2rgb(np.moveaxis(hed, 1, -1)), -1, 1),
        atol=1e-10,
    )
    np.testing.assert_allclose(
        rgb_to_hsv(t).numpy(), np.moveaxis(color.rgb2hsv(as_last), -1, 1), atol=1e-10
    )
    np.testing.assert_allclose(hsv_to_rgb(rgb_to_hsv(t)).numpy(), rgb, atol=1e-10)


def test_macenko_recovers_stain_vectors() -> None:
    tile, _ = synthetic_tile()
    normalizer = MacenkoNormalizer().fit(tile)
    truth = torch.tensor([H, E], dtype=torch.float64)
    truth = truth / truth.norm(dim=1, keepdim=True)
    cosine = (normalizer.stains * truth).sum(1)
    assert cosine.min() > 0.98  # H first, then E, each close to its true direction
    assert normalizer.fitted


def test_macenko_to_itself_is_near_identity() -> None:
    tile, mask = synthetic_tile()
    out = MacenkoNormalizer().fit(tile)(tile[None])[0]
    assert tissue_error(out, tile, mask) < 3.0  # 0..255 scale
    assert out.dtype == tile.dtype and out.shape == tile.shape


def test_macenko_maps_a_stain_shift_back() -> None:
    reference, _ = synthetic_tile(seed=0)
    normalizer = MacenkoNormalizer().fit(reference)
    original, mask = synthetic_tile(seed=1)
    shifted, _ = synthetic_tile(SHIFTED, scale=(0.7, 1.3), seed=1)
    before = tissue_error(shifted, original, mask)
    batch = torch.stack([shifted, original])  # per-image estimation in one batch
    after = tissue_error(normalizer(batch)[0], original, mask)
    assert before > 15 and after < before / 10


def test_macenko_value_range_one_matches_255() -> None:
    tile, _ = synthetic_tile()
    shifted, _ = synthetic_tile(SHIFTED, seed=1)
    out255 = MacenkoNormalizer().fit(tile)(shifted[None])
    out1 = MacenkoNormalizer(value_range=1.0).fit(tile / 255)(shifted[None] / 255)
    torch.testing.assert_close(out1 * 255, out255, atol=1e-2, rtol=0)


def test_macenko_little_tissue_falls_back_without_nan() -> None:
    tile, _ = synthetic_tile()
    normalizer = MacenkoNormalizer().fit(tile)
    white = torch.full((3, 32, 32), 255.0)
    black = torch.zeros(3, 32, 32)
    speck = white.clone()
    speck[:, :3, :3] = tile[:, 30:33, 30:33]
    out = normalizer(torch.stack([white, black, speck]))
    assert torch.isfinite(out).all()
    assert out[0].equal(white)
    with pytest.raises(DatasetError, match="tissue pixels"):
        MacenkoNormalizer().fit([white, speck])


def test_macenko_fit_pools_a_list_of_tiles() -> None:
    tiles = [synthetic_tile(seed=s)[0] for s in range(3)]
    pooled = MacenkoNormalizer().fit(tiles)
    batch = MacenkoNormalizer().fit(torch.stack(tiles))
    torch.testing.assert_close(pooled.stains, batch.stains)


def test_reinhard_matches_target_lab_statistics() -> None:
    target, _ = synthetic_tile(seed=0)
    source, _ = synthetic_tile(SHIFTED, scale=(0.8, 1.2), seed=3)
    normalizer = ReinhardNormalizer().fit(target)
    lab_target = torch.from_numpy(color.rgb2lab(target.permute(1, 2, 0).numpy() / 255.0))
    out = normalizer(source[None])[0]
    lab_out = torch.from_numpy(color.rgb2lab(out.permute(1, 2, 0).numpy() / 255.0))
    means = lab_target.reshape(-1, 3).mean(0)
    stds = lab_target.reshape(-1, 3).std(0, correction=0)
    torch.testing.assert_close(normalizer.means, means.double(), atol=1e-3, rtol=0)
    torch.testing.assert_close(lab_out.reshape(-1, 3).mean(0), means, atol=0.5, rtol=0)
    torch.testing.assert_close(lab_out.reshape(-1, 3).std(0, correction=0), stds, atol=0.5, rtol=0)


@pytest.mark.parametrize("cls", [MacenkoNormalizer, ReinhardNormalizer])
def test_to_dict_from_dict_round_trip(cls) -> None:
    tile, _ = synthetic_tile()
    shifted, _ = synthetic_tile(SHIFTED, seed=2)
    normalizer = cls().fit(tile)
    config = json.loads(json.dumps(normalizer.to_dict()))  # plain JSON
    rebuilt = stain_normalizer_from_config(config)
    assert type(rebuilt) is cls
    torch.testing.assert_close(rebuilt(shifted[None]), normalizer(shifted[None]))
    array = rebuilt.normalize_array(shifted.numpy())
    np.testing.assert_allclose(array, normalizer(shifted[None])[0].numpy(), atol=1e-4)


def test_bad_configs_and_inputs_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="method must be one of"):
        stain_normalizer_from_config({"method": "vahadane"})
    config = MacenkoNormalizer().to_dict()
    with pytest.raises(ConfigError, match="unknown key"):
        stain_normalizer_from_config({**config, "gamma": 1})
    with pytest.raises(ConfigError, match="'stains' must be finite"):
        stain_normalizer_from_config({**config, "stains": [[1, 2, 3]]})
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
        MacenkoNormalizer()(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*value_range=255"):
        MacenkoNormalizer(value_range=1.0)(torch.full((1, 3, 8, 8), 200.0))
    with pytest.raises(ValueError, match="not fitted"):
        ReinhardNormalizer()(torch.zeros(1, 3, 8, 8))


def test_pale_eosin_needs_the_norm_tissue_rule() -> None:
    # Ruifrok's eosin has a red OD of 0.07: pale stroma never has every channel >= beta
    ruifrok_h, ruifrok_e = (0.65, 0.70, 0.29), (0.07, 0.99, 0.11)
    tile, _ = synthetic_tile((ruifrok_h, ruifrok_e), scale=(1.0, 0.4))
    truth = torch.tensor(ruifrok_e, dtype=torch.float64)
    truth = truth / truth.norm()
    by_norm = MacenkoNormalizer().fit(tile)
    by_all = MacenkoNormalizer(tissue="all").fit(tile)
    assert float(by_norm.stains[1] @ truth) > 0.98
    assert float(by_all.stains[1] @ truth) < 0.95
