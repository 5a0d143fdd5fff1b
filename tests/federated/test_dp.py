"""Client-side differential privacy, pure maths: clipping bounds the update, the noise has the
right standard deviation, and the RDP accountant agrees with hand-computed and published
values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.federated.privacy import (
    DEFAULT_ORDERS,
    analytic_gaussian_delta,
    clip_update,
    dp_epsilon,
    gaussian_rdp,
    privatize,
    rdp_to_epsilon,
    update_norm,
)


def _state(rng, scale):
    return {
        "conv.weight": rng.normal(0, scale, (8, 4, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(0, scale, 8).astype(np.float32),
        "norm.num_batches_tracked": np.array(5, dtype=np.int64),
    }


def test_clipping_bounds_the_norm_of_the_whole_update():
    rng = np.random.default_rng(0)
    update = _state(rng, 1.0)
    norm = math.sqrt(
        sum(
            float(np.square(v.astype(np.float64)).sum())
            for v in update.values()
            if v.dtype.kind == "f"
        )
    )
    assert norm > 10
    clipped, before = clip_update(update, 2.0)
    assert before == pytest.approx(norm)
    assert update_norm(clipped) == pytest.approx(2.0, rel=1e-6)
    # one scale for every entry: the direction is kept
    np.testing.assert_allclose(clipped["conv.bias"], update["conv.bias"] * 2.0 / norm, rtol=1e-5)
    assert clipped["norm.num_batches_tracked"] == 5  # integers pass unchanged
    small, _ = clip_update(update, 10 * norm)  # within the bound: unchanged
    np.testing.assert_array_equal(small["conv.weight"], update["conv.weight"])


def test_privatize_sends_global_plus_clipped_update_plus_noise_of_std_z_c():
    global_state = {"w": np.zeros(200_000, np.float32), "n": np.array(3, np.int64)}
    local = {"w": np.full(200_000, 0.5, np.float32), "n": np.array(4, np.int64)}
    clip, z = 2.0, 0.75
    sent = privatize(local, global_state, clip, z, rng=np.random.default_rng(7))
    clipped = 0.5 * clip / update_norm({"w": local["w"]})  # every entry of the clipped update
    noise = sent["w"].astype(np.float64) - clipped
    # 200,000 draws: the sample std is within 1 % of z * C with overwhelming probability
    assert noise.std() == pytest.approx(z * clip, rel=0.01)
    assert abs(noise.mean()) < 5 * z * clip / math.sqrt(noise.size)
    assert sent["w"].dtype == np.float32 and sent["n"] == 4
    # without noise the update that leaves has norm exactly the clip
    quiet = privatize(local, global_state, clip, 0.0)
    assert update_norm({"w": quiet["w"] - global_state["w"]}) == pytest.approx(clip, rel=1e-5)
    # by default the noise is fresh entropy: two sends of the same update differ
    a, b = (privatize(local, global_state, clip, z)["w"] for _ in range(2))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(("clip", "z"), [(0.0, 1.0), (-1.0, 1.0), (1.0, -0.5), (math.nan, 1.0)])
def test_bad_dp_settings_are_refused(clip, z):
    state = {"w": np.ones(3, np.float32)}
    with pytest.raises(ConfigError, match="dp "):
        privatize(state, {"w": np.zeros(3, np.float32)}, clip, z)


def test_gaussian_rdp_is_alpha_over_two_z_squared_and_composes_by_adding():
    orders = [2.0, 8.0, 32.0]
    np.testing.assert_allclose(gaussian_rdp(2.0, orders), [2 / 8, 8 / 8, 32 / 8])
    np.testing.assert_allclose(gaussian_rdp(2.0, orders, 10), 10 * gaussian_rdp(2.0, orders))
    assert np.isinf(gaussian_rdp(0.0, orders)).all()


def test_epsilon_by_hand_classic_conversion():
    # one release at z = 1, delta = 1e-5, Mironov's conversion: minimise over alpha
    # alpha / 2 + ln(1/delta) / (alpha - 1): alpha* = 1 + sqrt(2 ln 1e5) = 5.7985 and
    # epsilon = 1/2 + sqrt(2 ln 1e5) = 5.29853 (the grid's best order is 5.8)
    eps, order = rdp_to_epsilon(gaussian_rdp(1.0), DEFAULT_ORDERS, 1e-5, improved=False)
    assert order == pytest.approx(5.8)
    assert eps == pytest.approx(0.5 + math.sqrt(2 * math.log(1e5)), abs=1e-5)


@pytest.mark.parametrize(
    ("z", "rounds", "delta", "published"),
    [  # Google's dp_accounting 0.6.0, RdpAccountant(DEFAULT_ORDERS), GaussianDpEvent(z)
        (1.0, 1, 1e-5, 4.728507067217623),
        (1.0, 10, 1e-5, 19.05359753163139),
        (2.0, 50, 1e-5, 22.019852327713252),
        (0.5, 5, 1e-6, 32.23843939256122),
        (5.0, 100, 1e-5, 10.725509696418232),
    ],
)
def test_epsilon_matches_googles_dp_accounting(z, rounds, delta, published):
    assert dp_epsilon(z, rounds, delta) == pytest.approx(published, rel=1e-9)


def test_rdp_epsilon_is_an_upper_bound_of_the_exact_gaussian_one():
    # T releases at noise z are one Gaussian mechanism with mu = sqrt(T) / z (Balle and
    # Wang 2018): at the RDP epsilon its exact delta is below the target delta
    for z, rounds in [(1.0, 1), (2.0, 50), (5.0, 100)]:
        eps = dp_epsilon(z, rounds, 1e-5)
        assert analytic_gaussian_delta(eps, math.sqrt(rounds) / z) <= 1e-5
        assert analytic_gaussian_delta(0.5 * eps, math.sqrt(rounds) / z) > 1e-5  # not loose


def test_more_noise_fewer_rounds_less_epsilon():
    assert dp_epsilon(2.0, 10, 1e-5) < dp_epsilon(1.0, 10, 1e-5)
    assert dp_epsilon(1.0, 5, 1e-5) < dp_epsilon(1.0, 10, 1e-5)
    with pytest.raises(ConfigError, match="delta"):
        dp_epsilon(1.0, 1, 0.0)
