"""Graph cut: a hand-computed 4-pixel cut, brute-force minimum energy on tiny images, noisy
phantoms in 2D and 3D, and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from medseg.classic.graph_cut import HISTOGRAM_BINS, graph_cut, neighbour_offsets
from medseg.errors import ConfigError, DatasetError
from medseg.io import Image

pytest.importorskip("maxflow")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize(
    ("spacing", "expected"), [((2.0, 1.0), [[1, 0], [0, 0]]), ((1.0, 1.0), [[1, 0], [1, 0]])]
)
def test_four_pixel_graph_gives_the_hand_computed_cut(
    spacing: tuple[float, float], expected: list[list[int]]
) -> None:
    # a b      10  0     a: fg seed, d: bg seed; b, c free; sigma = 5, smoothness = 1
    # c d  =    6  0
    # t-links: 32 bins over 0..10 (bin width 0.3125); fg seed in bin 31, bg seed in bin 0;
    #   P(bin | class) = (count + 1) / (1 + 32)
    #   b (I=0, bin 0):  R_fg = -log(1/33) = 3.4965, R_bg = -log(2/33) = 2.8034
    #   c (I=6, bin 19): R_fg = R_bg = 3.4965 (no seed there)
    # n-links exp(-dI^2 / 50) / dist:  ab = e^-2 / 1 = 0.1353 (horizontal, dist 1 mm)
    #   cd = e^-0.72 / 1 = 0.4868;  ac = e^-0.32 / dy = 0.7261 / dy;  bd = e^0 / dy = 1 / dy
    # spacing (2, 1), dy = 2 (ac = 0.3631, bd = 0.5):
    #   (b, c) = (bg, bg): 2.8034 + 3.4965 + ab + ac = 6.2999 + 0.4984 = 6.7983  <- minimum
    #            (bg, fg): 6.2999 + ab + cd = 6.2999 + 0.6221 = 6.9220
    #            (fg, bg): 6.9930 + bd + ac = 7.8561;  (fg, fg): 6.9930 + bd + cd = 7.9798
    # spacing (1, 1), dy = 1 (ac = 0.7261, bd = 1):
    #   (bg, bg): 6.2999 + 0.8615 = 7.1614;  (bg, fg): 6.2999 + 0.6221 = 6.9220  <- minimum
    #   (fg, bg): 6.9930 + 1.7261 = 8.7191;  (fg, fg): 6.9930 + 1.4868 = 8.4798
    assert HISTOGRAM_BINS == 32
    image = Image(np.array([[10.0, 0.0], [6.0, 0.0]]), spacing=spacing)
    out = graph_cut(image, [(0, 0)], [(1, 1)], sigma=5.0, smoothness=1.0)
    np.testing.assert_array_equal(out.array, expected)


def _energy(array, labels, fg, bg, spacing, smoothness, sigma, connectivity) -> float:
    """The documented Boykov-Jolly energy, written out pixel by pixel."""
    low, high = array.min(), array.max()

    def bin_of(value: float) -> int:
        return min(int((value - low) * HISTOGRAM_BINS / (high - low)), HISTOGRAM_BINS - 1)

    def cost(value: float, seeds) -> float:
        count = sum(bin_of(array[s]) == bin_of(value) for s in seeds)
        return -math.log((count + 1) / (len(seeds) + HISTOGRAM_BINS))

    energy = 0.0
    for p in np.ndindex(array.shape):
        energy += cost(array[p], fg if labels[p] else bg)  # R_p(label)
        for offset in neighbour_offsets(array.ndim, connectivity):
            q = tuple(a + b for a, b in zip(p, offset, strict=True))
            if (
                all(0 <= v < s for v, s in zip(q, array.shape, strict=True))
                and labels[p] != labels[q]
            ):
                dist = math.sqrt(sum((o * s) ** 2 for o, s in zip(offset, spacing, strict=True)))
                energy += (
                    smoothness * math.exp(-((array[p] - array[q]) ** 2) / (2 * sigma**2)) / dist
                )
    return energy


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cut_has_the_minimum_energy_of_all_labellings(connectivity: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 5, (3, 3)).astype(float) * 2.5
    spacing, fg, bg = (1.5, 1.0), [(0, 0)], [(2, 2), (2, 1)]
    kwargs = {"smoothness": 2.0, "sigma": 3.0, "connectivity": connectivity}
    out = graph_cut(Image(array, spacing=spacing), fg, bg, **kwargs).array
    free = [p for p in np.ndindex(array.shape) if p not in fg + bg]
    energies = []
    for choice in itertools.product((0, 1), repeat=len(free)):
        labels = np.zeros(array.shape, dtype=np.uint8)
        labels[tuple(np.array(fg).T)] = 1
        for p, value in zip(free, choice, strict=True):
            labels[p] = value
        energies.append(_energy(array, labels, fg, bg, spacing, 2.0, 3.0, connectivity))
    assert _energy(array, out, fg, bg, spacing, 2.0, 3.0, connectivity) == pytest.approx(
        min(energies), abs=1e-9
    )


def test_recovers_a_noisy_two_region_phantom_2d() -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:64, :64]
    truth = ((y - 30) ** 2 / 20**2 + (x - 34) ** 2 / 14**2) < 1
    array = np.where(truth, 120.0, 80.0) + rng.normal(0, 15, truth.shape)  # CNR 2.7
    fg, bg = [(30, 34), (25, 30), (36, 38)], [(2, 2), (60, 60), (5, 58), (58, 4)]
    out = graph_cut(Image(array, spacing=(1.0, 1.0)), fg, bg, smoothness=2.0)
    assert _dice(out.array, truth) > 0.95
    assert all(out.array[p] == 1 for p in fg) and all(out.array[p] == 0 for p in bg)
    assert out.array.dtype == np.uint8


def test_recovers_a_noisy_two_region_phantom_3d_anisotropic() -> None:
    rng = np.random.default_rng(1)
    z, y, x = np.mgrid[:16, :32, :32]
    truth = ((z - 8) * 2.0) ** 2 + (y - 16) ** 2 + (x - 16) ** 2 < 11**2  # 2 mm slices
    array = np.where(truth, 100.0, 60.0) + rng.normal(0, 12, truth.shape)
    image = Image(array, spacing=(2.0, 1.0, 1.0))
    # scribbles, as Boykov-Jolly intend: a 3^3 block inside, two boundary rows outside (a few
    # seeds per class make flat histograms and a cut that shrinks onto the seeds)
    fg = [tuple(int(v) for v in p) for p in np.argwhere(np.ones((3, 3, 3))) + (7, 15, 15)]
    bg = [(0, 0, i) for i in range(32)] + [(15, 31, i) for i in range(32)]
    out = graph_cut(image, fg, bg, smoothness=2.0)
    assert _dice(out.array, truth) > 0.95
    full = graph_cut(image, fg, bg, connectivity=3)
    assert _dice(full.array, truth) > 0.95
    assert out.spacing == (2.0, 1.0, 1.0)


def test_bad_input_one_clear_error_each() -> None:
    image = Image(np.arange(20.0).reshape(4, 5), spacing=(1.0, 1.0))
    with pytest.raises(ConfigError, match="no background seeds"):
        graph_cut(image, [(1, 1)], [])
    with pytest.raises(ConfigError, match="no foreground seeds"):
        graph_cut(image, [], [(1, 1)])
    with pytest.raises(ConfigError, match=r"bg_seeds: seed \(4, 0\) is outside .* \(4, 5\)"):
        graph_cut(image, [(1, 1)], [(4, 0)])
    with pytest.raises(ConfigError, match="both"):
        graph_cut(image, [(1, 1)], [(1, 1)])
    with pytest.raises(ConfigError, match="sigma"):
        graph_cut(image, [(1, 1)], [(0, 0)], sigma=0.0)
    nan = np.arange(20.0).reshape(4, 5)
    nan[2, 2] = np.nan
    with pytest.raises(DatasetError, match="1 NaN voxel"):
        graph_cut(Image(nan, spacing=(1.0, 1.0)), [(1, 1)], [(0, 0)])
