"""The maths of federated training, without Flower: FedAvg, FedProx's proximal term, FedBN.

* :func:`fedavg`: the weighted mean of the sites' model states (McMahan et al. 2017), each
  site weighted by its number of training examples; computed in float64 and cast back, so
  the result does not depend on the order of the sites beyond rounding. A state holding a
  NaN or an infinity is refused, naming its site, before it can poison the global model.
* :func:`proximal_term`: FedProx's ``mu / 2 * ||w - w_global||^2`` (Li et al. 2020), added
  by a site to its local loss so its weights stay near the global model.
* :func:`norm_keys`: FedBN's filter (Li et al. 2021): the state keys of normalisation
  layers, which each site keeps local (its scanner's intensity statistics).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from medseg.errors import MedsegError

log = logging.getLogger(__name__)
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


class FederatedError(MedsegError):
    """A site's contribution or setup cannot be used (the message names the site)."""


ArrayLike = np.ndarray | torch.Tensor


def _as_numpy(value: ArrayLike) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def check_finite(state: Mapping[str, ArrayLike], site: str) -> None:
    """Raise :class:`FederatedError` naming ``site`` and the first non-finite entry."""
    for key, value in state.items():
        array = _as_numpy(value)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise FederatedError(
                f"site {site}: rejected: {bad} non-finite value(s) (NaN or inf) in '{key}'; "
                "its update is not averaged (lower its learning rate or check its data)"
            )


def fedavg(
    states: Sequence[Mapping[str, ArrayLike]],
    weights: Sequence[float],
    *,
    sites: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The weighted mean ``sum_k w_k state_k / sum_k w_k`` of each entry.

    Args:
        states: one mapping ``name -> array`` per site (numpy arrays or tensors), all with
            the same names and shapes.
        weights: one non-negative finite weight per site (its number of examples), not all 0.
        sites: the sites' names for messages (default ``"0"``, ``"1"``, ...).

    Returns:
        ``name -> array`` in each entry's dtype (integer entries, such as batch norm's
        ``num_batches_tracked``, rounded).

    Raises:
        FederatedError: a state is not finite, names or shapes differ, or a weight is bad.

    Example:
        >>> out = fedavg([{"w": np.array([1.0])}, {"w": np.array([4.0])}], [2, 1])
        >>> float(out["w"][0])
        2.0
    """
    names = list(sites) if sites is not None else [str(i) for i in range(len(states))]
    if not states or len(states) != len(weights) or len(names) != len(states):
        raise FederatedError(
            f"fedavg needs one weight and name per state: {len(states)} state(s), "
            f"{len(weights)} weight(s), {len(names)} name(s)"
        )
    for name, weight in zip(names, weights, strict=True):
        if not (math.isfinite(weight) and weight >= 0):
            raise FederatedError(f"site {name}: rejected: weight {weight} (num-examples)")
    total = float(sum(weights))
    if total <= 0:
        raise FederatedError(f"fedavg: the weights sum to {total}; no site has examples")
    keys = list(states[0])
    for name, state in zip(names, states, strict=True):
        check_finite(state, name)
        if list(state) != keys:
            missing = sorted(set(keys) ^ set(state))
            raise FederatedError(f"site {name}: its model has other entries ({missing[:5]})")
    out = {}
    for key in keys:
        arrays = [_as_numpy(state[key]) for state in states]
        for name, array in zip(names, arrays, strict=True):
            if array.shape != arrays[0].shape:
                raise FederatedError(
                    f"site {name}: '{key}' has shape {array.shape}, the others {arrays[0].shape}"
                )
        mean = sum(w / total * a.astype(np.float64) for w, a in zip(weights, arrays, strict=True))
        dtype = arrays[0].dtype
        out[key] = (np.rint(mean) if dtype.kind in "iub" else mean).astype(dtype)
    return out


def proximal_term(
    parameters: Iterable[torch.Tensor], global_parameters: Iterable[torch.Tensor], mu: float
) -> torch.Tensor:
    """FedProx's ``mu / 2 * sum ||w - w_global||^2`` over matching parameters (a 0-dim
    tensor with a gradient towards the global weights)."""
    terms = [
        (w - g.detach()).pow(2).sum()
        for w, g in zip(parameters, global_parameters, strict=True)
        if w.requires_grad
    ]
    if not terms or mu == 0:
        return torch.zeros(())
    return 0.5 * mu * torch.stack(terms).sum()


def norm_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the normalisation layers (batch, instance, group and layer norm):
    what FedBN keeps local to each site."""
    keys = set()
    for prefix, module in model.named_modules():
        if isinstance(module, NORM_TYPES):
            keys.update(
                f"{prefix}.{name}" if prefix else name for name in module.state_dict(keep_vars=True)
            )
    return keys


def screen_updates(
    states: Sequence[Mapping[str, ArrayLike]], weights: Sequence[float], sites: Sequence[str]
) -> tuple[list[int], list[str]]:
    """Which updates may be averaged: the indices kept, and one message per site rejected
    (non-finite weights or a bad ``num-examples``); the rejected are logged, naming the site."""
    kept, rejected = [], []
    for i, (state, weight, site) in enumerate(zip(states, weights, sites, strict=True)):
        try:
            check_finite(state, site)
            if not (math.isfinite(weight) and weight > 0):
                raise FederatedError(f"site {site}: rejected: num-examples {weight}")
        except FederatedError as err:
            log.warning("%s", err)
            rejected.append(str(err))
        else:
            kept.append(i)
    return kept, rejected
