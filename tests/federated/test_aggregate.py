"""FedAvg, FedProx and FedBN maths, without Flower (hand-computed references)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medseg.federated.aggregate import (
    FederatedError,
    fedavg,
    norm_keys,
    proximal_term,
    screen_updates,
)
from medseg.federated.local import local_round
from medseg.training.engine import Precision, Task


def test_fedavg_hand_computed_weights():
    states = [
        {"w": np.array([1.0, 2.0], np.float32), "n": np.array(3)},
        {"w": np.array([4.0, 8.0], np.float32), "n": np.array(6)},
        {"w": np.array([10.0, 0.0], np.float32), "n": np.array(9)},
    ]
    out = fedavg(states, [1, 2, 1])
    # (1*1 + 2*4 + 1*10) / 4 = 4.75 ; (2 + 16 + 0) / 4 = 4.5 ; counts (3 + 12 + 9) / 4 = 6
    np.testing.assert_allclose(out["w"], [4.75, 4.5])
    assert out["w"].dtype == np.float32 and int(out["n"]) == 6 and out["n"].dtype.kind == "i"


def test_fedavg_rejects_nan_naming_site():
    good, bad = {"w": np.ones(2)}, {"w": np.array([1.0, np.nan])}
    with pytest.raises(FederatedError, match="site hospital_b.*non-finite.*'w'"):
        fedavg([good, bad], [1, 1], sites=["hospital_a", "hospital_b"])
    kept, rejected = screen_updates([good, bad, good], [1, 1, 0], ["a", "b", "c"])
    assert kept == [0] and "site b" in rejected[0] and "site c" in rejected[1]


def test_fedavg_refuses_mismatches():
    with pytest.raises(FederatedError, match="site 1: 'w' has shape"):
        fedavg([{"w": np.ones(2)}, {"w": np.ones(3)}], [1, 1])
    with pytest.raises(FederatedError, match="sum to 0"):
        fedavg([{"w": np.ones(2)}], [0])


def _task(model: nn.Module, lr: float = 0.1) -> Task:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return Task(
        model=model,
        optimizer=opt,
        batches=lambda e: [],
        loss=lambda b: nn.functional.mse_loss(model(b[0]), b[1]),
        validate=lambda bf16, rows: {},
        score=lambda row: 0.0,
        set_learning_rate=lambda step, frac: None,
    )


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 1)).double()


def _site_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n, 1, 6, 6, generator=g).double(), 0.1 * torch.randn(
        n, 1, 6, 6, generator=g
    ).double()


def _state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def test_one_fedavg_round_equals_one_centralised_step():
    sizes, data = [2, 5, 3], [_site_data(n, s) for s, n in enumerate([2, 5, 3])]
    precision = Precision(torch.device("cpu"), False)
    states = []
    for x, y in data:  # each site: one full-batch SGD step through the engine's train_step
        model = _net()
        local_round(_task(model), [(x, y)], precision)
        states.append(_state(model))
    federated = fedavg(states, sizes)
    central = _net()
    pooled = (torch.cat([x for x, _ in data]), torch.cat([y for _, y in data]))
    local_round(_task(central), [pooled], precision)
    for key, value in _state(central).items():
        np.testing.assert_allclose(federated[key], value, atol=1e-6, rtol=0)
    assert not np.allclose(federated["0.weight"], _state(_net())["0.weight"])  # it moved


def test_fedprox_mu0_equals_fedavg_and_mu_keeps_close():
    x, y = _site_data(4, 7)
    precision = Precision(torch.device("cpu"), False)
    out = {}
    for mu in (None, 0.0, 1.0):
        model = _net()
        batches = [(x, y)] * 5
        if mu is None:
            local_round(_task(model, lr=0.5), batches, precision)
        else:
            local_round(_task(model, lr=0.5), batches, precision, mu=mu)
        out[mu] = _state(model)
    start = _state(_net())
    for key in start:
        assert np.array_equal(out[None][key], out[0.0][key])  # bit for bit
    drift = {mu: sum(np.sum((out[mu][k] - start[k]) ** 2) for k in start) for mu in (0.0, 1.0)}
    assert drift[1.0] < 0.9 * drift[0.0]


def test_proximal_term_value():
    w = [torch.tensor([1.0, 2.0], requires_grad=True)]
    g = [torch.tensor([0.0, 4.0])]
    assert float(proximal_term(w, g, 0.5).detach()) == pytest.approx(0.25 * (1 + 4))


def test_fedbn_keys_are_the_norm_layers():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.InstanceNorm2d(2, affine=True))
    keys = norm_keys(model)
    assert "1.running_mean" in keys and "2.weight" in keys and "1.num_batches_tracked" in keys
    assert "0.weight" not in keys and "0.bias" not in keys
