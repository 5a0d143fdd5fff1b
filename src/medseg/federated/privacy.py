"""Client-side differential privacy for federated rounds, and its accounting, without Flower.

* :func:`clip_update`: scale a site's update (local minus global weights, every floating
  entry together) to L2 norm at most ``clip``.
* :func:`privatize`: what a site sends under DP: ``global + clip(local - global) + noise``,
  the noise i.i.d. Gaussian with standard deviation ``noise_multiplier * clip`` on every
  floating entry (integer entries, such as batch norm's step counter, pass unchanged). The
  noise is drawn from fresh operating-system entropy unless a generator is given (tests):
  a seed the server knows would let it subtract the noise.
* :func:`gaussian_rdp`, :func:`rdp_to_epsilon`, :func:`dp_epsilon`: a Renyi-DP accountant
  for the Gaussian mechanism (Mironov 2017). One release with L2 sensitivity ``clip`` and
  noise ``z * clip`` is ``(alpha, alpha / (2 z^2))``-RDP at every order ``alpha > 1``;
  ``rounds`` releases compose by adding; the conversion to ``(epsilon, delta)`` is the
  improved one of Balle et al. 2020 (Theorem 21; the one opacus uses), minimised over the
  orders. Every site takes part in every round (no subsampling), so a site's guarantee is
  that of ``rounds`` Gaussian releases of its update.

The guarantee is per site and about its whole contribution (its noised update against the
noised zero update, the convention of DP-FedAvg, McMahan et al. 2018, and of Flower's
``LocalDpMod``); a neighbouring dataset that replaces the site's data moves the clipped
update by up to ``2 clip``: halve the noise multiplier for that reading.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medseg.errors import ConfigError

DEFAULT_ORDERS: tuple[float, ...] = (
    *(1 + x / 10 for x in range(1, 100)),
    *range(11, 64),
    128.0,
    256.0,
    512.0,
    1024.0,
)


def _floating(array: np.ndarray) -> bool:
    return np.asarray(array).dtype.kind == "f"


def update_norm(update: Mapping[str, np.ndarray]) -> float:
    """The L2 norm of every floating entry of ``update`` taken together."""
    total = sum(
        float(np.square(np.asarray(v, dtype=np.float64)).sum())
        for v in update.values()
        if _floating(v)
    )
    return math.sqrt(total)


def clip_update(
    update: Mapping[str, np.ndarray], clip: float
) -> tuple[dict[str, np.ndarray], float]:
    """``update`` scaled by ``min(1, clip / ||update||)`` (floating entries; others as they
    are); returns it and the norm before clipping (which must stay on the site)."""
    if not (math.isfinite(clip) and clip > 0):
        raise ConfigError(f"dp clip must be a finite number > 0, got {clip}")
    norm = update_norm(update)
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    out = {
        k: (np.asarray(v, dtype=np.float64) * scale).astype(np.asarray(v).dtype)
        if _floating(v)
        else np.asarray(v)
        for k, v in update.items()
    }
    return out, norm


def privatize(
    local: Mapping[str, np.ndarray],
    global_state: Mapping[str, Any],
    clip: float,
    noise_multiplier: float,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """The weights a site sends under DP: ``global + clip(local - global) + N(0, (z clip)^2)``
    on every floating entry; integer entries are the local ones.

    Args:
        local: the site's weights after its local steps.
        global_state: the global weights the round started from (same names and shapes).
        clip: the L2 bound of the update (> 0); noise_multiplier: ``z`` (>= 0).
        rng: a generator for tests; default: seeded from the operating system's entropy.
    """
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise ConfigError(f"dp noise multiplier must be >= 0, got {noise_multiplier}")
    rng = rng if rng is not None else np.random.default_rng()
    base = {k: np.asarray(global_state[k]) for k in local}
    update = {
        k: np.asarray(v, dtype=np.float64) - base[k].astype(np.float64)
        for k, v in local.items()
        if _floating(v)
    }
    clipped, _ = clip_update(update, clip)
    sigma = noise_multiplier * clip
    out = {}
    for key, value in local.items():
        if key not in clipped:
            out[key] = np.asarray(value)
            continue
        noisy = clipped[key] + (rng.normal(0.0, sigma, clipped[key].shape) if sigma else 0.0)
        out[key] = (base[key].astype(np.float64) + noisy).astype(np.asarray(value).dtype)
    return out


def gaussian_rdp(
    noise_multiplier: float, orders: Sequence[float] = DEFAULT_ORDERS, releases: int = 1
) -> np.ndarray:
    """RDP of ``releases`` Gaussian releases with noise ``z`` times the sensitivity, at each
    order: ``releases * alpha / (2 z^2)`` (infinite for ``z = 0``)."""
    alphas = np.asarray(orders, dtype=np.float64)
    if noise_multiplier <= 0:
        return np.full_like(alphas, np.inf)
    return releases * alphas / (2.0 * noise_multiplier**2)


def rdp_to_epsilon(
    rdp: np.ndarray, orders: Sequence[float], delta: float, *, improved: bool = True
) -> tuple[float, float]:
    """The smallest ``epsilon`` over the orders for ``delta`` and the order reaching it.

    ``improved``: ``rdp + log((a - 1) / a) - (log delta + log a) / (a - 1)`` (Balle et al.
    2020); otherwise Mironov's ``rdp + log(1 / delta) / (a - 1)``. Both are upper bounds.
    """
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    a = np.asarray(orders, dtype=np.float64)
    if improved:
        eps = rdp + np.log((a - 1) / a) - (math.log(delta) + np.log(a)) / (a - 1)
    else:
        eps = rdp + math.log(1 / delta) / (a - 1)
    eps = np.where(np.isnan(eps), np.inf, eps)
    best = int(np.argmin(eps))
    return max(0.0, float(eps[best])), float(a[best])


def dp_epsilon(
    noise_multiplier: float,
    rounds: int,
    delta: float,
    orders: Sequence[float] = DEFAULT_ORDERS,
) -> float:
    """``epsilon`` of a site after ``rounds`` rounds at noise multiplier ``z`` for ``delta``."""
    rdp = gaussian_rdp(noise_multiplier, orders, rounds)
    return rdp_to_epsilon(rdp, orders, delta)[0]


def analytic_gaussian_delta(epsilon: float, mu: float) -> float:
    """The exact ``delta(epsilon)`` of a Gaussian mechanism with ``mu = sensitivity / sigma``
    (Balle and Wang 2018): ``Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)``; ``rounds``
    releases at noise ``z`` are one with ``mu = sqrt(rounds) / z``. A lower bound check."""

    def phi(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2))

    return phi(-epsilon / mu + mu / 2) - math.exp(epsilon) * phi(-epsilon / mu - mu / 2)
